"""Command line of the load-test harness.

    python -m clients.loadtest --users 200 --concurrency 16 --duration 30 \
        --mix charge=50,refund=10,topup=10,gift_card_redeem=5,coupon_claim=5,auth_capture=10,duplicate=10 \
        --report report.json --chart latency.html

Exit code 0 when every call ended as expected, every harness check held and ``Admin.Audit``
reported every invariant intact; 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clients._cli import add_connection_options
from clients.loadtest.config import DEFAULT_MIX, KINDS, PRESETS, LoadConfig, MixError, parse_mix
from clients.loadtest.credentials import Credentials, till_merchant_of
from clients.loadtest.runner import run


def build_parser() -> argparse.ArgumentParser:
    kinds = "\n".join(f"  {name:<17} {text}" for name, text in KINDS.items())
    parser = argparse.ArgumentParser(
        prog="python -m clients.loadtest",
        description="Seed users, drive a mix of coffer operations, report latency, then audit.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"kinds for --mix:\n{kinds}\npresets: {', '.join(PRESETS)}",
    )
    # --target, --timeout and the credentials: the same options as the admin and POS CLIs.
    add_connection_options(parser, timeout_s=30.0)
    parser.add_argument(
        "--credentials-dir",
        type=Path,
        default=None,
        help="per-role client certificates as `make certs` writes them (ca.pem, <role>.pem, <role>.key): "
        "mutual TLS, each RPC with the role it needs (instead of --ca/--cert/--key-file/--token)",
    )
    parser.add_argument(
        "--till-merchant",
        default=None,
        help="merchant the redemptions name (default: the one the pos certificate of --credentials-dir "
        "is bound to; without it, any of --merchants)",
    )
    parser.add_argument("--users", type=int, default=200, help="users to seed (default 200)")
    parser.add_argument("--concurrency", type=int, default=16, help="worker threads (default 16)")
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="gRPC connections (TCP) the calls are spread over, 1-64 (default 4); an engine with "
        "COFFER_WORKERS > 1 shares one port by connection, so use at least that many",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="load processes sharing the concurrency, each with its own connections (default 1)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: start this many operations per second on a fixed schedule (default: closed loop)",
    )
    parser.add_argument(
        "--mix", default=DEFAULT_MIX, help=f"kind=weight,... or a preset (default {DEFAULT_MIX})"
    )
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--chart", type=Path, default=None, help="write the HTML latency chart here")
    parser.add_argument("--attempts", type=int, default=5, help="attempts per call (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the workers")
    parser.add_argument(
        "--user-base", type=int, default=None, help="user ids start after this (default random)"
    )
    parser.add_argument("--merchants", type=int, default=20, help="distinct merchant ids (default 20)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail when a requested kind is not served (default: switch it off)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.add_argument("--no-audit", action="store_true", help="skip Admin.Audit at the end")
    return parser


def credentials_from_args(args: argparse.Namespace) -> Credentials:
    return Credentials(
        ca=args.ca, cert=args.cert, key=args.key_file, token=args.token, directory=args.credentials_dir
    )


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    credentials = credentials_from_args(args)
    till = args.till_merchant
    if till is None:
        till = "" if credentials.directory is None else till_merchant_of(credentials.directory)
    return LoadConfig(
        target=args.target,
        users=args.users,
        concurrency=args.concurrency,
        connections=args.connections,
        duration_s=args.duration,
        processes=args.processes,
        rate_per_s=args.rate,
        mix=parse_mix(args.mix),
        timeout_s=args.timeout,
        attempts=args.attempts,
        seed=args.seed,
        user_base=args.user_base,
        merchants=args.merchants,
        strict=args.strict,
        progress=not args.no_progress,
        audit=not args.no_audit,
        credentials=credentials,
        till_merchant=till,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (MixError, ValueError, OSError) as error:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    result = run(config, report_path=args.report, chart_path=args.chart)
    return result.exit_code
