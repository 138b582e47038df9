"""The campaign CLI: grant points to a list of users through ``IssueBatch`` (docs/clients.md).

    python -m clients.campaign grant-points --users FILE --points 100 [--ttl-days N] [--reason R]
        [--batch 5000] [--concurrency 4] [--target host:port] [--campaign-id ID]

Each user's idempotency key is derived from the campaign id and the user id
(``campaign:<id>:<user>``), so running the same campaign again replays every grant instead of
granting twice, and a call retried after a lost answer (``clients._retry``: UNAVAILABLE, ABORTED,
DEADLINE_EXCEEDED) carries the same keys. Without ``--campaign-id`` the id is a digest of the
users file and the grant (points, ttl, reason): the same command is the same campaign.

:func:`run_campaign` is the library form (``make bench-bulk`` drives it). Exit code 0 when every
item was granted or replayed, 1 when any was refused (the summary says why), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients._retry import RetryPolicy
from clients._transport import DEFAULT_TARGET, Transport
from clients.errors import CofferError
from coffer.v1 import engine_pb2

__all__ = [
    "MAX_BATCH_ITEMS",
    "CampaignSummary",
    "campaign_key",
    "grant_requests",
    "main",
    "read_user_ids",
    "run_campaign",
]

#: What one IssueBatch call may carry (CONTRACT §2).
MAX_BATCH_ITEMS = 10_000
DEFAULT_BATCH_ITEMS = 5_000
#: Concurrent IssueBatch calls: enough to keep both shards busy while a call is in flight.
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 32
#: A call of 10,000 items is a few seconds of work on a loaded engine; each attempt gets this long.
CALL_TIMEOUT_SECONDS = 120.0
#: Campaign ids go into idempotency keys: ``[A-Za-z0-9._-]``, short enough for any user id.
_CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Users in one users file (a campaign to more users is several files).
MAX_USERS = 50_000_000
RETRY = RetryPolicy(max_attempts=6, initial_backoff_s=0.2, max_backoff_s=5.0, total_timeout_s=900.0)


@dataclass
class CampaignSummary:
    """What a campaign run did, item by item."""

    granted: int = 0
    replayed: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    #: The first few refusals, ``(user_id, reason, message)``, for the report.
    examples: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def items(self) -> int:
        return self.granted + self.replayed + sum(self.refused.values())

    @property
    def ok(self) -> bool:
        return not self.refused


MAX_EXAMPLES = 10


def campaign_key(campaign_id: str, user_id: int) -> str:
    """The idempotency key of ``user_id``'s grant in ``campaign_id`` (the same on every run)."""
    return f"campaign:{campaign_id}:{user_id}"


def default_campaign_id(users_file: Path, points: int, ttl_days: int, reason: str) -> str:
    digest = hashlib.sha256(users_file.read_bytes())
    digest.update(f"\0{points}\0{ttl_days}\0{reason}".encode())
    return digest.hexdigest()[:24]


def read_user_ids(path: Path) -> list[int]:
    """One positive user id per line; blank lines and ``#`` comments are skipped."""
    users: list[int] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            if not text.isdigit() or int(text) <= 0:
                raise ValueError(f"{path}:{number}: not a user id: {text!r}")
            users.append(int(text))
            if len(users) > MAX_USERS:
                raise ValueError(f"{path}: more than {MAX_USERS} users")
    return users


def grant_requests(
    campaign_id: str, user_ids: Sequence[int], *, points: int, ttl_days: int, reason: str
) -> list[engine_pb2.IssueRequest]:
    return [
        engine_pb2.IssueRequest(
            idempotency_key=campaign_key(campaign_id, user),
            user_id=user,
            points=engine_pb2.PointsGrant(points=points, ttl_days=ttl_days, reason=reason),
        )
        for user in user_ids
    ]


def _batches(user_ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(user_ids), size):
        yield user_ids[start : start + size]


