"""Runs a harness: seed, drive the mix from worker threads, summarize, audit, judge.

Threads, not grpc.aio: the harness drives the synchronous :class:`OrderClient` (the library the
order services use, retries and typed errors included) from ``concurrency`` worker threads. One
Python process of such threads tops out at what one core can do, so ``processes`` > 1 splits the
load over several processes (spawned, each with its own channels, its own users and a share of the
concurrency and rate); each sends back its :class:`RecorderState` and the parent merges them,
HdrHistograms included, audits once and judges the whole.

Closed loop by default (each caller starts its next operation when the last one ends); with
``rate_per_s`` an open loop: operations start on a fixed schedule and latency counts from the
scheduled start, so an engine that stalls shows as latency rather than as calls never made.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import queue
import random
import resource
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from clients.errors import CofferError
from clients.loadtest import chart
from clients.loadtest.config import KINDS, LoadConfig, format_mix
from clients.loadtest.credentials import open_client
from clients.loadtest.stats import TOLERATED_REASONS, Recorder, RecorderState
from clients.loadtest.workload import World
from clients.order_client import RetryPolicy

__all__ = ["REPORT_WIDTH", "DriveHook", "HarnessResult", "run"]

#: How long the end of a run waits for operations still in flight, beyond their own deadlines.
JOIN_GRACE_SECONDS = 60.0
#: Console width when the output is not a terminal (logs, CI), so the tables stay readable.
REPORT_WIDTH = 132
#: How long load processes may take to start and seed before the parent gives up on them.
PART_START_TIMEOUT_SECONDS = 900.0
MICROSECONDS_PER_SECOND = 1_000_000


class DriveHook(Protocol):
    """Called around the measured window only (after seeding, before the audit): e.g. a meter
    of the engine's CPU."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class WorldSummary:
    """What a load process's :class:`World` knew at the end, for the report and the judge."""

    run_id: str
    user_base: int
    features: dict[str, bool] = field(default_factory=dict)
    disabled: dict[str, str] = field(default_factory=dict)
    flash_template: str = ""
    flash_stock: int = 0
    flash_claimed: int = 0

    @classmethod
    def of(cls, world: World) -> WorldSummary:
        return cls(
            run_id=world.run_id,
            user_base=world.user_base,
            features=dict(world.features),
            disabled=dict(world.disabled),
            flash_template=world.flash_template,
            flash_stock=world.flash_stock,
            flash_claimed=world.flash_claimed,
        )


@dataclass
class PartResult:
    """One load process's run, in picklable values."""

    part: int
    state: RecorderState
    seed_state: RecorderState
    world: WorldSummary | None
    window_s: float = 0.0
    seed_seconds: float = 0.0
    #: user + system CPU of the load process during the measured window.
    cpu_s: float = 0.0
    #: Set when the part could not run (engine unreachable, crash); fails the run.
    error: str = ""


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


def _retry_policy(config: LoadConfig) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=config.attempts,
        initial_backoff_s=0.05,
        max_backoff_s=1.0,
        total_timeout_s=config.timeout_s * config.attempts + 30.0,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Gate:
    """Where the load processes and the parent meet: all seeded (the window begins), all done
    driving (it ends). The parent's gate runs the drive hooks just after each meeting; in a
    single-process run there is no barrier and the hooks run around the drive itself."""

    def __init__(
        self, barrier: Any | None = None, hooks: Sequence[DriveHook] = (), *, window_s: float = 0.0
    ) -> None:
        self.barrier = barrier
        self.hooks = hooks
        #: The longest the measured window may take: the load, then the calls still in flight.
        self.window_s = window_s

    def begin(self) -> None:
        if self.barrier is not None:
            self.barrier.wait(PART_START_TIMEOUT_SECONDS)
        for hook in self.hooks:
            hook.start()

    def end(self) -> None:
        if self.barrier is not None:
            self.barrier.wait(self.window_s + JOIN_GRACE_SECONDS)
        for hook in self.hooks:
            hook.stop()

    def abort(self) -> None:
        if self.barrier is not None:
            self.barrier.abort()


