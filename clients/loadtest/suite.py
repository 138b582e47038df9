"""``make loadtest``: the harness against a fresh engine on the SQLite default and on PostgreSQL
(a throwaway cluster with 2 shard databases), each run ending in ``Admin.Audit``.

    python -m clients.loadtest.suite --duration 60 --concurrency 32

Reports and charts go to ``reports/loadtest-<backend>.{json,html}``, the engine's log beside
them. Exit code 0 only when every backend's run is ok.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from clients.loadtest.config import DEFAULT_MIX, LoadConfig, parse_mix
from clients.loadtest.local import engine_process, postgres_cluster, sqlite_shards
from clients.loadtest.runner import REPORT_WIDTH, run

BACKENDS = ("sqlite", "postgresql")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.loadtest.suite", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--mix", default=DEFAULT_MIX)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,postgresql")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        parser.error(f"--backends takes {', '.join(BACKENDS)}")
    console = Console() if sys.stdout.isatty() else Console(width=REPORT_WIDTH)
    results: dict[str, tuple[bool, str]] = {}
    reports: Path = args.reports_dir
    for backend in backends:
        console.rule(f"[bold]load test on {backend}[/bold]")
        with ExitStack() as stack:
            if backend == "sqlite":
                urls = sqlite_shards(reports / "loadtest-sqlite-shards")
            else:
                postgres = stack.enter_context(postgres_cluster())
                suffix = uuid.uuid4().hex[:6]
                urls = [postgres.create_database(f"loadtest_{suffix}_shard{index}") for index in range(2)]
            engine = stack.enter_context(engine_process(urls, reports / f"engine-{backend}.log"))
            config = LoadConfig(
                target=engine.target,
                users=args.users,
                concurrency=args.concurrency,
                duration_s=args.duration,
                mix=parse_mix(args.mix),
                progress=console.is_terminal,
            )
            result = run(
                config,
                report_path=reports / f"loadtest-{backend}.json",
                chart_path=reports / f"loadtest-{backend}.html",
                console=console,
            )
        totals = result.report.get("totals", {})
        charge = result.report.get("rpcs", {}).get("Charge", {})
        audit = "ok" if result.report.get("audit", {}).get("ok") else "BROKEN"
        line = (
            f"{totals.get('operations_per_s', 0):.1f} ops/s, Charge p50 {charge.get('p50_ms', 0):.0f} ms "
            f"p99 {charge.get('p99_ms', 0):.0f} ms, audit: {audit}"
        )
        results[backend] = (result.ok, line)
    console.rule("[bold]summary[/bold]")
    for backend, (ok, line) in results.items():
        console.print(f"{backend:<11} {'ok    ' if ok else 'FAILED'} {line}")
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
