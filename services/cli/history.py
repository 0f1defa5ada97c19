"""``turnlog replay`` and ``events``: a session's state, turns or events, read back."""

from __future__ import annotations

import argparse
from typing import Any

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.app.log.errors import StoreError
from turnlog.services.bootstrap import aio
from turnlog.services.cli import arguments
from turnlog.services.settings import Settings


def add_replay_parser(sub: Any) -> None:
    """The ``replay`` command on ``sub`` (the CLI's subparsers)."""
    replay = sub.add_parser(
        "replay", help="a session's history, data and blocks as of a version or a time"
    )
    replay.add_argument("session_id", type=arguments.session_id, metavar="SESSION_ID")
    point = replay.add_mutually_exclusive_group()
    point.add_argument("--to-version", type=int, metavar="N", help="as of its event N")
    point.add_argument(
        "--at", type=arguments.iso_time, metavar="ISO_TIME", help="as of this moment"
    )
    point.add_argument(
        "--rerun",
        metavar="APP.py",
        help="re-run every turn's handler on the recorded inputs and effects (nothing is"
        " written or called) and report 'identical' or the first divergence",
    )
    replay.add_argument("--json", action="store_true", help="one JSON object")
    replay.set_defaults(handler=_replay)


def add_events_parser(sub: Any) -> None:
    """The ``events`` command on ``sub`` (the CLI's subparsers)."""
    events = sub.add_parser("events", help="the events of a session, schedule or task, in order")
    events.add_argument(
        "session_id", type=arguments.stream_id, metavar="SESSION_ID|schedule:APP:NAME|task:ID"
    )
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.set_defaults(handler=_events)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.rerun:
        return _rerun(args, settings)
    from turnlog.contracts.query import SessionState
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.replay import render, state_as_of
    from turnlog.services.bootstrap.commands import on_log

    async def run(store: EventStore) -> SessionState:
        return await state_as_of(store, args.session_id, to_version=args.to_version, at=args.at)

    render(on_log(settings, run), as_json=args.json)
    return 0


def _rerun(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.nats.files import FileStore
    from turnlog.services.adapters.nats.subjects import Subjects
    from turnlog.services.app.rerun import rerun_session
    from turnlog.services.app.rerun_report import render_report
    from turnlog.services.bootstrap.commands import open_log
    from turnlog.services.bootstrap.serve import connect_nats
    from turnlog.services.cli.progress import progress_bar
    from turnlog.services.sdk.loader import load_app

    app = load_app(args.rerun)

    async def run(url: str, nats_url: str) -> int:
        # Files the turns received are read from the file store, over a connection made
        # before the re-run starts refusing new ones.
        nc = await connect_nats(nats_url, settings.nats_security, wait=False)
        files = FileStore(nc.jetstream(), Subjects(settings.subject_prefix).bucket_files)
        async with open_log(url) as store:
            keyring = store.keyring
            records = await keyring.unseal(await store.read_stream(str(args.session_id)))
            turns = [r.correlation_id for r in records if r.type == "session.message_received"]
            documents = await keyring.unseal(
                await store.read_documents_written_by([t for t in turns if t])
            )
        if not records:
            raise StoreError(f"no events for session {args.session_id}")
        try:
            with progress_bar("re-run", unit="turns") as progress:
                report = await rerun_session(records, app, progress, documents, files)
        finally:
            await nc.close()
        render_report(report, as_json=args.json)
        return 0 if report.result == "identical" else 1

    with endpoints(settings) as where:
        # The standard loop: its connections go through the socket module, which the
        # re-run watches (uvloop's would not).
        return aio.run(run(where.database_url, where.nats_url), standard=True)


def _events(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.cli.audit import print_events

    with endpoints(settings, nats=False) as where:
        return aio.run(print_events(where.database_url, args.session_id, as_json=args.json))
