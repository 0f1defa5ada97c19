"""``python -m turnlog``: the turnlog command line."""

from turnlog.services.cli import main

raise SystemExit(main())
