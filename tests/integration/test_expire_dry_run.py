"""``expire --dry-run`` (issue 9): reports, per task and shard, what a run would change — holds,
points lots, gift cards, coupons and the fen / points involved — and changes nothing; a real run
then changes exactly what it reported."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from engine.domain.commands import ChargeCommand
from engine.domain.coupons.rules import CouponType
from engine.domain.time_units import MICROSECONDS_PER_SECOND
from engine.jobs.run import preview_expire, run_expire
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.storage.schema import ledger_entries, metadata
from tests.e2e.test_operations import environment, jobs
from tests.support.coupons import claim_one, template
from tests.support.engines import make_context
from tests.support.instruments import assert_audit_ok, grant_points, key, new_card, top_up

#: On different physical shards of two (virtual shard = user_id % 128, physical = virtual % 2).
USERS = (7001, 7002)
TASKS = ("holds", "points_lots", "gift_cards", "coupons")


def snapshot(context: EngineContext) -> dict[tuple[int, str], list[tuple[Any, ...]]]:
    """Every row of every table on every shard, in a stable order."""
    rows: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
    for shard in context.router.shards:
        with shard.engine.connect() as connection:
            for table in metadata.sorted_tables:
                found = connection.execute(select(table)).all()
                rows[(shard.index, table.name)] = sorted((tuple(row) for row in found), key=repr)
    return rows


def entry_count(context: EngineContext) -> int:
    total = 0
    for shard in context.router.shards:
        with shard.engine.connect() as connection:
            total += len(connection.execute(select(ledger_entries.c.transaction_id)).all())
    return total


def seed_due_items(context: EngineContext) -> None:
    """Per user: a cash hold of 1500 fen, a 300-point lot and a 2000-fen card expiring in a day,
    two coupons valid for a day — and a lot, a card and a coupon that never expire."""
    lasting = template(context, CouponType.NO_THRESHOLD, amount_off=100)
    short = template(context, CouponType.NO_THRESHOLD, amount_off=500, valid_days_after_claim=1)
    for user in USERS:
        top_up(context, user, 10_000)
        grant_points(context, user, 300, ttl_days=1)
        grant_points(context, user, 50)
        new_card(context, user, 2_000, ttl_days=1)
        new_card(context, user, 700)
        claim_one(context, user, short)
        claim_one(context, user, short)
        claim_one(context, user, lasting)
        # Cash only: its release hands nothing back to a lot or coupon the same run expires.
        charge(context, ChargeCommand(key("ch"), user, key("o"), "m", "", 1_500, authorize_only=True))


def advance_past_everything(context: EngineContext) -> None:
    seconds = max(context.settings.hold_ttl_seconds, 86_400) + 60
    context.clock.advance(seconds=seconds)  # type: ignore[attr-defined]


def test_a_dry_run_changes_nothing_and_the_run_changes_what_it_reported(
    engine_context: EngineContext,
) -> None:
    context = engine_context
    seed_due_items(context)
    advance_past_everything(context)
    before, entries_before = snapshot(context), entry_count(context)

    preview = preview_expire(context)
    assert {name: preview.due(name) for name in TASKS} == {
        "holds": 2,
        "points_lots": 2,
        "gift_cards": 2,
        "coupons": 4,
    }
    assert preview.tasks["holds"].total == 3_000
    assert preview.tasks["points_lots"].total == 600
    assert preview.tasks["gift_cards"].total == 4_000
    for name in TASKS:
        shards = preview.tasks[name].shards
        assert sorted(shards) == [0, 1] and shards[0][0] == shards[1][0], (name, shards)
        assert not preview.tasks[name].more_left
    # A second dry run sees the same, and neither touched a row or wrote an entry.
    assert preview_expire(context).tasks == preview.tasks
    assert snapshot(context) == before and entry_count(context) == entries_before

    report = run_expire(context)
    assert {name: report.changed(name) for name in TASKS} == {name: preview.due(name) for name in TASKS}
    assert snapshot(context) != before
    assert preview_expire(context).tasks["holds"].due == 0
    assert all(preview_expire(context).due(name) == 0 for name in TASKS)
    assert_audit_ok(context)


def test_a_dry_run_counts_at_most_one_runs_worth(engine_context: EngineContext) -> None:
    context = engine_context
    for user in USERS:
        for _ in range(3):
            grant_points(context, user, 10, ttl_days=1)
    advance_past_everything(context)
    preview = preview_expire(context, batch_size=2, max_batches=1)
    lots = preview.tasks["points_lots"]
    assert lots.due == 4 and lots.total == 40 and lots.more_left
    assert not preview.tasks["holds"].more_left
    assert run_expire(context, batch_size=2, max_batches=1).changed("points_lots") == 4


def _jobs(urls: list[str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return jobs(environment(COFFER_SHARDS=",".join(urls)), *arguments)


def test_the_cli_dry_run_needs_no_force_and_prints_per_shard_counts(sqlite_shard_urls: list[str]) -> None:
    context = make_context(sqlite_shard_urls)
    try:
        seed_due_items(context)
        before, entries_before = snapshot(context), entry_count(context)
        # Past the hold (a week), short of the lasting coupon (30 days): far enough ahead to need
        # --force for a real run, not for a dry run.
        lead_s = context.settings.hold_ttl_seconds + 86_400
        now = datetime.fromtimestamp(context.now_us() / MICROSECONDS_PER_SECOND + lead_s, UTC)
        at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        dry = _jobs(sqlite_shard_urls, "expire", "--dry-run", "--now", at)
        assert dry.returncode == 0, dry.stderr
        document = json.loads(dry.stdout)
        assert document["dry_run"] is True
        assert document["holds"] == {
            "due": 2,
            "fen": 3_000,
            "more_left": False,
            "shards": {"0": {"due": 1, "fen": 1_500}, "1": {"due": 1, "fen": 1_500}},
        }
        assert document["points_lots"]["due"] == 2 and document["points_lots"]["points"] == 600
        assert document["gift_cards"]["due"] == 2 and document["gift_cards"]["fen"] == 4_000
        assert document["coupons"]["due"] == 4 and "fen" not in document["coupons"]
        assert snapshot(context) == before and entry_count(context) == entries_before

        refused = _jobs(sqlite_shard_urls, "expire", "--now", at)
        assert refused.returncode == 2 and "--force" in refused.stderr
        assert _jobs(sqlite_shard_urls, "audit", "--dry-run").returncode == 2
        assert snapshot(context) == before

        real = _jobs(sqlite_shard_urls, "expire", "--now", at, "--force")
        assert real.returncode == 0, real.stderr
        ran = json.loads(real.stdout)
        changed = {name: ran[name]["changed"] for name in TASKS}
        assert changed == {name: document[name]["due"] for name in TASKS}
    finally:
        context.router.dispose()
