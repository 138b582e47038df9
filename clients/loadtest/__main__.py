"""``python -m clients.loadtest``."""

from __future__ import annotations

import sys

from clients.loadtest.cli import main

if __name__ == "__main__":
    sys.exit(main())
