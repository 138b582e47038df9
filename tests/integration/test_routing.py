"""Ids carry their virtual shard: a charge id alone finds its database."""

from __future__ import annotations

from engine.domain.commands import ChargeCommand, IssueCommand, RefundCommand, TopUpSpec
from engine.domain.ids import id_virtual_shard
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_charge
from engine.service.refund import refund
from engine.storage.charges import read_charge_row


def test_charge_id_alone_routes_to_the_right_shard(engine_context: EngineContext) -> None:
    router = engine_context.router
    # 128 virtual shards over 2 databases: even users live on shard 0, odd on shard 1.
    users = [256 + 2, 256 + 3, 129, 130]
    assert {router.for_user(user).index for user in users} == {0, 1}
    charge_ids = {}
    for user in users:
        issue(engine_context, IssueCommand(f"t{user}", user, TopUpSpec(1000, Asset.CASH, "c", f"x{user}")))
        charge_ids[user] = charge(
            engine_context, ChargeCommand(f"c{user}", user, "o", "m", "", 100)
        ).charge_id
    for user, charge_id in charge_ids.items():
        assert id_virtual_shard(charge_id) == user % router.virtual_shards
        home = router.for_user(user)
        assert router.for_id(charge_id) is home
        other = router.shards[1 - home.index]
        with home.engine.connect() as connection:
            assert read_charge_row(connection, charge_id) is not None
        with other.engine.connect() as connection:
            assert read_charge_row(connection, charge_id) is None
        assert get_charge(engine_context, charge_id).user_id == user
        assert refund(engine_context, RefundCommand(f"r{user}", charge_id, 40)).charge.refunded_amount == 40
    assert audit(engine_context).ok
