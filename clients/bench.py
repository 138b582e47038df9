"""``make bench``: what the engine's charge path does next to PostgreSQL's own TPC-B and next to
the gRPC floor, all in one run on one throwaway PostgreSQL, measured through the public gRPC API
only (so the same bench measures today's engine and any later one).

Phases, each ending in ``Admin.Audit``:

1. ``pgbench -i -s 10``, then pgbench's built-in TPC-B ``-c 8 -j 2 -T 20 -M prepared``;
2. the engine (``python server.py``, 2 worker processes) on ``--shards`` shard databases of that
   cluster (default 1: one PostgreSQL server is one physical shard, CONTRACT §5; a second
   database on the same server only splits each batch in two — docs/performance.md):

   * ``echo``: ``grpc.health.v1.Health/Check`` on the engine, the same harness and callers: what
     the engine's server stack and interceptors cost with no use case behind them (the floor);
   * ``plain``: cash-only charges at 64 callers (charge_rps, latency, engine CPU per charge, RSS);
   * ``mixed``: a third of the charges with coupons, points, coins or gift cards, plus holds and
     captures, voids, refunds, top-ups and deliberate duplicate retries;
   * ``half_load``: an open loop at half the plain phase's charge rate, requests on a fixed
     schedule and latency from the scheduled start (no coordinated omission): its p99;

3. ``mtls``: the plain phase again (``--mtls-duration``) on as many fresh shard databases of the same
   cluster, the engine started with ``COFFER_AUTH=mtls`` and certificates from
   ``scripts/make_certs.py`` in a temporary directory; the harness sends each RPC with its role's
   client certificate (``--credentials-dir``): what TLS and caller identities cost;
4. the plain phase again on the embedded SQLite default (``COFFER_SHARDS`` unset, under a
   temporary directory).

The load runs in ``--processes`` harness processes so the load generator is not the bottleneck;
``client_cpu_us_per_call`` says what it spent. The LAST line printed is one JSON object (fields in
docs/performance.md). Exit code 0 when every phase's audit is ok and the harness met no
unexpected error.

``--scale`` (``make bench-scale``) instead measures plain charges on empty shards, preloads ten
million ledger entries with set-based SQL (clients/loadtest/preload.py), measures again, audits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from clients.loadtest.config import CASH_CHARGE_MIX, ECHO_MIX, MIXED_MIX, LoadConfig, parse_mix
from clients.loadtest.credentials import Credentials
from clients.loadtest.local import CpuMeter, RssSampler, engine_process, make_certificates, postgres_cluster
from clients.loadtest.preload import count_entries, preload_shards
from clients.loadtest.runner import REPORT_WIDTH, HarnessResult, run
from tests.support.servers import PostgresServer, postgres_bin

PGBENCH_SCALE = 10
PGBENCH_ARGS = ("-c", "8", "-j", "2", "-T", "20", "-M", "prepared")
PGBENCH_TIMEOUT_SECONDS = 600
_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", re.MULTILINE)
_TPS_ANY = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
#: The engine's default virtual shard count (engine/config.py); preloaded users are placed by it.
VIRTUAL_SHARDS = 128
#: The open-loop phase runs at this share of the plain phase's measured charge rate.
HALF_LOAD_SHARE = 0.5
SCALE_LEDGER_ENTRIES = 10_000_000
#: (flag, type, default, help) of the numeric options: phase lengths keep ``make bench`` near
#: 3-4 minutes on the 2-core machine.
OPTIONS: tuple[tuple[str, type, float, str], ...] = (
    ("--duration", float, 20.0, "seconds of plain charges"),
    ("--echo-duration", float, 8.0, "seconds of Health/Check"),
    ("--mixed-duration", float, 15.0, "seconds of the mixed mix"),
    ("--half-load-duration", float, 12.0, "seconds of the open loop"),
    ("--sqlite-duration", float, 12.0, "seconds of plain charges on SQLite"),
    ("--mtls-duration", float, 12.0, "seconds of plain charges under COFFER_AUTH=mtls"),
    ("--concurrency", int, 64, "concurrent callers"),
    ("--processes", int, 2, "harness processes sharing the callers"),
    ("--users", int, 256, "users to seed per phase"),
    ("--mixed-users", int, 128, "users to seed for the mixed phase"),
    ("--workers", int, 2, "engine processes (COFFER_WORKERS, one per core)"),
    ("--threads", int, 8, "threads and connections per engine process"),
    (
        "--shards",
        int,
        1,
        "shard databases (COFFER_SHARDS) on the one PostgreSQL server; one, as deployed: a "
        "second database on the same server adds a writer and a commit per batch, not a core",
    ),
)
MICROSECONDS_PER_SECOND = 1_000_000


def pgbench(postgres: PostgresServer, database: str, console: Console) -> dict[str, float]:
    binary = postgres_bin("pgbench")
    connection = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres"]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    console.print(f"pgbench -i -s {PGBENCH_SCALE} ...")
    subprocess.run(
        [binary, "-i", "-q", "-s", str(PGBENCH_SCALE), *connection, database],
        check=True,
        capture_output=True,
        env=env,
        timeout=PGBENCH_TIMEOUT_SECONDS,
    )
    console.print(f"pgbench TPC-B {' '.join(PGBENCH_ARGS)} ...")
    result = subprocess.run(
        [binary, *PGBENCH_ARGS, *connection, database],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=PGBENCH_TIMEOUT_SECONDS,
    )
    match = _TPS.search(result.stdout) or _TPS_ANY.search(result.stdout)
    if match is None:
        raise RuntimeError(f"could not read pgbench's tps from:\n{result.stdout}")
    latency = _LATENCY.search(result.stdout)
    return {"tps": float(match.group(1)), "latency_ms": float(latency.group(1)) if latency else 0.0}


def audit_verdict(report: dict[str, Any]) -> str:
    """ "ok", or what the audit of one phase found (or why it could not run)."""
    audit = report.get("audit", {})
    if audit.get("ok"):
        return "ok"
    if "error" in audit:
        return f"audit call failed: {audit['error']}"
    broken = [
        f"shard {shard['shard']}: {violation['invariant']}"
        for shard in audit.get("shards", [])
        for violation in shard.get("violations", [])
    ]
    return "; ".join(broken) or "not ok"


class Bench:
    """Runs the phases and collects the JSON line."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.reports: Path = args.reports_dir
        self.line: dict[str, Any] = {}
        self.phases: dict[str, dict[str, Any]] = {}

    def phase(
        self,
        name: str,
        target: str,
        mix: str,
        duration_s: float,
        *,
        users: int | None = None,
        rate_per_s: float | None = None,
        hooks: Sequence[CpuMeter] = (),
        credentials: Credentials | None = None,
    ) -> HarnessResult:
        self.console.rule(f"[bold]{name}[/bold]")
        config = LoadConfig(
            target=target,
            users=users or self.args.users,
            concurrency=self.args.concurrency,
            processes=self.args.processes,
            duration_s=duration_s,
            mix=parse_mix(mix),
            rate_per_s=rate_per_s,
            progress=self.console.is_terminal,
            credentials=credentials or Credentials(),
        )
        result = run(
            config,
            report_path=self.reports / f"bench-{name}.json",
            chart_path=self.reports / f"bench-{name}.html",
            console=self.console,
            hooks=hooks,
        )
        report = result.report
        charge = report.get("rpcs", {}).get("Charge", {})
        totals = report.get("totals", {})
        self.phases[name] = {
            "ok": result.ok,
            "audit": audit_verdict(report),
            "mix": mix,
            "duration_s": report.get("duration_s", 0.0),
            "ops_rps": totals.get("operations_per_s", 0.0),
            "calls_rps": totals.get("calls_per_s", 0.0),
            "charge_rps": charge.get("ok_rps", 0.0),
            "charge_p50_ms": charge.get("p50_ms", 0.0),
            "charge_p99_ms": charge.get("p99_ms", 0.0),
            "client_cpu_us_per_call": totals.get("client_cpu_us_per_call", 0.0),
        }
        if rate_per_s is not None:
            self.phases[name]["rate_per_s"] = round(rate_per_s, 1)
        if not result.ok:
            self.phases[name]["failures"] = report.get("failures", [])[:5]
        return result

    def ok(self) -> bool:
        return bool(self.phases) and all(
            phase["ok"] and phase["audit"] == "ok" for phase in self.phases.values()
        )

    def audit_line(self) -> str:
        bad = [f"{name}: {phase['audit']}" for name, phase in self.phases.items() if phase["audit"] != "ok"]
        return "; ".join(bad) if bad else ("ok" if self.phases else "not run")


