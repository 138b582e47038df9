"""Runs a harness: seed, drive the mix from worker threads, summarize, audit, judge.

Threads, not grpc.aio: the harness drives the synchronous :class:`OrderClient` (the library the
order services use, retries and typed errors included) from ``concurrency`` worker threads. On
this project's 2-core machine both drivers reach the same throughput because the engine, not the
client, is the bottleneck (measured, see docs/clients.md).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from clients.errors import CofferError
from clients.loadtest import chart
from clients.loadtest.config import KINDS, LoadConfig, format_mix
from clients.loadtest.stats import TOLERATED_REASONS, Recorder
from clients.loadtest.workload import World
from clients.order_client import OrderClient, RetryPolicy

#: How long the end of a run waits for operations still in flight, beyond their own deadlines.
JOIN_GRACE_SECONDS = 60.0
#: Console width when the output is not a terminal (logs, CI), so the tables stay readable.
REPORT_WIDTH = 132


class HarnessResult:
    def __init__(self, report: dict[str, Any], recorder: Recorder) -> None:
        self.report = report
        self.recorder = recorder

    @property
    def ok(self) -> bool:
        return bool(self.report["ok"])

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def run(
    config: LoadConfig,
    *,
    report_path: Path | None = None,
    chart_path: Path | None = None,
    console: Console | None = None,
) -> HarnessResult:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=REPORT_WIDTH)
    recorder = Recorder()
    seed_recorder = Recorder()
    retry = RetryPolicy(
        max_attempts=config.attempts,
        initial_backoff_s=0.05,
        max_backoff_s=1.0,
        total_timeout_s=config.timeout_s * config.attempts + 30.0,
    )
    failures: list[str] = []
    started_at = datetime.now(UTC)
    with (
        OrderClient(
            config.target,
            timeout=config.timeout_s,
            retry=retry,
            on_retry=recorder.on_retry,
            connections=config.connections,
        ) as client,
        ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="lt-aux") as executor,
    ):
        world = World(config, client, recorder, seed_recorder, executor)
        try:
            client.get_wallet(world.users[0].user_id, timeout=min(config.timeout_s, 10.0))
        except CofferError as error:
            console.print(f"[bold red]cannot reach the engine at {config.target}: {error}[/bold red]")
            report = {
                "ok": False,
                "failures": [f"engine unreachable: {error.reason}"],
                "target": config.target,
            }
            _write(report_path, report)
            return HarnessResult(report, recorder)

        console.print(
            f"seeding {config.users} users (base {world.user_base}) on {config.target} "
            f"with {config.concurrency} workers ..."
        )
        seed_began = time.monotonic()
        world.seed()
        seed_seconds = time.monotonic() - seed_began
        for kind, why in world.disabled.items():
            console.print(f"[yellow]kind {kind} switched off: {why}[/yellow]")
            if config.strict:
                failures.append(f"kind {kind} requested but unavailable ({why})")
        active = {kind: weight for kind, weight in config.mix.items() if kind not in world.disabled}
        seed_unexpected = seed_recorder.unexpected_total()
        if seed_unexpected:
            failures.append(f"seeding met unexpected errors: {dict(seed_unexpected)}")
        console.print(
            f"seeded in {seed_seconds:.1f}s ({sum(seed_recorder.calls.values())} calls); "
            f"running {format_mix(active) or 'nothing'} for {config.duration_s:g}s at concurrency "
            f"{config.concurrency}"
        )
        window = _drive(config, world, recorder, active, console) if active else 0.0
        if not active:
            failures.append("no operation kind of the mix is available on this engine")

        audit = _audit(client, config, console) if config.audit else {"ok": True, "skipped": True}

    report = _build_report(
        config, world, recorder, seed_recorder, active, window, seed_seconds, audit, started_at
    )
    failures += _judge(report, recorder, world, audit)
    report["failures"] = failures
    report["ok"] = not failures
    _print_summary(console, report)
    _write(report_path, report)
    if chart_path is not None:
        chart.write_html(chart_path, report, recorder.samples)
        console.print(f"latency chart: {chart_path}")
    if report_path is not None:
        console.print(f"report: {report_path}")
    if report["ok"]:
        console.print("[bold green]audit: ok[/bold green]")
    else:
        console.print("[bold red]FAILED[/bold red]")
        for failure in failures:
            console.print(f"[red]  - {failure}[/red]")
    return HarnessResult(report, recorder)


def _drive(
    config: LoadConfig, world: World, recorder: Recorder, active: dict[str, int], console: Console
) -> float:
    kinds = list(active)
    weights = [active[kind] for kind in kinds]
    stop = threading.Event()
    recorder.restart_clock()
    recorder.measuring = True
    began = time.monotonic()
    deadline = began + config.duration_s

    def worker(index: int) -> None:
        rng = random.Random(config.seed * 1_000_003 + index)
        while not stop.is_set() and time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            try:
                succeeded = world.operations[kind](rng)
            except Exception as error:  # a harness bug must be visible, not silently skipped
                recorder.violation(f"harness error in {kind}: {error!r}")
                succeeded = False
            recorder.operation(kind, succeeded)

    threads = [
        threading.Thread(target=worker, args=(index,), name=f"lt-worker-{index}", daemon=True)
        for index in range(config.concurrency)
    ]
    for thread in threads:
        thread.start()
    try:
        _progress(config, recorder, threads, began, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finishing the operations in flight, then auditing[/yellow]")
        stop.set()
    stop.set()
    join_until = time.monotonic() + config.timeout_s * config.attempts + JOIN_GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.0, join_until - time.monotonic()))
    recorder.measuring = False
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        recorder.violation(f"{len(stuck)} worker(s) still stuck in a call after the run")
    return time.monotonic() - began


def _progress(
    config: LoadConfig, recorder: Recorder, threads: list[threading.Thread], began: float, console: Console
) -> None:
    def alive() -> bool:
        return any(thread.is_alive() for thread in threads)

    if not config.progress:
        while alive():
            time.sleep(0.2)
        return
    columns = (
        TextColumn("[bold]load[/bold]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as progress:
        task = progress.add_task("", total=config.duration_s)
        while alive():
            elapsed = time.monotonic() - began
            operations, refused, unexpected = recorder.snapshot()
            rate = operations / elapsed if elapsed > 0 else 0.0
            description = f"{operations} ops {rate:.0f}/s  refused {refused}  unexpected {unexpected}"
            progress.update(task, completed=min(elapsed, config.duration_s), description=description)
            time.sleep(0.25)
        progress.update(task, completed=config.duration_s)


def _audit(client: OrderClient, config: LoadConfig, console: Console) -> dict[str, Any]:
    console.print("running Admin.Audit (CONTRACT §8) ...")
    try:
        report = client.audit(timeout=config.audit_timeout_s)
    except CofferError as error:
        return {"ok": False, "error": f"{error.reason}: {error.message}", "shards": []}
    return {
        "ok": report.ok,
        "shards": [
            {
                "shard": shard.shard,
                "ok": shard.ok,
                "transactions_checked": shard.transactions_checked,
                "accounts_checked": shard.accounts_checked,
                "violations": [
                    {"invariant": violation.invariant, "detail": violation.detail}
                    for violation in shard.violations
                ],
            }
            for shard in report.shards
        ],
    }


def _build_report(
    config: LoadConfig,
    world: World,
    recorder: Recorder,
    seed_recorder: Recorder,
    active: dict[str, int],
    window: float,
    seed_seconds: float,
    audit: dict[str, Any],
    started_at: datetime,
) -> dict[str, Any]:
    rpcs = recorder.rpc_summary(window)
    operations = sum(recorder.operations.values())
    errors: dict[str, dict[str, Any]] = {}
    for rpc, counter in recorder.errors.items():
        for reason, count in counter.items():
            entry = errors.setdefault(reason, {"count": 0, "by_rpc": {}, "expected": True})
            entry["count"] += count
            entry["by_rpc"][rpc] = entry["by_rpc"].get(rpc, 0) + count
    for counter in recorder.unexpected.values():
        for reason in counter:
            errors[reason]["expected"] = False
    for reason, entry in errors.items():
        if reason in TOLERATED_REASONS:
            entry["tolerated"] = True
    return {
        "tool": "coffer loadtest",
        "target": config.target,
        "run_id": world.run_id,
        "started_at": started_at.isoformat(),
        "config": {
            "users": config.users,
            "user_base": world.user_base,
            "concurrency": config.concurrency,
            "duration_s": config.duration_s,
            "mix": config.mix,
            "timeout_s": config.timeout_s,
            "attempts": config.attempts,
            "seed": config.seed,
            "driver": "threads",
        },
        "features": world.features,
        "disabled_kinds": world.disabled,
        "active_mix": active,
        "seed": {
            "seconds": round(seed_seconds, 2),
            "calls": sum(seed_recorder.calls.values()),
            "errors": {rpc: dict(counter) for rpc, counter in seed_recorder.errors.items()},
        },
        "duration_s": round(window, 3),
        "totals": {
            "operations": operations,
            "operations_per_s": round(operations / window, 2) if window > 0 else 0.0,
            "calls": sum(summary["measured_calls"] for summary in rpcs.values()),
            "calls_per_s": round(sum(summary["rps"] for summary in rpcs.values()), 2),
            "samples_dropped": recorder.dropped_samples,
        },
        "operations": {
            kind: {
                "count": recorder.operations[kind],
                "failed": recorder.operations_failed[kind],
                "skipped": recorder.operations_skipped[kind],
                "description": KINDS[kind],
            }
            for kind in sorted(set(recorder.operations) | set(recorder.operations_skipped))
        },
        "rpcs": rpcs,
        "errors": dict(sorted(errors.items(), key=lambda item: -int(item[1]["count"]))),
        "unexpected_examples": recorder.unexpected_examples,
        "checks": {
            "violations": recorder.violations,
            "violation_count": recorder.violation_count,
            "flash_claim": {
                "template_id": world.flash_template,
                "stock": world.flash_stock,
                "claimed": world.flash_claimed,
            },
            "duplicates": {
                name: count for name, count in recorder.counters.items() if name.startswith("duplicate")
            },
        },
        "audit": audit,
    }


def _judge(report: dict[str, Any], recorder: Recorder, world: World, audit: dict[str, Any]) -> list[str]:
    failures = []
    unexpected: Counter[str] = recorder.unexpected_total()
    if unexpected:
        failures.append("unexpected errors: " + ", ".join(f"{r}={n}" for r, n in unexpected.most_common()))
    if recorder.violation_count:
        failures.append(f"{recorder.violation_count} harness check(s) failed: {recorder.violations[:3]}")
    if world.flash_template and world.flash_claimed > world.flash_stock:
        failures.append(f"flash coupon over-issued: {world.flash_claimed} > stock {world.flash_stock}")
    operations = report["totals"]["operations"]
    failed = sum(entry["failed"] for entry in report["operations"].values())
    if operations and failed == operations:
        failures.append("no operation succeeded")
    if not audit.get("ok", False):
        if "error" in audit:
            failures.append(f"audit call failed: {audit['error']}")
        else:
            broken = [
                f"shard {shard['shard']}: {violation['invariant']} ({violation['detail']})"
                for shard in audit["shards"]
                for violation in shard["violations"]
            ]
            failures.append("audit found broken invariants: " + "; ".join(broken[:10]))
    return failures


def _print_summary(console: Console, report: dict[str, Any]) -> None:
    totals = report["totals"]
    console.print(
        f"\n[bold]{totals['operations']} operations in {report['duration_s']:.1f}s = "
        f"{totals['operations_per_s']:.1f} ops/s; {totals['calls']} calls = "
        f"{totals['calls_per_s']:.1f} calls/s[/bold]"
    )
    table = Table(title="Latency per RPC (ms, every answered call)")
    for column in ("rpc", "calls", "ok", "refused", "calls/s", "p50", "p95", "p99", "max", "retries"):
        table.add_column(column, justify="left" if column == "rpc" else "right")
    for rpc, summary in report["rpcs"].items():
        table.add_row(
            rpc,
            str(summary["measured_calls"]),
            str(summary["ok"]),
            str(summary["refused_or_failed"]),
            f"{summary['rps']:.1f}",
            f"{summary['p50_ms']:.1f}",
            f"{summary['p95_ms']:.1f}",
            f"{summary['p99_ms']:.1f}",
            f"{summary['max_ms']:.1f}",
            str(sum(summary["retries"].values())),
        )
    console.print(table)
    if report["errors"]:
        errors = Table(title="Refusals and errors by reason")
        for column in ("reason", "count", "rpcs", "verdict"):
            errors.add_column(column)
        for reason, entry in report["errors"].items():
            verdict = "expected" if entry["expected"] else "[red]UNEXPECTED[/red]"
            if entry.get("tolerated"):
                verdict = "tolerated (retry later)"
            rpcs = ", ".join(f"{rpc} {count}" for rpc, count in entry["by_rpc"].items())
            errors.add_row(reason, str(entry["count"]), rpcs, verdict)
        console.print(errors)
    operations = Table(title="Operations")
    for column in ("kind", "count", "refused or failed", "skipped (nothing to do)"):
        operations.add_column(column, justify="left" if column == "kind" else "right")
    for kind, entry in report["operations"].items():
        operations.add_row(kind, str(entry["count"]), str(entry["failed"]), str(entry["skipped"]))
    console.print(operations)
    audit = report["audit"]
    if audit.get("skipped"):
        console.print("audit: skipped")
    elif "error" in audit:
        console.print(f"[red]audit: the call failed: {audit['error']}[/red]")
    else:
        for shard in audit["shards"]:
            state = "[green]ok[/green]" if shard["ok"] else "[red]BROKEN[/red]"
            console.print(
                f"audit shard {shard['shard']}: {state} ({shard['transactions_checked']} transactions, "
                f"{shard['accounts_checked']} accounts)"
            )
            for violation in shard["violations"][:10]:
                console.print(f"[red]    {violation['invariant']}: {violation['detail']}[/red]")


def _write(path: Path | None, report: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
