"""A test app with a schedule every second; each run inserts a document naming its tick
and the process that ran it."""

import os

import turnlog

app = turnlog.App("ticker")
runs = app.collection("runs")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    await session.reply("tick tock")


@app.schedule("* * * * * *")
async def tick() -> None:
    session = turnlog.current_session()
    assert isinstance(session, turnlog.ScheduledSession)
    await runs.insert_one({"tick": session.tick.isoformat(), "pid": os.getpid()})
