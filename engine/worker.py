"""The child processes of a multi-worker engine (``COFFER_WORKERS > 1``), started by
:mod:`engine.supervisor` from the same environment as the parent:

* ``python -m engine.worker --prepare``: wait for the shards and migrate them once, then exit
  (0; or 1 after one line on stderr saying why);
* ``python -m engine.worker --worker INDEX``: worker ``INDEX``, serving its share of the port
  the workers share until SIGTERM/SIGINT; its log lines carry its pid.

Each child reads the configuration itself (:func:`~engine.config.load_settings`), so nothing is
handed over but the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from engine.app import run_preparation, run_worker
from engine.config import ConfigurationError, OneLineArgumentParser, load_settings
from engine.process_log import configure_logging
from engine.startup import EXIT_STARTUP_FAILED
from engine.supervisor import PREPARE_FLAG, WORKER_FLAG

__all__ = ["main"]


def _parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m engine.worker",
        description="A child process of a multi-worker coffer engine (started by python server.py).",
    )
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument(PREPARE_FLAG, action="store_true", help="wait for the shards, migrate them, exit")
    role.add_argument(WORKER_FLAG, type=int, metavar="INDEX", help="serve as worker INDEX (from 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"coffer: {error}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    if arguments.prepare:
        configure_logging(settings.log_format)
        return run_preparation(settings)
    index: int = arguments.worker
    if not 0 <= index < settings.workers:
        parser.fail(f"{WORKER_FLAG} {index} is not one of COFFER_WORKERS={settings.workers}")
    configure_logging(settings.log_format, with_pid=True)
    return run_worker(settings, index)


if __name__ == "__main__":
    sys.exit(main())
