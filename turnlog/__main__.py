"""``python -m turnlog``: the turnlog command line."""

from turnlog.services.cli.main import main

raise SystemExit(main())
