"""The benchmark app: each turn records one data key and one reply."""

import turnlog

app = turnlog.App("echo")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    session.data["last"] = msg.text
    await session.reply(f"echo {msg.text}")