def _charge_fields(result: HarnessResult) -> dict[str, Any]:
    charge = result.report.get("rpcs", {}).get("Charge", {})
    return {
        "charge_rps": charge.get("ok_rps", 0.0),
        "charge_p50_ms": charge.get("p50_ms", 0.0),
        "charge_p95_ms": charge.get("p95_ms", 0.0),
        "charge_p99_ms": charge.get("p99_ms", 0.0),
        "charge_calls": charge.get("measured_calls", 0),
        "charge_refused": charge.get("refused_or_failed", 0),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 4) if denominator else 0.0


def run_bench(bench: Bench) -> None:
    args, line, console = bench.args, bench.line, bench.console
    with postgres_cluster() as postgres:
        shards = [postgres.create_database(f"bench_shard{index}") for index in range(args.shards)]
        postgres.create_database("bench_pgbench")
        measured = pgbench(postgres, "bench_pgbench", console)
        line["pgbench_tps"] = round(measured["tps"], 1)
        line["pgbench_latency_ms"] = measured["latency_ms"]
        with engine_process(
            shards, bench.reports / "engine-bench.log", workers=args.workers, threads=args.threads
        ) as engine:
            pid = engine.process.pid
            echo = bench.phase("echo", engine.target, ECHO_MIX, args.echo_duration)
            line["echo_rps"] = echo.report.get("rpcs", {}).get("Check", {}).get("ok_rps", 0.0)
            meter = CpuMeter(pid)
            with RssSampler(pid) as rss:
                plain = bench.phase("plain", engine.target, CASH_CHARGE_MIX, args.duration, hooks=[meter])
                line.update(_charge_fields(plain))
                charges = plain.recorder.measured_ok["Charge"]
                line["engine_cpu_us_per_charge"] = (
                    round(meter.seconds * MICROSECONDS_PER_SECOND / charges, 1) if charges else 0.0
                )
                line["engine_cpu_s"] = round(meter.seconds, 2)
                line["client_cpu_us_per_call"] = plain.report.get("totals", {}).get(
                    "client_cpu_us_per_call", 0.0
                )
                mixed = bench.phase(
                    "mixed", engine.target, MIXED_MIX, args.mixed_duration, users=args.mixed_users
                )
                line["mixed_ops_rps"] = mixed.report.get("totals", {}).get("operations_per_s", 0.0)
                rate = max(1.0, line["charge_rps"] * HALF_LOAD_SHARE)
                half = bench.phase(
                    "half_load", engine.target, CASH_CHARGE_MIX, args.half_load_duration, rate_per_s=rate
                )
                line["half_load_p99_ms"] = half.report.get("rpcs", {}).get("Charge", {}).get("p99_ms", 0.0)
                line["half_load_rate_per_s"] = round(rate, 1)
            line["engine_rss_mb_max"] = round(rss.max_mb, 1)
        run_mtls(bench, postgres)
    with tempfile.TemporaryDirectory(prefix="coffer-bench-sqlite-") as directory:
        with engine_process(None, bench.reports / "engine-bench-sqlite.log", cwd=Path(directory)) as engine:
            sqlite = bench.phase("sqlite", engine.target, CASH_CHARGE_MIX, args.sqlite_duration)
        line["sqlite_charge_rps"] = sqlite.report.get("rpcs", {}).get("Charge", {}).get("ok_rps", 0.0)
    line["ratio_vs_pgbench"] = _ratio(line["charge_rps"], line["pgbench_tps"])
    line["ratio_vs_echo"] = _ratio(line["charge_rps"], line["echo_rps"])
    line["mixed_ratio_vs_pgbench"] = _ratio(line["mixed_ops_rps"], line["pgbench_tps"])
    # Issue 10 compares the embedded default with the same run's gRPC floor.
    line["sqlite_ratio_vs_echo"] = _ratio(line["sqlite_charge_rps"], line["echo_rps"])
    line["mtls_ratio_vs_plain"] = _ratio(line["mtls_charge_rps"], line["charge_rps"])
    line["mtls_ratio_vs_pgbench"] = _ratio(line["mtls_charge_rps"], line["pgbench_tps"])


