"""The soak's app: each turn keeps the message in session.data, shows it on a card and
replies with it, so hostile text that passed the ingress would reach every projection."""

import turnlog

app = turnlog.App("soak")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    session.data["last"] = msg.text
    session.data[f"seen {len(msg.text) % 5}"] = msg.text
    await session.show(turnlog.Block("card", {"text": msg.text}, id="last"))
    await session.reply(f"got {msg.text}")
