"""A test app whose handler records each run in a file and can be made to hang."""

import asyncio
import os

import turnlog

app = turnlog.App("slow")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    with open(os.environ["SLOW_MARKER"], "a") as runs:  # noqa: ASYNC230 (a tiny test write)
        runs.write(f"{msg.id} {msg.text}\n")
    if msg.text == "slow":
        await session.notify("working")
        await asyncio.sleep(120)
    await session.reply(f"done {msg.text}")
