"""Entry point: ``python server.py`` serves coffer with the configuration of CONTRACT §6."""

from __future__ import annotations

import logging

from engine.app import run
from engine.config import load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(load_settings())


if __name__ == "__main__":
    main()