def _run_part(config: LoadConfig, part: int, console: Console, gate: _Gate) -> PartResult:
    """Seed this part's users, wait at the gate, drive its share of the mix, wait again."""
    recorder = Recorder()
    seed_recorder = Recorder()
    with (
        open_client(
            config.target,
            config.credentials,
            timeout=config.timeout_s,
            retry=_retry_policy(config),
            on_retry=recorder.on_retry,
            connections=config.connections,
        ) as client,
        ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="lt-aux") as executor,
    ):
        world = World(config, client, recorder, seed_recorder, executor)
        try:
            try:
                client.get_wallet(world.users[0].user_id, timeout=min(config.timeout_s, 10.0))
            except CofferError as error:
                console.print(f"[bold red]cannot reach the engine at {config.target}: {error}[/bold red]")
                gate.abort()
                return PartResult(
                    part,
                    recorder.export(),
                    seed_recorder.export(),
                    None,
                    error=f"engine unreachable: {error.reason}",
                )
            console.print(
                f"seeding {config.users} users (base {world.user_base}) on {config.target} "
                f"with {config.concurrency} workers ..."
            )
            seed_began = time.monotonic()
            world.seed()
            seed_seconds = time.monotonic() - seed_began
            for kind, why in world.disabled.items():
                console.print(f"[yellow]kind {kind} switched off: {why}[/yellow]")
            active = {kind: weight for kind, weight in config.mix.items() if kind not in world.disabled}
            console.print(
                f"seeded in {seed_seconds:.1f}s ({sum(seed_recorder.calls.values())} calls); "
                f"running {format_mix(active) or 'nothing'} for {config.duration_s:g}s at concurrency "
                f"{config.concurrency}"
            )
            gate.begin()
            cpu_began = _cpu_seconds()
            window = _drive(config, part, world, recorder, active, console) if active else 0.0
            cpu = _cpu_seconds() - cpu_began
            gate.end()
        finally:
            world.close()
    return PartResult(
        part,
        recorder.export(),
        seed_recorder.export(),
        WorldSummary.of(world),
        window_s=window,
        seed_seconds=seed_seconds,
        cpu_s=cpu,
    )


def _part_main(config: LoadConfig, part: int, barrier: Any, results: Any) -> None:
    """Entry point of a spawned load process: its result (or its failure) goes to ``results``."""
    console = Console(stderr=True, width=REPORT_WIDTH, quiet=part > 0)
    try:
        result = _run_part(config, part, console, _Gate(barrier, window_s=_window_limit_s(config)))
    except BaseException as error:
        barrier.abort()
        empty = Recorder().export()
        result = PartResult(part, empty, empty, None, error=f"load process {part} failed: {error!r}")
    results.put(result)


def _window_limit_s(config: LoadConfig) -> float:
    return config.duration_s + config.timeout_s * config.attempts + JOIN_GRACE_SECONDS


def _part_configs(config: LoadConfig, run_id: str) -> list[LoadConfig]:
    """Split the concurrency, users and rate over the processes; each gets its own run id
    (hence its own idempotency keys and coupon templates) and its own users."""
    count = config.processes
    configs = []
    for part in range(count):
        base = None if config.user_base is None else config.user_base + part * (config.users // count + 1)
        configs.append(
            replace(
                config,
                processes=1,
                concurrency=config.concurrency // count + (1 if part < config.concurrency % count else 0),
                users=config.users // count + (1 if part < config.users % count else 0),
                rate_per_s=None if config.rate_per_s is None else config.rate_per_s / count,
                seed=config.seed * 7919 + part,
                user_base=base,
                run_id=f"{run_id}p{part}",
                progress=False,
                audit=False,
            )
        )
    return configs


def _run_parts(
    config: LoadConfig, run_id: str, console: Console, hooks: Sequence[DriveHook]
) -> list[PartResult]:
    if config.processes == 1:
        single = replace(config, run_id=run_id)
        return [_run_part(single, 0, console, _Gate(None, hooks))]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(config.processes + 1)
    results = context.Queue()
    processes = [
        context.Process(target=_part_main, args=(part_config, part, barrier, results), name=f"lt-part-{part}")
        for part, part_config in enumerate(_part_configs(config, run_id))
    ]
    console.print(f"starting {config.processes} load processes ...")
    for process in processes:
        process.start()
    gate = _Gate(barrier, hooks, window_s=_window_limit_s(config))
    collected: list[PartResult] = []
    try:
        gate.begin()
        console.print(f"driving for {config.duration_s:g}s from {config.processes} processes ...")
        gate.end()
    except threading.BrokenBarrierError:
        console.print("[red]a load process failed before or during its run[/red]")
    deadline = time.monotonic() + config.timeout_s * config.attempts + JOIN_GRACE_SECONDS
    while len(collected) < len(processes) and time.monotonic() < deadline:
        try:
            collected.append(results.get(timeout=1.0))
        except queue.Empty:
            if not any(process.is_alive() for process in processes) and results.empty():
                break
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    missing = set(range(len(processes))) - {result.part for result in collected}
    for part in sorted(missing):
        empty = Recorder().export()
        collected.append(PartResult(part, empty, empty, None, error=f"load process {part} sent no result"))
    return sorted(collected, key=lambda result: result.part)


def run(
    config: LoadConfig,
    *,
    report_path: Path | None = None,
    chart_path: Path | None = None,
    console: Console | None = None,
    hooks: Sequence[DriveHook] = (),
) -> HarnessResult:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=REPORT_WIDTH)
    started_at = datetime.now(UTC)
    run_id = config.run_id or uuid.uuid4().hex[:8]
    parts = _run_parts(config, run_id, console, hooks)
    recorder = Recorder()
    seed_recorder = Recorder()
    for part in parts:
        recorder.merge(part.state)
        seed_recorder.merge(part.seed_state)
    failures = [part.error for part in parts if part.error]
    worlds = [part.world for part in parts if part.world is not None]
    unreachable = any(part.error.startswith("engine unreachable") for part in parts)
    if unreachable or not worlds:
        report = {"ok": False, "failures": failures or ["no load process ran"], "target": config.target}
        _write(report_path, report)
        return HarnessResult(report, recorder)
    world = _merge_worlds(run_id, worlds)
    if config.strict:
        failures += [f"kind {kind} requested but unavailable ({why})" for kind, why in world.disabled.items()]
    active = {kind: weight for kind, weight in config.mix.items() if kind not in world.disabled}
    seed_unexpected = seed_recorder.unexpected_total()
    if seed_unexpected:
        failures.append(f"seeding met unexpected errors: {dict(seed_unexpected)}")
    if not active:
        failures.append("no operation kind of the mix is available on this engine")
    window = max(part.window_s for part in parts)
    seed_seconds = max(part.seed_seconds for part in parts)
    cpu_s = sum(part.cpu_s for part in parts)
    audit = _audit(config, console) if config.audit else {"ok": True, "skipped": True}
    report = _build_report(
        config, world, recorder, seed_recorder, active, window, seed_seconds, audit, started_at, cpu_s
    )
    failures += _judge(report, recorder, world, audit)
    report["failures"] = failures
    report["ok"] = not failures
    _print_summary(console, report)
    _write(report_path, report)
    if chart_path is not None:
        chart.write_html(chart_path, report, recorder)
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


