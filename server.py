"""Entry point: ``python server.py`` serves coffer with the configuration of CONTRACT §6.

Configuration comes from ``COFFER_*`` environment variables (listed by ``--help``). Exit status:
0 after a clean shutdown (SIGTERM/SIGINT), 1 when start-up fails (one line on stderr says why),
2 for a bad command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.app import EXIT_STARTUP_FAILED, run
from engine.config import ConfigurationError, OneLineArgumentParser, describe_settings, load_settings
from engine.process_log import configure_logging


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
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
