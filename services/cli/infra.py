"""``turnlog infra up|status|down``: the embedded PostgreSQL and NATS servers."""

from __future__ import annotations

import argparse
from typing import Any

from turnlog.services.adapters.embedded.processes import port_open
from turnlog.services.adapters.embedded.servers import EmbeddedInfra
from turnlog.services.bootstrap import aio
from turnlog.services.settings import Settings


def add_parser(sub: Any) -> None:
    """The ``infra`` command on ``sub`` (the CLI's subparsers)."""
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
