"""A random walk of operations checked step by step against a plain model of the money.

Every answer the engine gives (success, refusal or replay) must agree with what a simple model
of each wallet and charge predicts: no cent gained, lost or moved twice, on either database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.domain.commands import (
    CaptureCommand,
    ChargeCommand,
    CoinsSpec,
    IssueCommand,
    PointsSpec,
    RefundCommand,
    TopUpSpec,
    VoidCommand,
)
from engine.domain.errors import CofferError
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.capture import capture
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_charge, get_wallet
from engine.service.refund import refund
from engine.service.void import void

STEPS = 400
USERS = (3, 4, 131)  # two on one shard, one on the other


@dataclass
class ModelCharge:
    user: int
    cash: int
    coins: int
    points: int
    authorized: bool
    captured: int = 0
    refunded: int = 0


@dataclass
class Model:
    balances: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    charges: dict[str, ModelCharge] = field(default_factory=dict)

    def get(self, user: int, asset: str) -> tuple[int, int]:
        return self.balances.get((user, asset), (0, 0))

    def add(self, user: int, asset: str, available: int = 0, held: int = 0) -> None:
        current = self.get(user, asset)
        self.balances[(user, asset)] = (current[0] + available, current[1] + held)


def check(context: EngineContext, model: Model) -> None:
    for user in USERS:
        wallet = get_wallet(context, user)
        for balance in wallet.balances:
            assert (balance.available, balance.held) == model.get(user, balance.asset), (user, balance)


def test_random_walk_agrees_with_the_model(engine_context: EngineContext) -> None:
    randomness = random.Random(8)
    model = Model()
    replays: list[tuple[str, object]] = []
    done: dict[str, int] = {}
    for step in range(STEPS):
        user = randomness.choice(USERS)
        roll = randomness.random()
        key = f"k{step}"
        if replays and roll < 0.08:
            # Replaying an earlier request changes nothing.
            kind, command = randomness.choice(replays)
            runner = {"issue": issue, "charge": charge, "refund": refund, "capture": capture, "void": void}[
                kind
            ]
            assert runner(engine_context, command).replayed  # type: ignore[operator]
            done["replay"] = done.get("replay", 0) + 1
        elif roll < 0.30:
            asset = randomness.choice(["CASH", "COINS", "POINTS"])
            amount = randomness.randint(1, 500)
            if asset == "CASH":
                command = IssueCommand(key, user, TopUpSpec(amount, Asset.CASH, "ch", key))
            elif asset == "COINS":
                command = IssueCommand(key, user, CoinsSpec(amount, ""))
            else:
                command = IssueCommand(key, user, PointsSpec(amount, 0, ""))
            issue(engine_context, command)
            model.add(user, asset, available=amount)
            replays.append(("issue", command))
            done["issue"] = done.get("issue", 0) + 1
        elif roll < 0.65:
            amount = randomness.randint(1, 400)
            points = randomness.choice([0, 0, amount // 4])
            coins = randomness.choice([0, 0, (amount - points) // 3])
            cash = amount - points - coins
            hold = randomness.random() < 0.4
            command = ChargeCommand(
                key, user, f"o{step}", "m", "", amount, points=points, coins=coins, authorize_only=hold
            )
            short = [
                asset
                for asset, need in (("CASH", cash), ("COINS", coins), ("POINTS", points))
                if need and model.get(user, asset)[0] < need
            ]
            try:
                result = charge(engine_context, command)
            except CofferError as error:
                assert short and error.reason.label == "INSUFFICIENT_FUNDS", (error, short)
                continue
            assert not short, (short, result)
            for asset, value in (("CASH", cash), ("COINS", coins), ("POINTS", points)):
                model.add(user, asset, available=-value, held=value if hold else 0)
            model.charges[result.charge_id] = ModelCharge(
                user, cash, coins, points, authorized=hold, captured=0 if hold else amount
            )
            replays.append(("charge", command))
            done["charge"] = done.get("charge", 0) + 1
        elif roll < 0.75 and model.charges:
            charge_id = randomness.choice(sorted(model.charges))
            entry = model.charges[charge_id]
            if entry.authorized:
                paid = entry.cash + entry.coins + entry.points
                take = randomness.randint(0, paid)
                command = CaptureCommand(key, charge_id, take)
                capture(engine_context, command)
                take = take or paid
                # The uncaptured rest goes back cash first, then coins, then points.
                rest = paid - take
                for asset, value in (("CASH", entry.cash), ("COINS", entry.coins), ("POINTS", entry.points)):
                    back = min(rest, value)
                    rest -= back
                    model.add(entry.user, asset, available=back, held=-value)
                entry.authorized, entry.captured = False, take
                # What stays captured, leg by leg, for later refunds.
                kept = take
                entry.points, kept = min(entry.points, kept), kept - min(entry.points, kept)
                entry.coins, kept = min(entry.coins, kept), kept - min(entry.coins, kept)
                entry.cash = kept
                replays.append(("capture", command))
                done["capture"] = done.get("capture", 0) + 1
        elif roll < 0.80 and model.charges:
            charge_id = randomness.choice(sorted(model.charges))
            entry = model.charges[charge_id]
            if entry.authorized:
                command_void = VoidCommand(key, charge_id)
                void(engine_context, command_void)
                for asset, value in (("CASH", entry.cash), ("COINS", entry.coins), ("POINTS", entry.points)):
                    model.add(entry.user, asset, available=value, held=-value)
                del model.charges[charge_id]
                replays.append(("void", command_void))
                done["void"] = done.get("void", 0) + 1
        elif model.charges:
            charge_id = randomness.choice(sorted(model.charges))
            entry = model.charges[charge_id]
            amount = randomness.randint(1, 300)
            command_refund = RefundCommand(key, charge_id, amount)
            left = entry.captured - entry.refunded
            try:
                refund(engine_context, command_refund)
            except CofferError as error:
                expected = "CHARGE_NOT_CAPTURED" if entry.authorized else "REFUND_EXCEEDS_CAPTURED"
                assert error.reason.label == expected and (entry.authorized or amount > left), error
                continue
            assert not entry.authorized and amount <= left
            entry.refunded += amount
            rest = amount
            for attribute, asset in (("cash", "CASH"), ("coins", "COINS"), ("points", "POINTS")):
                back = min(rest, getattr(entry, attribute))
                setattr(entry, attribute, getattr(entry, attribute) - back)
                rest -= back
                model.add(entry.user, asset, available=back)
            assert get_charge(engine_context, charge_id).refunded_amount == entry.refunded
            replays.append(("refund", command_refund))
            done["refund"] = done.get("refund", 0) + 1
        if step % 25 == 0:
            check(engine_context, model)
    check(engine_context, model)
    # The walk really went everywhere.
    assert all(
        done.get(kind, 0) >= 5 for kind in ("issue", "charge", "capture", "void", "refund", "replay")
    ), done
    report = audit(engine_context)
    assert report.ok, report