def run_mtls(bench: Bench, postgres: PostgresServer) -> None:
    """The plain phase against an engine under ``COFFER_AUTH=mtls`` on fresh shards (as the
    plain phase had), the harness holding one client certificate per role."""
    args = bench.args
    shards = [postgres.create_database(f"bench_mtls_shard{index}") for index in range(args.shards)]
    with tempfile.TemporaryDirectory(prefix="coffer-bench-certs-") as directory:
        certificates = make_certificates(Path(directory))
        with engine_process(
            shards,
            bench.reports / "engine-bench-mtls.log",
            workers=args.workers,
            threads=args.threads,
            mtls_certificates=certificates,
        ) as engine:
            mtls = bench.phase(
                "mtls",
                engine.target,
                CASH_CHARGE_MIX,
                args.mtls_duration,
                credentials=Credentials(directory=certificates),
            )
    bench.line["mtls_charge_rps"] = mtls.report.get("rpcs", {}).get("Charge", {}).get("ok_rps", 0.0)


def run_scale(bench: Bench) -> None:
    args, line, console = bench.args, bench.line, bench.console
    with postgres_cluster() as postgres, ExitStack() as stack:
        names = [f"scale_shard{index}" for index in range(args.shards)]
        shards = [postgres.create_database(name) for name in names]
        engine = stack.enter_context(
            engine_process(
                shards, bench.reports / "engine-bench-scale.log", workers=args.workers, threads=args.threads
            )
        )
        empty = bench.phase("scale_empty", engine.target, CASH_CHARGE_MIX, args.duration)
        line["empty_charge_rps"] = empty.report.get("rpcs", {}).get("Charge", {}).get("ok_rps", 0.0)
        console.rule(f"[bold]preloading {args.ledger_entries:,} ledger entries[/bold]")
        began = time.monotonic()
        dsns = [postgres.dsn(name) for name in names]
        preload_shards(
            dsns, args.ledger_entries, virtual_shards=VIRTUAL_SHARDS, created_at_us=time.time_ns() // 1000
        )
        line["preload_seconds"] = round(time.monotonic() - began, 1)
        line["ledger_entries"] = count_entries(dsns)
        console.print(f"{line['ledger_entries']:,} ledger entries after {line['preload_seconds']} s")
        loaded = bench.phase("scale_loaded", engine.target, CASH_CHARGE_MIX, args.duration)
        line["loaded_charge_rps"] = loaded.report.get("rpcs", {}).get("Charge", {}).get("ok_rps", 0.0)
        line["loaded_charge_p99_ms"] = loaded.report.get("rpcs", {}).get("Charge", {}).get("p99_ms", 0.0)
    line["loaded_ratio"] = _ratio(line["loaded_charge_rps"], line["empty_charge_rps"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clients.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, kind, default, what in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default {default:g})")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument(
        "--scale",
        action="store_true",
        help="make bench-scale: plain charges on empty shards, then with --ledger-entries preloaded",
    )
    parser.add_argument(
        "--ledger-entries",
        type=int,
        default=SCALE_LEDGER_ENTRIES,
        help=f"entries to preload for --scale (default {SCALE_LEDGER_ENTRIES:,})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=REPORT_WIDTH)
    bench = Bench(args, console)
    if args.scale:
        bench.line.update(
            {"ledger_entries": 0, "empty_charge_rps": 0.0, "loaded_charge_rps": 0.0, "loaded_ratio": 0.0}
        )
    else:
        bench.line.update(
            {
                "charge_rps": 0.0,
                "charge_p50_ms": 0.0,
                "charge_p99_ms": 0.0,
                "pgbench_tps": 0.0,
                "ratio_vs_pgbench": 0.0,
                "engine_rss_mb_max": 0.0,
                "echo_rps": 0.0,
                "ratio_vs_echo": 0.0,
                "mixed_ops_rps": 0.0,
                "mixed_ratio_vs_pgbench": 0.0,
                "sqlite_charge_rps": 0.0,
                "sqlite_ratio_vs_echo": 0.0,
                "mtls_charge_rps": 0.0,
                "mtls_ratio_vs_plain": 0.0,
                "mtls_ratio_vs_pgbench": 0.0,
                "half_load_p99_ms": 0.0,
                "engine_cpu_us_per_charge": 0.0,
                "client_cpu_us_per_call": 0.0,
            }
        )
    began = time.monotonic()
    failed = False
    try:
        (run_scale if args.scale else run_bench)(bench)
    except Exception as error:
        failed = True
        bench.line["error"] = f"{type(error).__name__}: {error}"
        console.print(f"[bold red]bench failed: {bench.line['error']}[/bold red]")
    line = bench.line
    line["audit"] = bench.audit_line()
    line["harness_ok"] = all(phase["ok"] for phase in bench.phases.values())
    line.update(
        {
            "concurrency": args.concurrency,
            "processes": args.processes,
            "workers": args.workers,
            "threads": args.threads,
            "shards": args.shards,
            "duration_s": args.duration,
            "users": args.users,
            "mix": CASH_CHARGE_MIX,
            "mixed_mix": MIXED_MIX,
            "pgbench": f"TPC-B scale {PGBENCH_SCALE} {' '.join(PGBENCH_ARGS)}",
            "cpus": os.cpu_count(),
            "phases": bench.phases,
            "bench_seconds": round(time.monotonic() - began, 1),
        }
    )
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    return 0 if bench.ok() and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
