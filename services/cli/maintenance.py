"""``turnlog projections``, ``contracts``, ``migrate`` and ``audit``: the store kept in order."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from turnlog.services.cli import arguments
from turnlog.services.settings import Settings


def add_parsers(sub: Any) -> None:
    """The ``projections``, ``contracts``, ``migrate`` and ``audit`` commands on ``sub``
    (the CLI's subparsers)."""
    _add_projections(sub)

    contracts = sub.add_parser("contracts", help="the wire contracts")
    contracts_sub = contracts.add_subparsers(metavar="ACTION", required=True)
    contracts_sub.add_parser("schema", help="print their JSON Schema").set_defaults(
        handler=_contracts_schema
    )

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        handler=_migrate
    )

    _add_audit(sub)


def _add_projections(sub: Any) -> None:
    projections = sub.add_parser("projections", help="the read models kept from the log")
    projections_sub = projections.add_subparsers(metavar="ACTION", required=True)
    status = projections_sub.add_parser("status", help="position, lag and rate of each")
    status.add_argument("--json", action="store_true", help="one JSON array")
    status.set_defaults(handler=_projections_status)
    retrying = projections_sub.add_parser(
        "retry", help="try failed projections again from the event they stopped at"
    )
    retrying.add_argument("names", nargs="*", metavar="NAME")
    retrying.add_argument("--all", action="store_true", help="every failed projection")
    retrying.set_defaults(handler=_projections_retry)
    rebuild = projections_sub.add_parser(
        "rebuild", help="rebuild from position 0 into fresh tables and swap them in"
    )
    rebuild.add_argument("names", nargs="*", metavar="NAME")
    rebuild.add_argument("--all", action="store_true", help="every projection")
    rebuild.set_defaults(handler=_projections_rebuild)


def _add_audit(sub: Any) -> None:
    audit = sub.add_parser("audit", help="check the log and the projections")
    audit_sub = audit.add_subparsers(metavar="ACTION", required=True)
    verifying = audit_sub.add_parser(
        "verify", help="recompute hash chains; name the first broken event of each stream"
    )
    verifying.add_argument("session_id", nargs="?", type=arguments.session_id, metavar="SESSION_ID")
    verifying.add_argument("--all", action="store_true", help="every stream in the log")
    verifying.add_argument("--json", action="store_true", help="one JSON object")
    verifying.set_defaults(handler=_audit_verify)
    checking = audit_sub.add_parser(
        "check-projections",
        help="rebuild every projection into scratch tables and compare with the live ones",
    )
    checking.add_argument("--json", action="store_true", help="one JSON array")
    checking.set_defaults(handler=_audit_check_projections)


def _projections_status(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.projections.catalog import PROJECTIONS
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.projector.writes import ensure
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.projections import print_status, status

    async def run(store: EventStore) -> None:
        await ensure(store.pool, PROJECTIONS.values())
        print_status(await status(store), as_json=args.json)

    on_log(settings, run)
    return 0


def _projections_retry(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.projector import failures
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.projections import chosen, retry_failed

    async def run(store: EventStore) -> int:
        if args.all:
            names = list(await failures.load(store.pool))
            if not names:
                print("no projection has failed")
                return 0
        else:
            names = [p.name for p in chosen(args.names, False)]
        return await retry_failed(store, names)

    return on_log(settings, run)


def _projections_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.projections import chosen, rebuild_with_progress

    projections = chosen(args.names, args.all)

    async def run(store: EventStore) -> None:
        await rebuild_with_progress(store, projections)

    on_log(settings, run, connections=10)
    return 0


def _contracts_schema(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from turnlog.contracts.bus import WIRE_TYPES

    schemas = {name: msgspec.json.schema(kind) for name, kind in WIRE_TYPES.items()}
    print(msgspec.json.format(msgspec.json.encode(schemas), indent=2).decode())
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.bootstrap.commands import on_log

    async def run(store: EventStore) -> None:
        return None  # opening the log migrated it

    on_log(settings, run, connections=1)
    print("schema is up to date")
    return 0


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.audit import verify_with_progress

    if (args.session_id is None) == (not args.all):
        print("turnlog: name a SESSION_ID or give --all (not both)", file=sys.stderr)
        return 2
    stream = str(args.session_id) if args.session_id else None

    async def run(store: EventStore) -> int:
        return await verify_with_progress(store, stream, as_json=args.json)

    return on_log(settings, run)


def _audit_check_projections(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.cli.projections import check_with_progress

    async def run(store: EventStore) -> int:
        return await check_with_progress(store, as_json=args.json)

    return on_log(settings, run, connections=10)
