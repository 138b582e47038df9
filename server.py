"""Entry point: ``python server.py`` serves coffer with the configuration of CONTRACT §6.

Configuration comes from ``COFFER_*`` environment variables (listed by ``--help``). With
``COFFER_WORKERS > 1`` this process is the light supervisor (engine/supervisor.py) of worker
processes; otherwise it is the engine itself (engine/app.py). Exit status:
0 after a clean shutdown (SIGTERM/SIGINT), 1 when start-up fails (one line on stderr says why),
2 for a bad command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.config import ConfigurationError, OneLineArgumentParser, describe_settings, load_settings
from engine.process_log import configure_logging
from engine.startup import EXIT_STARTUP_FAILED
from engine.supervisor import run_workers


def _parser() -> OneLineArgumentParser:
    return OneLineArgumentParser(
        prog="python server.py",
        description="Serve the coffer payments engine over gRPC (health and reflection included).",
        epilog="configuration (environment variables):\n"
        + describe_settings()
        + "\n\nexit status: 0 after SIGTERM/SIGINT, 1 start-up failed (one line on stderr says why),"
        " 2 bad command line",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"coffer: {error}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    configure_logging(settings.log_format)
    if settings.workers > 1:
        return run_workers(settings)
    # Imported only here: engine.app loads gRPC, SQLAlchemy and the database drivers (~80 MB),
    # which the multi-worker supervisor never uses (docs/performance.md "Memory").
    from engine.app import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
