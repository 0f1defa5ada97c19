"""A test app: replies to every message and keeps the last one in session.data."""

import turnlog

app = turnlog.App("legacy")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    session.data["last"] = msg.text
    session.data["count"] = session.data.get("count", 0) + 1
    await session.reply(f"you said {msg.text}")
