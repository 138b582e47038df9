"""``python -m clients.admin`` and the ``coffer`` console script."""

from __future__ import annotations

import sys

from clients.admin.cli import main as run


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
