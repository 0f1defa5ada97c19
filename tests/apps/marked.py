"""A test app whose handler marks in a file when each turn starts and ends, and in which
process, so that a test can tell whether two processes ever ran one session's turns at
once."""

import asyncio
import os
import time

import turnlog

app = turnlog.App("marked")


def mark(what: str, session: turnlog.Session, msg: turnlog.Message) -> None:
    line = f"{what} {os.getpid()} {session.id} {msg.text} {time.time():.6f}\n"
    with open(os.environ["MARKED_FILE"], "a") as marks:
        marks.write(line)


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    mark("start", session, msg)
    await session.notify(f"working on {msg.text}")
    await asyncio.sleep(float(os.environ.get("MARKED_TURN_SECONDS", "0.05")))
    mark("end", session, msg)
    await session.reply(f"done {msg.text}")
