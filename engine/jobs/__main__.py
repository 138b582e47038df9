"""``python -m engine.jobs expire|settle|audit [--now TIME [--force]] [--dry-run] [--shard N]``.

Connects with the same configuration as the server (``COFFER_*`` variables, CONTRACT §6),
checks each shard's recorded identity against it, and runs one job. ``--now`` replays the job as
of another instant (an ISO 8601 time — a time without offset is UTC — or Unix seconds); a time
more than a day ahead of the clock also needs ``--force`` (expiring a week early is not undone).
``expire --dry-run`` prints what the run would change (per task and shard) and changes nothing;
since nothing it does needs undoing, it may look any distance ahead without ``--force``.
Exit status: 0 done, 1 the audit found a broken invariant, 2 usage / job not available,
3 the job could not run (a shard unreachable or disagreeing with the configuration).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError

from engine.config import ConfigurationError, OneLineArgumentParser, load_settings
from engine.domain.results import AuditReport
from engine.domain.time_units import MICROSECONDS_PER_DAY, MICROSECONDS_PER_SECOND
from engine.jobs.base import JobName
from engine.jobs.run import ExpirePreview, ExpireReport, preview_expire, run_audit, run_expire
from engine.process_log import configure_logging, log_time
from engine.service.context import EngineContext, system_now_us
from engine.storage.errors import first_line
from engine.storage.migrations import ShardConfigurationMismatch, migrate_all
from engine.storage.shards import open_router

logger = logging.getLogger("coffer.jobs")

EXIT_OK = 0
EXIT_AUDIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_RUN = 3
#: ``--now`` further ahead of the clock than this needs ``--force``.
MAX_UNFORCED_LEAD_US = MICROSECONDS_PER_DAY
#: ``--now`` must lie within the epoch and the year 9999 (what datetime can show).
MAX_NOW_US = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * MICROSECONDS_PER_SECOND


class _BadTime(ValueError):
    pass


def parse_now(text: str) -> int:
    """Microseconds since the epoch from ISO 8601 (naive = UTC) or Unix seconds."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as error:
            raise _BadTime(f"--now: {text!r} is neither ISO 8601 nor epoch seconds") from error
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        now_us = (delta.days * 86_400 + delta.seconds) * MICROSECONDS_PER_SECOND + delta.microseconds
    else:
        if not math.isfinite(seconds):
            raise _BadTime(f"--now: {text!r} is not a time")
        now_us = round(seconds * MICROSECONDS_PER_SECOND)
    if not 0 <= now_us <= MAX_NOW_US:
        raise _BadTime(f"--now: {text!r} is outside 1970..9999")
    return now_us


def _parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog="python -m engine.jobs", description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=[name.value for name in JobName])
    parser.add_argument("--now", default=None, help="ISO 8601 time or Unix seconds (default: the clock)")
    parser.add_argument(
        "--force", action="store_true", help="accept a --now more than a day ahead of the clock"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="expire: print what would change, change nothing"
    )
    parser.add_argument("--shard", type=int, default=None, help="audit: only this physical shard")
    return parser


def _expire_document(report: ExpireReport) -> dict[str, object]:
    return {
        "job": JobName.EXPIRE.value,
        "now_us": report.now_us,
        **{name: asdict(count) for name, count in report.tasks.items()},
    }


def _preview_document(preview: ExpirePreview) -> dict[str, object]:
    def amounts(unit: str | None, total: int) -> dict[str, int]:
        return {} if unit is None else {unit: total}

    tasks: dict[str, object] = {}
    for name, task in preview.tasks.items():
        unit = None if task.unit is None else task.unit.value
        tasks[name] = {
            "due": task.due,
            **amounts(unit, task.total),
            "more_left": task.more_left,
            "shards": {
                str(index): {"due": count, **amounts(unit, total)}
                for index, (count, total) in task.shards.items()
            },
        }
    return {"job": JobName.EXPIRE.value, "dry_run": True, "now_us": preview.now_us, **tasks}


def _audit_document(report: AuditReport) -> dict[str, object]:
    return {
        "job": JobName.AUDIT.value,
        "ok": report.ok,
        "shards": [
            {
                "shard": shard.shard,
                "ok": shard.ok,
                "transactions_checked": shard.transactions_checked,
                "accounts_checked": shard.accounts_checked,
                "violations": [asdict(violation) for violation in shard.violations],
            }
            for shard in report.shards
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    job = JobName(arguments.job)
    fixed_now: int | None = None
    if arguments.now is not None:
        try:
            fixed_now = parse_now(arguments.now)
        except _BadTime as error:
            parser.fail(str(error))
        # A dry run changes nothing, so previewing a far-off instant needs no --force.
        far_ahead = fixed_now - system_now_us() > MAX_UNFORCED_LEAD_US
        if far_ahead and not arguments.force and not arguments.dry_run:
            parser.fail(f"--now {log_time(fixed_now)} is more than a day ahead of the clock; add --force")
    if arguments.shard is not None and job is not JobName.AUDIT:
        parser.fail("--shard applies to audit only")
    if arguments.dry_run and job is not JobName.EXPIRE:
        parser.fail("--dry-run applies to expire only")
    if job is JobName.SETTLE:
        print(f"{parser.prog}: settle: settlement is not available yet", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings()
        router = open_router(settings, pool_size=2)
    except (ConfigurationError, ValueError) as error:
        parser.fail(f"configuration: {error}")
    if arguments.shard is not None and not 0 <= arguments.shard < router.physical_count:
        router.dispose()
        parser.fail(f"--shard {arguments.shard}: must be within 0..{router.physical_count - 1}")
    configure_logging(settings.log_format)
    try:
        migrate_all(router)
        context = (
            EngineContext(router, settings)
            if fixed_now is None
            else EngineContext(router, settings, clock=lambda: fixed_now)
        )
        if job is JobName.EXPIRE and arguments.dry_run:
            print(json.dumps(_preview_document(preview_expire(context))))
            return EXIT_OK
        if job is JobName.EXPIRE:
            print(json.dumps(_expire_document(run_expire(context))))
            return EXIT_OK
        audit_report = run_audit(context, arguments.shard)
        print(json.dumps(_audit_document(audit_report)))
        if not audit_report.ok:
            logger.error("audit found broken invariants")
            return EXIT_AUDIT_FAILED
        return EXIT_OK
    except (DBAPIError, ShardConfigurationMismatch) as error:
        print(f"{parser.prog}: {job.value} could not run: {first_line(error)}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    finally:
        router.dispose()


if __name__ == "__main__":
    sys.exit(main())
