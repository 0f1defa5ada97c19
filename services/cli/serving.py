"""``turnlog chat``, ``run`` and ``serve``: an app, or one part of turnlog, served."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.bootstrap import aio
from turnlog.services.cli import arguments
from turnlog.services.settings import Settings


def add_parsers(sub: Any) -> None:
    """The ``chat``, ``run`` and ``serve`` commands on ``sub`` (the CLI's subparsers)."""
    chat = sub.add_parser("chat", help="talk to an app from this terminal (or pipe lines in)")
    chat.add_argument("app_path", metavar="APP.py")
    chat.add_argument(
        "--session", type=arguments.session_id, metavar="ID", help="resume this session"
    )
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
