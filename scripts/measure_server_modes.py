"""The same Charge/Issue use cases behind a sync grpc.server (a thread per call) vs the
engine's grpc.aio server + thread pool (docs/performance.md).
Run: PYTHONPATH=. .venv/bin/python scripts/measure_server_modes.py"""

import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

import grpc

from coffer.v1 import engine_pb2, engine_pb2_grpc
from engine.api import convert_common, convert_engine
from engine.config import Settings
from engine.service import charge as charge_service
from engine.service import issue as issue_service
from tests.support.engines import ThreadEngine, make_context
from tests.support.servers import PostgresServer, free_port


class SyncServicer(engine_pb2_grpc.TransactionEngineServicer):
    def __init__(self, ctx):
        self.ctx = ctx

    def Issue(self, request, context):
        r = issue_service.issue(self.ctx, convert_engine.issue_from_proto(request))
        return engine_pb2.IssueResponse(
            transaction_id=r.transaction_id,
            replayed=r.replayed,
            wallet=convert_common.wallet_to_proto(r.wallet),
        )

    def Charge(self, request, context):
        return convert_engine.charge_to_proto(
            charge_service.charge(self.ctx, convert_engine.charge_from_proto(request))
        )


def load(target, n, prefix):
    chans = [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
    stubs = [engine_pb2_grpc.TransactionEngineStub(c) for c in chans]
    for u in range(1, 201):
        stubs[0].Issue(
            engine_pb2.IssueRequest(
                idempotency_key=f"{prefix}t{u}",
                user_id=u,
                top_up=engine_pb2.TopUp(amount=10**8, payment_channel="a", channel_txn_id=f"{prefix}t{u}"),
            )
        )

    def one(i):
        stubs[i % 4].Charge(
            engine_pb2.ChargeRequest(
                idempotency_key=f"{prefix}c{i}",
                user_id=1 + i % 200,
                order_id=f"{prefix}o{i}",
                merchant_id="m",
                amount=100,
            )
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - t0)


p = PostgresServer.start()
try:
    results = {}
    for round_ in range(2):
        urls = [p.create_database(f"sync{round_}_{i}") for i in range(2)]
        ctx = make_context(urls, worker_threads=16, pool_size=16)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        engine_pb2_grpc.add_TransactionEngineServicer_to_server(SyncServicer(ctx), server)
        port = free_port()
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        results.setdefault("sync grpc.server, 16 threads", []).append(
            load(f"127.0.0.1:{port}", 2000, f"s{round_}")
        )
        server.stop(0)
        ctx.router.dispose()
        urls = [p.create_database(f"aio{round_}_{i}") for i in range(2)]
        eng = ThreadEngine(Settings(shards=tuple(urls), worker_threads=16, pool_size=16, metrics_port=0))
        results.setdefault("grpc.aio + 16-thread pool", []).append(load(eng.target, 2000, f"a{round_}"))
        eng.stop()
    for k, v in results.items():
        print(f"{k}: " + ", ".join(f"{x:.1f}" for x in v) + " charges/s")
finally:
    p.stop()
