"""``python -m engine.tokens issue --role ROLE [--merchant M] [--caller NAME] [--ttl SECONDS] [--key FILE]``.

Prints one caller token on stdout (docs/security.md). The key defaults to
``var/certs/token-signing.key`` (written by ``make certs``); a negative ``--ttl`` mints a token
that has already expired, for tests. Exit status 2 on a usage error or an unreadable key.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from engine.config import OneLineArgumentParser
from engine.domain.errors import CofferError
from engine.security.identity import Role
from engine.security.tokens import MAX_TOKEN_TTL_SECONDS, issue_token, load_signing_key

__all__ = ["DEFAULT_SIGNING_KEY", "main"]

DEFAULT_SIGNING_KEY = Path("var/certs/token-signing.key")
DEFAULT_TTL_SECONDS = 3600


def _parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog="python -m engine.tokens", description="Mint coffer caller tokens.")
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="print one signed token")
    issue.add_argument("--role", required=True, choices=[role.value for role in Role])
    issue.add_argument("--merchant", default=None, help="the merchant a till token is bound to")
    issue.add_argument("--caller", default=None, help="the caller's name (default: the role)")
    issue.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL_SECONDS, help=f"seconds valid, at most {MAX_TOKEN_TTL_SECONDS}"
    )
    issue.add_argument("--key", type=Path, default=DEFAULT_SIGNING_KEY, help="the signing key file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        key = load_signing_key(arguments.key)
        token = issue_token(
            key,
            caller=arguments.caller or arguments.role,
            role=arguments.role,
            merchant_id=arguments.merchant,
            ttl_seconds=arguments.ttl,
        )
    except (OSError, ValueError, CofferError) as error:
        parser.fail(f"{arguments.key}: {error}")
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
