"""Notes: a first turnlog app.

It keeps notes in ``session.data``, reads back the conversation from
``session.history``, streams a reply when it has nothing better to say, and does its
one-time set-up in a boot hook.

    turnlog chat examples/notes.py
    > remember buy coffee
    > notes
    > history
"""

from __future__ import annotations

import asyncio
import time

import turnlog as cpsl

app = cpsl.App("notes")
started_at: float | None = None


@app.boot()
def warm_up() -> None:
    """Runs once per process, before the first message: load indexes, check config..."""
    global started_at
    started_at = time.time()


@app.message()
async def handle(session: cpsl.Session, msg: cpsl.Message) -> None:
    text = (msg.text or "").strip()
    command, _, rest = text.partition(" ")
    notes: list[str] = session.data.setdefault("notes", [])

    if command.lower() == "remember" and rest.strip():
        notes.append(rest.strip())
        await session.reply(f"Noted: {rest.strip()} ({len(notes)} in total)")
    elif text.lower() == "notes":
        await session.reply(list_notes(notes))
    elif text.lower() == "history":
        await session.reply(recent_history(session))
    else:
        await session.notify("Thinking...")
        async with session.stream_reply() as reply:
            words = f"I keep notes. Try 'remember {text or 'something'}'.".split(" ")
            for i, word in enumerate(words):
                reply.write(word if i == 0 else " " + word)
                await asyncio.sleep(0.02)


def list_notes(notes: list[str]) -> str:
    if not notes:
        return "No notes yet. Say 'remember <something>'."
    return "\n".join(f"{i}. {note}" for i, note in enumerate(notes, start=1))


def recent_history(session: cpsl.Session) -> str:
    lines = [f"{m.sender}: {m.text}" for m in session.history[-10:]]
    return "\n".join(lines) if lines else "Nothing said yet."
