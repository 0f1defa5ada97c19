"""``turnlog integrations connect|disconnect|list``: a user's integrations from the
command line, recorded with actor ``operator:<login>``. Credentials are never printed."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.bootstrap import aio
from turnlog.services.settings import Settings

if TYPE_CHECKING:
    from turnlog.services.app.integrations import Integrations

T = TypeVar("T")


def add_parser(sub: Any) -> None:
    """The ``integrations`` command on ``sub`` (the CLI's subparsers)."""
    parser = sub.add_parser("integrations", help="connect, disconnect and list integrations")
    actions = parser.add_subparsers(metavar="ACTION", required=True)
    connect = actions.add_parser(
        "connect", help="connect (or reconnect) an integration for a user, credentials sealed"
    )
    connect.add_argument("user_id", metavar="USER")
    connect.add_argument("type", metavar="TYPE", help="e.g. github")
    connect.add_argument("--token", metavar="TOKEN", help="the token; - reads it from stdin")
    connect.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another credentials field (repeatable)",
    )
    connect.add_argument("--scope", action="append", default=[], metavar="SCOPE")
    connect.set_defaults(handler=_connect)
    disconnect = actions.add_parser("disconnect", help="disconnect a user's integration")
    disconnect.add_argument("user_id", metavar="USER")
    disconnect.add_argument("type", metavar="TYPE")
    disconnect.add_argument("--reason", default="", metavar="TEXT")
    disconnect.set_defaults(handler=_disconnect)
    listing = actions.add_parser("list", help="a user's integrations (never their credentials)")
    listing.add_argument("user_id", metavar="USER")
    listing.add_argument("--json", action="store_true", help="one JSON object")
    listing.set_defaults(handler=_list)


def credentials(args: argparse.Namespace) -> dict[str, str]:
    """The credentials named on the command line: ``--token`` and ``--field``s."""
    fields: dict[str, str] = {}
    if args.token is not None:
        fields["token"] = sys.stdin.readline().rstrip("\r\n") if args.token == "-" else args.token
    for field in args.field:
        key, sep, value = field.partition("=")
        if not sep or not key:
            raise ValueError(f"--field takes KEY=VALUE, not {key[:40]!r}...")
        if key in fields:
            raise ValueError(f"credentials field {key!r} is given twice")
        fields[key] = value
    if not fields:
        raise ValueError("give the credentials: --token TOKEN (or -) and/or --field KEY=VALUE")
    return fields


def _actor() -> str:
    return f"operator:{getpass.getuser()}"


def _connect(args: argparse.Namespace, settings: Settings) -> int:
    try:
        given = credentials(args)
    except ValueError as e:
        print(f"turnlog: {e}", file=sys.stderr)
        return 2

    async def run(service: Integrations) -> bool:
        await service.connect(args.user_id, args.type, given, actor=_actor(), scopes=args.scope)
        return True

    if _with_integrations(settings, run, announce=True) is None:
        return 2
    print(f"connected {args.type} for user {args.user_id}")
    return 0


def _disconnect(args: argparse.Namespace, settings: Settings) -> int:
    async def run(service: Integrations) -> bool:
        return await service.disconnect(args.user_id, args.type, actor=_actor(), reason=args.reason)

    changed = _with_integrations(settings, run, announce=True)
    if changed is None:
        return 2
    if not changed:
        print(f"turnlog: user {args.user_id} has no {args.type} integration connected")
        return 1
    print(f"disconnected {args.type} for user {args.user_id}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from turnlog.contracts import query as q
    from turnlog.services.adapters.http.integrations import item

    async def run(service: Integrations) -> q.IntegrationList:
        found = await service.connections(args.user_id)
        return q.IntegrationList(user_id=args.user_id, items=[item(c) for c in found])

    listed = _with_integrations(settings, run, announce=False)
    if listed is None:
        return 2
    if args.json:
        print(msgspec.json.encode(listed).decode())
    elif not listed.items:
        print(f"user {args.user_id} has no integrations connected")
    for i in [] if args.json else listed.items:
        state = "erased" if i.erased else "connected"
        scopes = f"  scopes: {', '.join(i.scopes)}" if i.scopes else ""
        print(f"{i.type:<20} {state:<9} {i.connected_at}  by {i.connected_by}{scopes}")
    return 0


def _with_integrations(
    settings: Settings, run: Callable[[Integrations], Awaitable[T]], *, announce: bool
) -> T | None:
    """``run(Integrations)`` on the configured servers; with ``announce``, changes are
    announced on NATS (when it can be reached). None when the input was refused."""
    from turnlog.domain.integrations import IntegrationError
    from turnlog.services.adapters.nats.integrations import NatsNotices
    from turnlog.services.adapters.nats.subjects import Subjects
    from turnlog.services.app.log.errors import StoreError
    from turnlog.services.app.ports import NoNotices
    from turnlog.services.bootstrap.commands import open_log, wired
    from turnlog.services.bootstrap.serve import connect_nats

    async def go(database_url: str, nats_url: str | None) -> T:
        nc = None
        async with open_log(database_url) as store:
            try:
                if nats_url is not None:
                    try:
                        nc = await connect_nats(nats_url, settings.nats_security, wait=False)
                    except StoreError as e:
                        print(f"turnlog: not announced to running apps: {e}", file=sys.stderr)
                notices = NatsNotices(nc, Subjects(settings.subject_prefix)) if nc else NoNotices()
                return await run(wired(store, settings, notices=notices).integrations)
            finally:
                if nc is not None:
                    await nc.drain()

    with endpoints(settings, nats=announce) as where:
        try:
            return aio.run(go(where.database_url, where.nats_url if announce else None))
        except IntegrationError as e:
            print(f"turnlog: {e}", file=sys.stderr)
            return None
