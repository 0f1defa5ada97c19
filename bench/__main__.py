"""``python -m bench``: turnlog against other stores (see bench/compare.py)."""

from bench.compare import main

main()