def run_campaign(
    transport: Transport,
    user_ids: Sequence[int],
    *,
    campaign_id: str,
    points: int,
    ttl_days: int = 0,
    reason: str = "campaign",
    batch_items: int = DEFAULT_BATCH_ITEMS,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[int], None] | None = None,
) -> CampaignSummary:
    """Grant ``points`` to every user through IssueBatch calls, ``concurrency`` at a time.

    A call that still fails after its retries raises (:class:`clients.errors.CofferError`):
    what was granted stays granted, and running the campaign again replays it.
    """
    if not _CAMPAIGN_ID.match(campaign_id):
        raise ValueError("campaign id: 1-64 characters of [A-Za-z0-9._-]")
    if not 1 <= batch_items <= MAX_BATCH_ITEMS:
        raise ValueError(f"batch: 1..{MAX_BATCH_ITEMS} items")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency: 1..{MAX_CONCURRENCY}")
    summary = CampaignSummary()

    def send(users: Sequence[int]) -> tuple[Sequence[int], engine_pb2.IssueBatchResponse]:
        request = engine_pb2.IssueBatchRequest(
            items=grant_requests(campaign_id, users, points=points, ttl_days=ttl_days, reason=reason)
        )
        response: engine_pb2.IssueBatchResponse = transport.send(
            "TransactionEngine.IssueBatch", request, timeout=CALL_TIMEOUT_SECONDS, retry=RETRY
        )
        return users, response

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="campaign") as pool:
        # map() keeps at most the whole list in flight; the batches are built lazily per call.
        for users, response in pool.map(send, _batches(user_ids, batch_items)):
            if len(response.results) != len(users):
                raise RuntimeError(
                    f"IssueBatch answered {len(response.results)} results for {len(users)} items"
                )
            for user, result in zip(users, response.results, strict=True):
                if result.HasField("error"):
                    summary.refused[result.error.reason] += 1
                    if len(summary.examples) < MAX_EXAMPLES:
                        summary.examples.append((user, result.error.reason, result.error.message))
                elif result.replayed:
                    summary.replayed += 1
                else:
                    summary.granted += 1
            if on_progress is not None:
                on_progress(len(users))
    return summary


def _print_summary(console: Console, summary: CampaignSummary, campaign_id: str) -> None:
    table = Table(title=f"campaign {campaign_id}")
    table.add_column("outcome")
    table.add_column("items", justify="right")
    table.add_row("granted", f"{summary.granted:,}")
    table.add_row("replayed", f"{summary.replayed:,}")
    for reason, count in sorted(summary.refused.items()):
        table.add_row(f"refused: {reason}", f"{count:,}")
    console.print(table)
    for user, reason, message in summary.examples:
        console.print(f"  user {user}: {reason} ({message})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clients.campaign", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant-points", help="grant points to every user of a file")
    grant.add_argument("--users", type=Path, required=True, help="file of user ids, one per line")
    grant.add_argument("--points", type=int, required=True, help="points per user (> 0)")
    grant.add_argument("--ttl-days", type=int, default=0, help="days until the lot expires (0: never)")
    grant.add_argument("--reason", default="campaign", help="the grant's reason (ledger memo)")
    grant.add_argument("--batch", type=int, default=DEFAULT_BATCH_ITEMS, help="items per IssueBatch call")
    grant.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="calls in flight")
    grant.add_argument("--target", default=DEFAULT_TARGET, help="engine address host:port")
    grant.add_argument("--campaign-id", default=None, help="names the campaign (default: a digest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        users = read_user_ids(args.users)
    except (OSError, ValueError) as error:
        console.print(f"[red]{error}[/red]")
        return 2
    campaign_id = args.campaign_id or default_campaign_id(args.users, args.points, args.ttl_days, args.reason)
    progress = Progress(
        TextColumn("[bold]grant-points"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    try:
        with Transport(args.target, connections=min(args.concurrency, 4)) as transport, progress:
            task = progress.add_task("grant", total=len(users))
            summary = run_campaign(
                transport,
                users,
                campaign_id=campaign_id,
                points=args.points,
                ttl_days=args.ttl_days,
                reason=args.reason,
                batch_items=args.batch,
                concurrency=args.concurrency,
                on_progress=lambda done: progress.advance(task, done),
            )
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        return 2
    except CofferError as error:
        console.print(f"[red]IssueBatch failed: {error.reason}: {error.message}[/red] (re-run to resume)")
        return 1
    _print_summary(console, summary, campaign_id)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
