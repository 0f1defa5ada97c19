"""``turnlog export`` and ``import``: the log written out as JSON Lines and loaded back."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from turnlog.services.cli import arguments
from turnlog.services.settings import Settings


def add_parsers(sub: Any) -> None:
    """The ``export`` and ``import`` commands on ``sub`` (the CLI's subparsers)."""
    exporting = sub.add_parser("export", help="write events as JSON Lines to stdout")
    exporting.add_argument(
        "--session", type=arguments.session_id, metavar="ID", help="one session's events"
    )
    exporting.add_argument(
        "--since", type=arguments.iso_time, metavar="ISO_TIME", help="recorded at or after"
    )
    exporting.add_argument(
        "--until", type=arguments.iso_time, metavar="ISO_TIME", help="recorded before"
    )
    exporting.set_defaults(handler=_export)
    importing = sub.add_parser(
        "import", help="load an export into an empty store (idempotent, hashes verified)"
    )
    importing.add_argument("file", metavar="FILE", help="a JSON Lines export, or - for stdin")
    importing.set_defaults(handler=_import)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.transfer import export
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.progress import progress_bar

    async def run(store: EventStore) -> int:
        with progress_bar("exporting") as progress:
            return await export(
                store,
                sys.stdout.buffer,
                session=str(args.session) if args.session else None,
                since=args.since,
                until=args.until,
                progress=progress,
            )

    count = on_log(settings, run)
    sys.stdout.flush()
    print(f"exported {count:,} events", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.transfer import ImportReport, import_
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.progress import progress_bar

    def run(source: BinaryIO) -> Callable[[EventStore], Awaitable[ImportReport]]:
        async def into(store: EventStore) -> ImportReport:
            with progress_bar("importing") as progress:
                return await import_(store, source, progress=progress)

        return into

    if args.file == "-":
        report = on_log(settings, run(sys.stdin.buffer))
    else:
        with open(args.file, "rb") as source:
            report = on_log(settings, run(source))
    print(
        f"read {report.read:,} events: {report.inserted:,} inserted,"
        f" {report.skipped:,} already there"
    )
    return 0
