"""``python -m clients.pos`` and the ``coffer-pos`` console script."""

from __future__ import annotations

import sys

from clients.pos.cli import main as run


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
