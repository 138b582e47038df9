"""``python -m engine.jobs expire|settle|audit [--now ISO8601-or-epoch-seconds]``.

Connects with the same configuration as the server (``COFFER_*`` variables, CONTRACT §6),
checks each shard's recorded identity against it, and runs one job. ``--now`` replays the job as
of another instant (an ISO 8601 time — a time without offset is UTC — or Unix seconds).
Exit status: 0 done, 1 the audit found a broken invariant, 2 usage / job not available.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from engine.config import Settings, load_settings
from engine.service.context import EngineContext
from engine.storage.database import create_shard_engine
from engine.storage.migrations import migrate_all
from engine.storage.router import ShardRouter

MICROSECONDS_PER_SECOND = 1_000_000
logger = logging.getLogger("coffer.jobs")


def parse_now(text: str) -> int:
    """Microseconds since the epoch from ISO 8601 (naive = UTC) or Unix seconds."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return round(seconds * MICROSECONDS_PER_SECOND)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--now: {text!r} is neither ISO 8601 nor epoch seconds") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROSECONDS_PER_SECOND + delta.microseconds


def build_router(settings: Settings) -> ShardRouter:
    """The shards, as the server opens them (without importing the gRPC server)."""
    engines = [
        create_shard_engine(
            url,
            pool_size=2,
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        for url in settings.shards
    ]
    return ShardRouter(engines, settings.virtual_shards)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.jobs", description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=("expire", "settle", "audit"))
    parser.add_argument("--now", type=parse_now, default=None, help="ISO 8601 time or Unix seconds")
    parser.add_argument("--shard", type=int, default=None, help="audit: only this physical shard")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arguments = _parser().parse_args(argv)
    if arguments.job == "settle":
        print("settle: settlement is not available yet", file=sys.stderr)
        return 2
    settings = load_settings()
    router = build_router(settings)
    try:
        migrate_all(router)
        fixed_now: int | None = arguments.now
        context = (
            EngineContext(router, settings)
            if fixed_now is None
            else EngineContext(router, settings, clock=lambda: fixed_now)
        )
        if arguments.job == "expire":
            from engine.jobs.run import run_expire

            report = run_expire(context)
            print(
                json.dumps(
                    {
                        "job": "expire",
                        "now_us": report.now_us,
                        **{name: asdict(count) for name, count in report.tasks.items()},
                    }
                )
            )
            return 0
        from engine.service.audit import audit

        audit_report = audit(context, arguments.shard)
        print(
            json.dumps(
                {
                    "job": "audit",
                    "ok": audit_report.ok,
                    "shards": [
                        {
                            "shard": shard.shard,
                            "ok": shard.ok,
                            "transactions_checked": shard.transactions_checked,
                            "accounts_checked": shard.accounts_checked,
                            "violations": [asdict(violation) for violation in shard.violations],
                        }
                        for shard in audit_report.shards
                    ],
                }
            )
        )
        if not audit_report.ok:
            logger.error("audit found broken invariants")
            return 1
        return 0
    finally:
        router.dispose()


if __name__ == "__main__":
    sys.exit(main())
