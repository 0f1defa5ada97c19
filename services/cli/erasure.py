"""``turnlog erase-user``: a user's personal data erased, in the log and on NATS."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.bootstrap import aio
from turnlog.services.settings import Settings


def add_parser(sub: Any) -> None:
    """The ``erase-user`` command on ``sub`` (the CLI's subparsers)."""
    erase = sub.add_parser(
        "erase-user",
        help="erase a user's personal data: destroy their keys, record user.erased, delete"
        " their messages and files from NATS",
    )
    erase.add_argument("user_id", metavar="USER_ID")
    erase.add_argument("--reason", default="", metavar="TEXT", help="recorded with the erasure")
    erase.add_argument("--json", action="store_true", help="one JSON object")
    erase.set_defaults(handler=_erase_user)


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
