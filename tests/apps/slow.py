"""A test app whose handler records each run in a file, hangs on its first run of a
message "slow" (the run a test kills) and kills its own process on "poison";
SLOW_RESUME=0 turns durable turns off."""

import asyncio
import os
import signal

import turnlog

app = turnlog.App("slow", resume_turns=os.environ.get("SLOW_RESUME", "1") != "0")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    marker = os.environ["SLOW_MARKER"]
    with open(marker) as runs:  # noqa: ASYNC230 (a tiny test file)
        earlier = [line.split(" ", 1)[0] for line in runs]
    with open(marker, "a") as runs:  # noqa: ASYNC230
        runs.write(f"{msg.id} {msg.text}\n")
    if msg.text == "poison":
        await session.notify("about to die")
        await session.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if msg.text == "slow":
        await session.notify("working")
        if msg.id not in earlier:
            await asyncio.sleep(120)
    await session.reply(f"done {msg.text}")
