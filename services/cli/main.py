"""turnlog: an event-sourced runtime and service for conversational apps.

Every command takes its settings from TURNLOG_* environment variables; with no database
or NATS URL set, it starts (or reuses) embedded servers under TURNLOG_HOME."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import BinaryIO
from uuid import UUID

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.adapters.embedded.processes import InfraError, port_open
from turnlog.services.adapters.embedded.servers import EmbeddedInfra
from turnlog.services.adapters.nats.client import ClientError
from turnlog.services.app.log.errors import StoreError
from turnlog.services.bootstrap import aio, logs
from turnlog.services.cli import integrations as integrations_cli
from turnlog.services.sdk.app import AppError
from turnlog.services.sdk.loader import AppLoadError
from turnlog.services.settings import ConfigError, Settings

Command = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(f"turnlog: {e}", file=sys.stderr)
        return 2
    logs.configure(settings)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args, settings)
    except (InfraError, StoreError, AppLoadError, AppError, ClientError, OSError) as e:
        print(f"turnlog: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnlog", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")

    infra = sub.add_parser("infra", help="the embedded PostgreSQL and NATS servers")
    infra_sub = infra.add_subparsers(metavar="ACTION", required=True)
    infra_sub.add_parser("up", help="start them and keep them running").set_defaults(
        handler=_infra_up
    )
    infra_sub.add_parser("status", help="where they are and whether they run").set_defaults(
        handler=_infra_status
    )
    down = infra_sub.add_parser("down", help="stop them")
    down.add_argument("--force", action="store_true", help="stop even while in use")
    down.set_defaults(handler=_infra_down)

    chat = sub.add_parser("chat", help="talk to an app from this terminal (or pipe lines in)")
    chat.add_argument("app_path", metavar="APP.py")
    chat.add_argument("--session", type=_uuid, metavar="ID", help="resume this session")
    chat.add_argument(
        "--user",
        default=getpass.getuser(),
        metavar="ID",
        help="the user id to chat as (default: your login name)",
    )
    chat.set_defaults(handler=_chat)

    run = sub.add_parser(
        "run", help="serve an app: runtime, relay, projector and query API in one process"
    )
    run.add_argument("app_path", metavar="APP.py")
    run.set_defaults(handler=_run)

    serve = sub.add_parser("serve", help="run one part on its own")
    parts = serve.add_subparsers(metavar="PART", required=True)
    runtime = parts.add_parser("runtime", help="ingress and handlers for an app")
    runtime.add_argument("app_path", metavar="APP.py")
    runtime.set_defaults(handler=_serve_runtime)
    parts.add_parser("relay", help="publish committed events on NATS").set_defaults(
        handler=_serve_relay
    )
    parts.add_parser("projector", help="keep the projections up to date").set_defaults(
        handler=_serve_projector
    )
    parts.add_parser(
        "api", help="the projection query API over HTTP and NATS request/reply"
    ).set_defaults(handler=_serve_api)

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

    contracts = sub.add_parser("contracts", help="the wire contracts")
    contracts_sub = contracts.add_subparsers(metavar="ACTION", required=True)
    contracts_sub.add_parser("schema", help="print their JSON Schema").set_defaults(
        handler=_contracts_schema
    )

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        handler=_migrate
    )

    audit = sub.add_parser("audit", help="check the log and the projections")
    audit_sub = audit.add_subparsers(metavar="ACTION", required=True)
    verifying = audit_sub.add_parser(
        "verify", help="recompute hash chains; name the first broken event of each stream"
    )
    verifying.add_argument("session_id", nargs="?", type=_uuid, metavar="SESSION_ID")
    verifying.add_argument("--all", action="store_true", help="every stream in the log")
    verifying.add_argument("--json", action="store_true", help="one JSON object")
    verifying.set_defaults(handler=_audit_verify)
    checking = audit_sub.add_parser(
        "check-projections",
        help="rebuild every projection into scratch tables and compare with the live ones",
    )
    checking.add_argument("--json", action="store_true", help="one JSON array")
    checking.set_defaults(handler=_audit_check_projections)

    exporting = sub.add_parser("export", help="write events as JSON Lines to stdout")
    exporting.add_argument("--session", type=_uuid, metavar="ID", help="one session's events")
    exporting.add_argument("--since", type=_when, metavar="ISO_TIME", help="recorded at or after")
    exporting.add_argument("--until", type=_when, metavar="ISO_TIME", help="recorded before")
    exporting.set_defaults(handler=_export)
    importing = sub.add_parser(
        "import", help="load an export into an empty store (idempotent, hashes verified)"
    )
    importing.add_argument("file", metavar="FILE", help="a JSON Lines export, or - for stdin")
    importing.set_defaults(handler=_import)

    replay = sub.add_parser(
        "replay", help="a session's history, data and blocks as of a version or a time"
    )
    replay.add_argument("session_id", type=_uuid, metavar="SESSION_ID")
    point = replay.add_mutually_exclusive_group()
    point.add_argument("--to-version", type=int, metavar="N", help="as of its event N")
    point.add_argument("--at", type=_when, metavar="ISO_TIME", help="as of this moment")
    point.add_argument(
        "--rerun",
        metavar="APP.py",
        help="re-run every turn's handler on the recorded inputs and effects (nothing is"
        " written or called) and report 'identical' or the first divergence",
    )
    replay.add_argument("--json", action="store_true", help="one JSON object")
    replay.set_defaults(handler=_replay)

    erase = sub.add_parser(
        "erase-user",
        help="erase a user's personal data: destroy their keys, record user.erased, delete"
        " their messages and files from NATS",
    )
    erase.add_argument("user_id", metavar="USER_ID")
    erase.add_argument("--reason", default="", metavar="TEXT", help="recorded with the erasure")
    erase.add_argument("--json", action="store_true", help="one JSON object")
    erase.set_defaults(handler=_erase_user)

    events = sub.add_parser("events", help="the events of a session, schedule or task, in order")
    events.add_argument("session_id", type=_stream, metavar="SESSION_ID|schedule:APP:NAME|task:ID")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.set_defaults(handler=_events)

    integrations_cli.add_parser(sub)
    return parser


def _stream(text: str) -> str:
    """A session id (a UUID), or a schedule's or a task's stream id."""
    return text if text.startswith(("schedule:", "task:")) else str(_uuid(text))


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a session id (a UUID): {text!r}") from None


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.cli.audit import verify_with_progress

    if (args.session_id is None) == (not args.all):
        print("turnlog: name a SESSION_ID or give --all (not both)", file=sys.stderr)
        return 2
    stream = str(args.session_id) if args.session_id else None

    async def run(url: str) -> int:
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            return await verify_with_progress(store, stream, as_json=args.json)
        finally:
            await store.close()

    with endpoints(settings, nats=False) as where:
        return aio.run(run(where.database_url))


def _audit_check_projections(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.cli.projections import check_with_progress

    async def run(url: str) -> int:
        store = await EventStore.connect(url, min_size=1, max_size=10)
        try:
            return await check_with_progress(store, as_json=args.json)
        finally:
            await store.close()

    with endpoints(settings, nats=False) as where:
        return aio.run(run(where.database_url))


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.transfer import export
    from turnlog.services.cli.progress import progress_bar

    async def run(url: str) -> int:
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            with progress_bar("exporting") as progress:
                return await export(
                    store,
                    sys.stdout.buffer,
                    session=str(args.session) if args.session else None,
                    since=args.since,
                    until=args.until,
                    progress=progress,
                )
        finally:
            await store.close()

    with endpoints(settings, nats=False) as where:
        count = aio.run(run(where.database_url))
    sys.stdout.flush()
    print(f"exported {count:,} events", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.transfer import import_
    from turnlog.services.cli.progress import progress_bar

    async def run(url: str, source: BinaryIO) -> None:
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            with progress_bar("importing") as progress:
                report = await import_(store, source, progress=progress)
        finally:
            await store.close()
        print(
            f"read {report.read:,} events: {report.inserted:,} inserted,"
            f" {report.skipped:,} already there"
        )

    with endpoints(settings, nats=False) as where:
        if args.file == "-":
            aio.run(run(where.database_url, sys.stdin.buffer))
        else:
            with open(args.file, "rb") as source:
                aio.run(run(where.database_url, source))
    return 0


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-11-21T10:00:00+00:00)"
        ) from None


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.rerun:
        return _rerun(args, settings)
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.replay import render, state_as_of

    async def run(url: str) -> None:
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            state = await state_as_of(
                store, args.session_id, to_version=args.to_version, at=args.at
            )
        finally:
            await store.close()
        render(state, as_json=args.json)

    with endpoints(settings, nats=False) as where:
        aio.run(run(where.database_url))
    return 0


def _rerun(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.nats.files import FileStore
    from turnlog.services.adapters.nats.subjects import Subjects
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.app.rerun import render_report, rerun_session
    from turnlog.services.bootstrap.serve import connect_nats
    from turnlog.services.cli.progress import progress_bar
    from turnlog.services.sdk.loader import load_app

    app = load_app(args.rerun)

    async def run(url: str, nats_url: str) -> int:
        # Files the turns received are read from the file store, over a connection made
        # before the re-run starts refusing new ones.
        nc = await connect_nats(nats_url, settings.nats_security, wait=False)
        files = FileStore(nc.jetstream(), Subjects(settings.subject_prefix).bucket_files)
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            keyring = store.keyring
            records = await keyring.unseal(await store.read_stream(str(args.session_id)))
            turns = [r.correlation_id for r in records if r.type == "session.message_received"]
            documents = await keyring.unseal(
                await store.read_documents_written_by([t for t in turns if t])
            )
        finally:
            await store.close()
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


def _infra_up(args: argparse.Namespace, settings: Settings) -> int:
    status = EmbeddedInfra(settings.home).acquire(
        postgres=settings.database_url is None, nats=settings.nats_url is None, pin=True
    )
    print(f"embedded servers running under {settings.home}")
    if status.postgres:
        print(f"  postgres  {status.postgres.url}")
    if status.nats:
        print(f"  nats      {status.nats.url}")
    return 0


def _infra_status(args: argparse.Namespace, settings: Settings) -> int:
    status = EmbeddedInfra(settings.home).status()
    rows: list[tuple[str, str, str, bool]] = []
    for name, external, embedded in (
        ("database", settings.database_url, status.postgres),
        ("nats", settings.nats_url, status.nats),
    ):
        if external:
            rows.append((name, "external", external, _reachable(external)))
        elif embedded:
            rows.append((name, "embedded", embedded.url, True))
        else:
            rows.append((name, "embedded", "(not running)", False))
    for name, kind, url, up in rows:
        state = "running" if up else "unreachable" if kind == "external" else "stopped"
        print(f"{name:<9} {kind:<9} {state:<11} {url}")
    print(f"home      {settings.home}")
    if status.holders:
        print(f"in use by pid {', '.join(map(str, status.holders))}")
    if not all(up for *_, up in rows):
        return 3
    from turnlog.services.cli.processes import print_processes

    return aio.run(print_processes(rows[0][2]))


def _infra_down(args: argparse.Namespace, settings: Settings) -> int:
    before = EmbeddedInfra(settings.home).down(force=args.force)
    if before.postgres is None and before.nats is None:
        print("embedded servers were not running")
    else:
        print("embedded servers stopped")
    return 0


def _reachable(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default = 5432 if parts.scheme.startswith("postgres") else 4222
    return port_open(parts.hostname or "127.0.0.1", parts.port or default)


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.cli.chat import chat
    from turnlog.services.sdk.loader import load_app

    app = load_app(args.app_path)
    with endpoints(settings) as where:
        return aio.run(
            chat(
                app,
                where.database_url,
                where.nats_url,
                settings,
                session_id=args.session,
                user_id=args.user,
            )
        )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    return _serve(settings, args.app_path, relay=True, projector=True, api=True)


def _serve_runtime(args: argparse.Namespace, settings: Settings) -> int:
    return _serve(settings, args.app_path)


def _serve_relay(args: argparse.Namespace, settings: Settings) -> int:
    return _serve(settings, None, relay=True)


def _serve_projector(args: argparse.Namespace, settings: Settings) -> int:
    return _serve(settings, None, projector=True)


def _serve_api(args: argparse.Namespace, settings: Settings) -> int:
    return _serve(settings, None, api=True)


def _serve(
    settings: Settings,
    app_path: str | None,
    *,
    relay: bool = False,
    projector: bool = False,
    api: bool = False,
) -> int:
    from turnlog.services.bootstrap.serve import Parts, serve
    from turnlog.services.sdk.loader import load_app

    app = load_app(app_path) if app_path else None
    parts = Parts(app=app, relay=relay, projector=projector, api=api)
    with endpoints(settings) as where:
        aio.run(serve(settings, where.database_url, where.nats_url, parts))
    return 0


def _projections_status(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.projections.catalog import PROJECTIONS
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.projector.writes import ensure
    from turnlog.services.cli.projections import print_status, status

    async def run(url: str) -> None:
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            await ensure(store.pool, PROJECTIONS.values())
            print_status(await status(store), as_json=args.json)
        finally:
            await store.close()

    with endpoints(settings, nats=False) as where:
        aio.run(run(where.database_url))
    return 0


def _projections_retry(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.adapters.postgres.projector import failures
    from turnlog.services.cli.projections import chosen, retry_failed

    async def run(url: str) -> int:
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            if args.all:
                names = list(await failures.load(store.pool))
                if not names:
                    print("no projection has failed")
                    return 0
            else:
                names = [p.name for p in chosen(args.names, False)]
            return await retry_failed(store, names)
        finally:
            await store.close()

    with endpoints(settings, nats=False) as where:
        return aio.run(run(where.database_url))


def _projections_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.cli.projections import chosen, rebuild_with_progress

    projections = chosen(args.names, args.all)

    async def run(url: str) -> None:
        store = await EventStore.connect(url, min_size=1, max_size=10)
        try:
            await rebuild_with_progress(store, projections)
        finally:
            await store.close()

    with endpoints(settings, nats=False) as where:
        aio.run(run(where.database_url))
    return 0


def _contracts_schema(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from turnlog.contracts.bus import WIRE_TYPES

    schemas = {name: msgspec.json.schema(kind) for name, kind in WIRE_TYPES.items()}
    print(msgspec.json.format(msgspec.json.encode(schemas), indent=2).decode())
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore

    async def run(url: str) -> None:
        store = await EventStore.connect(url, min_size=1, max_size=1)
        await store.close()

    with endpoints(settings, nats=False) as where:
        aio.run(run(where.database_url))
    print("schema is up to date")
    return 0


def _erase_user(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.nats.subjects import Subjects
    from turnlog.services.adapters.postgres.erasure import UnknownUser, render
    from turnlog.services.bootstrap.erase_everywhere import erase_everywhere

    subjects = Subjects(settings.subject_prefix)
    with endpoints(settings) as where:
        try:
            report = aio.run(
                erase_everywhere(
                    where.database_url,
                    where.nats_url,
                    subjects,
                    args.user_id,
                    reason=args.reason,
                    security=settings.nats_security,
                )
            )
        except UnknownUser as e:
            print(f"turnlog: {e}", file=sys.stderr)
            return 2
    print(render(report, as_json=args.json))
    if report.purged is not None and report.purged.error is not None:
        print(
            f"turnlog: user {args.user_id} is erased in the log, but their data on NATS is not"
            f" all deleted ({report.purged.error}); run erase-user again to finish",
            file=sys.stderr,
        )
        return 3
    return 0


def _events(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.cli.audit import print_events

    with endpoints(settings, nats=False) as where:
        return aio.run(print_events(where.database_url, args.session_id, as_json=args.json))


if __name__ == "__main__":
    raise SystemExit(main())