def _merge_worlds(run_id: str, worlds: Sequence[WorldSummary]) -> WorldSummary:
    """One summary of all the parts: a feature is served, a kind switched off, when so anywhere."""
    merged = WorldSummary(run_id=run_id, user_base=min(world.user_base for world in worlds))
    for world in worlds:
        for feature, served in world.features.items():
            merged.features[feature] = merged.features.get(feature, True) and served
        merged.disabled.update(world.disabled)
        merged.flash_stock += world.flash_stock
        merged.flash_claimed += world.flash_claimed
    merged.flash_template = ",".join(world.flash_template for world in worlds if world.flash_template)
    return merged


def _drive(
    config: LoadConfig, part: int, world: World, recorder: Recorder, active: dict[str, int], console: Console
) -> float:
    kinds = list(active)
    weights = [active[kind] for kind in kinds]
    stop = threading.Event()
    recorder.restart_clock()
    recorder.measuring = True
    began = time.monotonic()
    deadline = began + config.duration_s
    slots = itertools.count()
    slot_lock = threading.Lock()
    interval_s = 1.0 / config.rate_per_s if config.rate_per_s else 0.0

    def next_due() -> float:
        with slot_lock:
            return began + next(slots) * interval_s

    def worker(index: int) -> None:
        rng = random.Random(config.seed * 1_000_003 + index)
        # Open loop: every slot due before the deadline is served, even after it (a backlog left
        # out would hide exactly the calls an overloaded engine delays); a slot taken late (every
        # caller was busy) still counts its latency from when it was due.
        while not stop.is_set() and (interval_s or time.monotonic() < deadline):
            if interval_s:
                due = next_due()
                if due >= deadline or stop.wait(max(0.0, due - time.monotonic())):
                    return
                recorder.intend(due)
            kind = rng.choices(kinds, weights)[0]
            try:
                succeeded = world.operations[kind](rng)
            except Exception as error:  # a harness bug must be visible, not silently skipped
                recorder.violation(f"harness error in {kind}: {error!r}")
                succeeded = False
            recorder.operation(kind, succeeded)

    threads = [
        threading.Thread(target=worker, args=(index,), name=f"lt-worker-{part}-{index}", daemon=True)
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


def _audit(config: LoadConfig, console: Console) -> dict[str, Any]:
    console.print("running Admin.Audit (CONTRACT §8) ...")
    try:
        with open_client(
            config.target, config.credentials, timeout=config.audit_timeout_s, retry=_retry_policy(config)
        ) as client:
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
    world: WorldSummary,
    recorder: Recorder,
    seed_recorder: Recorder,
    active: dict[str, int],
    window: float,
    seed_seconds: float,
    audit: dict[str, Any],
    started_at: datetime,
    cpu_s: float,
) -> dict[str, Any]:
    rpcs = recorder.rpc_summary(window)
    calls = sum(summary["measured_calls"] for summary in rpcs.values())
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
            "processes": config.processes,
            "connections_per_process": config.connections,
            "rate_per_s": config.rate_per_s,
            "loop": "open" if config.rate_per_s else "closed",
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
            "calls": calls,
            "calls_per_s": round(sum(summary["rps"] for summary in rpcs.values()), 2),
            "client_cpu_s": round(cpu_s, 3),
            "client_cpu_us_per_call": round(cpu_s * MICROSECONDS_PER_SECOND / calls, 1) if calls else 0.0,
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


def _judge(
    report: dict[str, Any], recorder: Recorder, world: WorldSummary, audit: dict[str, Any]
) -> list[str]:
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
