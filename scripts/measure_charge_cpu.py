"""In-process Charge throughput and engine CPU per charge on a throwaway PostgreSQL
(docs/performance.md). Run: PYTHONPATH=. .venv/bin/python scripts/measure_charge_cpu.py"""

import time
from concurrent.futures import ThreadPoolExecutor

from engine.domain.commands import ChargeCommand, IssueCommand, TopUpSpec
from engine.domain.money import Asset
from engine.service.charge import charge
from engine.service.issue import issue
from tests.support.engines import make_context
from tests.support.servers import PostgresServer

p = PostgresServer.start()
try:
    urls = [p.create_database(f"s{i}") for i in range(2)]
    ctx = make_context(urls)
    for u in range(1, 201):
        issue(ctx, IssueCommand(f"t{u}", u, TopUpSpec(10**9, Asset.CASH, "a", f"t{u}")))
    n = 1500

    def one(i):
        charge(ctx, ChargeCommand(f"c{i}", 1 + i % 200, f"o{i}", "m", "", 100))

    for i in range(100):
        one(10**6 + i)
    t0 = time.perf_counter()
    c0 = time.process_time()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))
    el = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(f"charges/s {n / el:.1f}  engine cpu ms/charge {cpu / n * 1000:.2f}")
finally:
    p.stop()
