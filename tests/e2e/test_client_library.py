"""The order-service client: installable alone, typed errors from a real engine, bounded retries."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import grpc
import pytest

from clients import errors
from clients.order_client import (
    CofferError,
    FailedPreconditionError,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidArgument,
    OrderClient,
    RetryPolicy,
    UnavailableError,
    balance_of,
)
from coffer.v1 import common_pb2
from engine.domain.errors import Reason
from tests.support.engines import REPOSITORY, ThreadEngine
from tests.support.servers import free_port

BLOCKED = ("engine", "sqlalchemy", "psycopg", "rich", "redis", "prometheus_client", "tests", "server")


def test_order_client_imports_with_only_the_client_extra() -> None:
    """With the engine, SQLAlchemy, rich, ... made unimportable, the client still imports and works
    as far as building requests and mapping errors."""
    script = textwrap.dedent(
        f"""
        import sys
        BLOCKED = {BLOCKED!r}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Blocker())
        import clients.order_client as oc
        from clients.order_client import InsufficientFunds, CouponNotApplicable, IdempotencyKeyReused
        request = oc.build_charge_request(1, "o", "m", 100, idempotency_key="k")
        assert request.amount == 100
        client = oc.OrderClient("127.0.0.1:1")
        client.close()
        leaked = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_every_contract_reason_has_a_typed_exception_under_its_code() -> None:
    for reason in Reason:
        cls = errors.REASON_CLASSES[reason.label]
        assert cls.reason_name == reason.label
        code_class = errors.CODE_CLASSES[getattr(grpc.StatusCode, reason.code.value)]
        assert issubclass(cls, code_class), (reason, cls, code_class)
        assert getattr(errors, cls.__name__) is cls
        assert cls.__name__ in errors.__all__


def _cash(wallet: common_pb2.Wallet) -> int:
    return balance_of(wallet, common_pb2.ASSET_CASH)[0]


def test_refusals_arrive_as_typed_exceptions(grpc_engine: ThreadEngine) -> None:
    retries: list[tuple[str, str]] = []
    with OrderClient(
        grpc_engine.target, on_retry=lambda rpc, error, n: retries.append((rpc, error.reason))
    ) as client:
        client.issue_top_up(501, 1_000, payment_channel="alipay", channel_txn_id="t-501")

        with pytest.raises(InsufficientFunds) as short:
            client.charge(501, "o-1", "m-1", 5_000)
        assert short.value.reason == "INSUFFICIENT_FUNDS"
        assert short.value.metadata["asset"] == "CASH"
        assert short.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert isinstance(short.value, FailedPreconditionError)

        with pytest.raises(InvalidArgument) as bad:
            client.charge(501, "o-2", "m-1", -5)
        assert bad.value.metadata["field"] == "amount"
        assert "amount" in bad.value.field_violations

        with pytest.raises(errors.ChargeNotFound):
            client.get_charge("ch_0000000000000000000000")

        key = f"k-{uuid.uuid4().hex}"
        first = client.charge(501, "o-3", "m-1", 300, idempotency_key=key)
        again = client.charge(501, "o-3", "m-1", 300, idempotency_key=key)
        assert (first.replayed, again.replayed) == (False, True)
        assert again.charge_id == first.charge_id
        with pytest.raises(IdempotencyKeyReused) as reused:
            client.charge(501, "o-3", "m-1", 301, idempotency_key=key)
        assert isinstance(reused.value, CofferError)
        assert _cash(client.get_wallet(501)) == 700
        assert client.audit().ok
    assert retries == [], "refusals must not be retried"


def test_unavailable_is_retried_a_bounded_number_of_times() -> None:
    retries: list[int] = []
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
    with (
        OrderClient(
            f"127.0.0.1:{free_port()}", timeout=1.0, retry=policy, on_retry=lambda r, e, n: retries.append(n)
        ) as client,
        pytest.raises(UnavailableError) as failure,
    ):
        client.get_wallet(1)
    assert failure.value.reason == "UNAVAILABLE"
    assert failure.value.retryable
    assert retries == [1, 2]


def test_retry_policy_is_bounded() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=1000)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=5, max_backoff_s=1)
