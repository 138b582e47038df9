"""At most one live charge per (user, merchant_id, order_id) — CONTRACT §3 and §8.3."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import insert, select

from engine.domain.commands import ChargeCommand, IssueCommand, RefundCommand, TopUpSpec, VoidCommand
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_wallet
from engine.service.refund import refund
from engine.service.void import void
from engine.storage.charges import live_orders
from engine.storage.schema import charges
from tests.support.engines import make_context
from tests.support.wallets import available

USER = 12


@pytest.fixture
def funded(engine_context: EngineContext) -> EngineContext:
    issue(engine_context, IssueCommand("top", USER, TopUpSpec(10_000, Asset.CASH, "alipay", "t")))
    return engine_context


def test_a_second_charge_for_a_charged_order_is_refused(funded: EngineContext) -> None:
    charge(funded, ChargeCommand("first", USER, "order-1", "m-1", "", 300))
    with pytest.raises(CofferError) as refused:
        charge(funded, ChargeCommand("second", USER, "order-1", "m-1", "", 300))
    assert refused.value.reason is Reason.ORDER_ALREADY_CHARGED
    assert refused.value.metadata == {"order_id": "order-1", "merchant_id": "m-1"}
    # The same order id at another merchant is another order.
    charge(funded, ChargeCommand("other-merchant", USER, "order-1", "m-2", "", 300))
    assert available(get_wallet(funded, USER)) == 10_000 - 600
    assert audit(funded).ok


def test_a_voided_authorization_frees_the_order_and_a_refunded_one_does_not(funded: EngineContext) -> None:
    held = charge(funded, ChargeCommand("auth", USER, "order-2", "m-1", "", 500, authorize_only=True))
    with pytest.raises(CofferError) as refused:
        charge(funded, ChargeCommand("again", USER, "order-2", "m-1", "", 500))
    assert refused.value.reason is Reason.ORDER_ALREADY_CHARGED
    void(funded, VoidCommand("void", held.charge_id))
    paid = charge(funded, ChargeCommand("again", USER, "order-2", "m-1", "", 500))
    refund(funded, RefundCommand("back", paid.charge_id, 500))
    # A fully refunded order is closed, not reopened (docs/architecture.md).
    with pytest.raises(CofferError) as closed:
        charge(funded, ChargeCommand("third", USER, "order-2", "m-1", "", 500))
    assert closed.value.reason is Reason.ORDER_ALREADY_CHARGED
    assert available(get_wallet(funded, USER)) == 10_000
    assert audit(funded).ok


def test_concurrent_charges_for_one_order_under_different_keys(funded: EngineContext) -> None:
    def one(index: int) -> str:
        try:
            charge(funded, ChargeCommand(f"key-{index}", USER, "order-3", "m-1", "", 100))
            return "ok"
        except CofferError as error:
            return error.reason.label

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) == {"ok", "ORDER_ALREADY_CHARGED"}, outcomes
    assert available(get_wallet(funded, USER)) == 10_000 - 100
    assert audit(funded).ok


def test_the_batched_live_order_look_up_probes_its_index_on_sqlite(sqlite_shard_urls: list[str]) -> None:
    """The set-based look-up a cash batch makes (engine.storage.charges.live_orders) costs the
    same however many charges the table holds: SQLite once made ``charges`` the outer loop and
    read every live charge on each batch. Measured in SQLite VM steps, which do not drift."""
    context = make_context(sqlite_shard_urls)
    try:
        issue(context, IssueCommand("top", USER, TopUpSpec(10_000, Asset.CASH, "alipay", "t")))
        charge(context, ChargeCommand("paid", USER, "order-paid", "m-1", "", 300))
        asked = [(USER, "m-1", "order-paid"), (USER, "m-1", "order-new")]
        with context.router.for_user(USER).engine.begin() as connection:
            paid = connection.execute(select(charges).where(charges.c.user_id == USER)).mappings().one()

            def steps_of_one_look_up() -> tuple[int, set[tuple[int, str, str]]]:
                steps = 0

                def count() -> int:
                    nonlocal steps
                    steps += 1
                    return 0  # go on

                driver = connection.connection.driver_connection
                driver.set_progress_handler(count, 1)
                try:
                    found = live_orders(connection, asked)
                finally:
                    driver.set_progress_handler(None, 1)
                return steps, found

            before, found_before = steps_of_one_look_up()
            others = [
                {**paid, "charge_id": f"other-{n}", "user_id": USER + 1 + n % 50, "order_id": f"o-{n}"}
                for n in range(3_000)
            ]
            connection.execute(insert(charges), others)
            after, found_after = steps_of_one_look_up()
            connection.rollback()
    finally:
        context.router.dispose()
    assert found_before == found_after == {(USER, "m-1", "order-paid")}
    # A scan of the 3,000 live charges would cost tens of thousands of steps more.
    assert after <= before + 50, (before, after)
