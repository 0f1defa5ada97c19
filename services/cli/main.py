"""turnlog: an event-sourced runtime and service for conversational apps.

Every command takes its settings from TURNLOG_* environment variables; with no database
or NATS URL set, it starts (or reuses) embedded servers under TURNLOG_HOME."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from turnlog.services.adapters.embedded.processes import InfraError
from turnlog.services.adapters.nats.client import ClientError
from turnlog.services.app.log.errors import StoreError
from turnlog.services.bootstrap import logs
from turnlog.services.cli import (
    erasure,
    history,
    infra,
    integrations,
    maintenance,
    runtimes,
    serving,
    transfer,
)
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
    # In the order `turnlog --help` lists them.
    infra.add_parser(sub)
    runtimes.add_parser(sub)
    serving.add_parsers(sub)  # chat, run, serve
    maintenance.add_parsers(sub)  # projections, contracts, migrate, audit
    transfer.add_parsers(sub)  # export, import
    history.add_replay_parser(sub)
    erasure.add_parser(sub)
    history.add_events_parser(sub)
    integrations.add_parser(sub)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
