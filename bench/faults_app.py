"""The fault run's app: each turn does recorded work, replies, pauses (a window between
the reply on record and the turn's end), and appends its message to ``session.data``.
Each process writes when a turn starts and ends to FAULTS_MARKER, to check afterwards
that no session's turns ran in two processes at once."""

import asyncio
import os
import time

import turnlog

app = turnlog.App("faults")
WORK = float(os.environ.get("FAULTS_WORK", "0.01"))
PAUSE = float(os.environ.get("FAULTS_PAUSE", "0.01"))


def mark(session: turnlog.Session, msg: turnlog.Message, what: str) -> None:
    line = f"{os.getpid()} {session.id} {msg.id} {what} {time.time():.6f}\n"
    fd = os.open(os.environ["FAULTS_MARKER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())  # one small append: whole lines from every process
    finally:
        os.close(fd)


async def work(text: str) -> str:
    await asyncio.sleep(WORK)
    return text.upper()


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    mark(session, msg, "start")
    done = await session.effect("work", work, msg.text)
    await session.reply(f"{msg.text}: {done}")
    await asyncio.sleep(PAUSE)
    session.data["seen"] = [*session.data.get("seen", []), msg.text]
    mark(session, msg, "end")
