"""Coupon rows: templates and activities (copied to every shard), per-virtual-shard stock
allotments, per-user claim counters, user coupons and their state journal.

Every state change of a user coupon goes through :func:`change_state`, which asks the domain
state machine (:func:`engine.domain.coupons.states.transition`) for the target and applies it
with a conditional UPDATE (``WHERE state = <the state it was read in>``), appending the change
to ``coupon_events``. Nothing else writes ``user_coupons.state``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select

from engine.domain.coupons.definitions import (
    Activity,
    ActivityReward,
    ActivityRules,
    CouponTemplate,
    Eligibility,
)
from engine.domain.coupons.rules import CouponRules, CouponScope, CouponType
from engine.domain.coupons.states import (
    CouponEvent,
    CouponState,
    effective_state,
    is_past_validity,
    transition,
)
from engine.domain.errors import CofferError, Reason
from engine.domain.results import CouponView
from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import (
    activities,
    activity_grants,
    coupon_claims,
    coupon_events,
    coupon_stock,
    coupon_templates,
    user_coupons,
)

#: When its own virtual shard's allotment is empty, a claim probes at most this many other
#: allotments on the same database per round, for at most this many rounds.
MAX_STOCK_PROBES = 8
MAX_STOCK_ROUNDS = 3
#: A wallet view lists at most this many coupons (newest first).
MAX_LISTED_COUPONS = 200
#: QuoteCharge considers at most this many of a user's live coupons.
MAX_QUOTE_COUPONS = 200

SOURCE_CLAIM = "CLAIM"
SOURCE_ACTIVITY = "ACTIVITY"

_random = random.SystemRandom()


# --- templates -------------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def insert_template(connection: Connection, template: CouponTemplate, now_us: int) -> bool:
    """Store ``template`` on this shard; False when it is already there."""
    rules = template.rules
    return insert_or_ignore(
        connection,
        coupon_templates,
        {
            "template_id": template.template_id,
            "name": template.name,
            "type": rules.type.value,
            "amount_off": rules.amount_off,
            "discount_bps": rules.discount_bps,
            "min_spend": rules.min_spend,
            "max_discount": rules.max_discount,
            "total_stock": template.total_stock,
            "per_user_limit": template.per_user_limit,
            "valid_from_us": template.valid_from_us,
            "valid_until_us": template.valid_until_us,
            "valid_days_after_claim": template.valid_days_after_claim,
            "scope": _dump(
                {
                    "categories": list(rules.scope.categories),
                    "merchants": list(rules.scope.merchants),
                    "business_lines": list(rules.scope.business_lines),
                }
            ),
            "stackable": rules.stackable,
            "restore_on_refund": template.restore_on_refund,
            "eligibility": _dump(
                {
                    "new_users_only": template.eligibility.new_users_only,
                    "new_user_days": template.eligibility.new_user_days,
                    "min_member_level": template.eligibility.min_member_level,
                }
            ),
            "created_at_us": now_us,
        },
    )


def template_of_row(row: Row[Any]) -> CouponTemplate:
    scope = json.loads(row.scope)
    eligibility = json.loads(row.eligibility)
    return CouponTemplate(
        template_id=row.template_id,
        name=row.name,
        rules=CouponRules(
            type=CouponType(row.type),
            amount_off=int(row.amount_off),
            discount_bps=int(row.discount_bps),
            min_spend=int(row.min_spend),
            max_discount=int(row.max_discount),
            scope=CouponScope(
                categories=tuple(scope["categories"]),
                merchants=tuple(scope["merchants"]),
                business_lines=tuple(scope["business_lines"]),
            ),
            stackable=bool(row.stackable),
        ),
        total_stock=int(row.total_stock),
        per_user_limit=int(row.per_user_limit),
        valid_from_us=row.valid_from_us,
        valid_until_us=row.valid_until_us,
        valid_days_after_claim=int(row.valid_days_after_claim),
        restore_on_refund=bool(row.restore_on_refund),
        eligibility=Eligibility(
            new_users_only=bool(eligibility["new_users_only"]),
            new_user_days=int(eligibility["new_user_days"]),
            min_member_level=int(eligibility["min_member_level"]),
        ),
    )


def read_template(connection: Connection, template_id: str) -> CouponTemplate | None:
    row = connection.execute(
        select(coupon_templates).where(coupon_templates.c.template_id == template_id)
    ).one_or_none()
    return None if row is None else template_of_row(row)


def read_templates(connection: Connection, template_ids: Iterable[str]) -> dict[str, CouponTemplate]:
    wanted = sorted(set(template_ids))
    if not wanted:
        return {}
    rows = connection.execute(
        select(coupon_templates).where(coupon_templates.c.template_id.in_(wanted))
    ).all()
    return {row.template_id: template_of_row(row) for row in rows}


def template_not_found(template_id: str, field: str = "coupon.template_id") -> CofferError:
    return CofferError(
        Reason.TEMPLATE_NOT_FOUND,
        f"no coupon template {template_id!r}",
        metadata={"template_id": template_id, "field": field},
    )


# --- stock -----------------------------------------------------------------------------------


def split_stock(total_stock: int, virtual_shards: int) -> list[int]:
    """Virtual shard ``v``'s allotment: an equal share, the first ``total % V`` one more."""
    base, extra = divmod(total_stock, virtual_shards)
    return [base + (1 if virtual < extra else 0) for virtual in range(virtual_shards)]


def insert_allotments(connection: Connection, template_id: str, allotments: dict[int, int]) -> None:
    """This database's allotments (virtual shard -> units), in one statement; rows of 0 are not
    stored. Runs inside the template's idempotent transaction, so it happens once per shard."""
    rows = [
        {"template_id": template_id, "virtual_shard": virtual_shard, "allotment": units, "remaining": units}
        for virtual_shard, units in sorted(allotments.items())
        if units > 0
    ]
    if rows:
        connection.execute(coupon_stock.insert(), rows)


def _decrement(connection: Connection, template_id: str, virtual_shard: int) -> bool:
    updated = connection.execute(
        coupon_stock.update()
        .where(
            coupon_stock.c.template_id == template_id,
            coupon_stock.c.virtual_shard == virtual_shard,
            coupon_stock.c.remaining > 0,
        )
        .values(remaining=coupon_stock.c.remaining - 1)
    )
    return updated.rowcount == 1


def take_stock(connection: Connection, template_id: str, virtual_shard: int) -> bool:
    """Take one unit of ``template_id``'s stock on this database; False when none is left here.

    First the claimant's own virtual shard's allotment; when that is empty, other allotments on
    the same database (those with the most left, probed in random order so that spilling claims
    do not all queue on one row), for a bounded number of rounds. Every decrement is a
    conditional UPDATE, so concurrent claims can never take a unit twice.
    """
    if _decrement(connection, template_id, virtual_shard):
        return True
    for _round in range(MAX_STOCK_ROUNDS):
        candidates = list(
            connection.execute(
                select(coupon_stock.c.virtual_shard)
                .where(
                    coupon_stock.c.template_id == template_id,
                    coupon_stock.c.remaining > 0,
                    coupon_stock.c.virtual_shard != virtual_shard,
                )
                .order_by(coupon_stock.c.remaining.desc(), coupon_stock.c.virtual_shard)
                .limit(MAX_STOCK_PROBES)
            ).scalars()
        )
        if not candidates:
            return False
        _random.shuffle(candidates)
        for candidate in candidates:
            if _decrement(connection, template_id, candidate):
                return True
    raise CofferError(
        Reason.CONTENTION,
        "coupon stock is being claimed too fast to find a unit; retry with the same key",
        metadata={"template_id": template_id},
    )


def count_claim(connection: Connection, user_id: int, template_id: str, limit: int) -> bool:
    """Count one more claim of ``template_id`` by ``user_id``; False at the limit.

    The counter row is locked by the conditional UPDATE, so concurrent claims by one user
    queue on it and at most ``limit`` ever succeed.
    """
    insert_or_ignore(
        connection, coupon_claims, {"user_id": user_id, "template_id": template_id, "claimed": 0}
    )
    updated = connection.execute(
        coupon_claims.update()
        .where(
            coupon_claims.c.user_id == user_id,
            coupon_claims.c.template_id == template_id,
            coupon_claims.c.claimed < limit,
        )
        .values(claimed=coupon_claims.c.claimed + 1)
    )
    return updated.rowcount == 1


# --- user coupons ----------------------------------------------------------------------------


def _event(
    connection: Connection,
    *,
    coupon_id: str,
    user_id: int,
    event: CouponEvent,
    from_state: CouponState | None,
    to_state: CouponState,
    reference: str,
    now_us: int,
) -> None:
    connection.execute(
        coupon_events.insert().values(
            coupon_id=coupon_id,
            user_id=user_id,
            event=event.value,
            from_state="" if from_state is None else from_state.value,
            to_state=to_state.value,
            reference=reference[:160],
            created_at_us=now_us,
        )
    )


def insert_coupon(
    connection: Connection,
    *,
    coupon_id: str,
    code: str,
    user_id: int,
    template_id: str,
    source: str,
    activity_id: str,
    expires_at_us: int | None,
    transaction_id: str,
    now_us: int,
) -> Row[Any]:
    """A new user coupon, in the state the machine gives a claim (ACTIVATED)."""
    state = transition(None, CouponEvent.CLAIM)
    connection.execute(
        user_coupons.insert().values(
            coupon_id=coupon_id,
            code=code,
            user_id=user_id,
            template_id=template_id,
            state=state.value,
            source=source,
            activity_id=activity_id,
            claimed_at_us=now_us,
            expires_at_us=expires_at_us,
            charge_id="",
            transaction_id=transaction_id,
            updated_at_us=now_us,
        )
    )
    _event(
        connection,
        coupon_id=coupon_id,
        user_id=user_id,
        event=CouponEvent.CLAIM,
        from_state=None,
        to_state=state,
        reference=transaction_id,
        now_us=now_us,
    )
    row = read_coupon(connection, coupon_id)
    if row is None:
        raise CofferError(Reason.CONTENTION, "the new coupon vanished; retry")
    return row


def read_coupon(connection: Connection, coupon_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(user_coupons).where(user_coupons.c.coupon_id == coupon_id)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).one_or_none()


def read_coupon_by_code(connection: Connection, code: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(user_coupons).where(user_coupons.c.code == code)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).one_or_none()


def lock_coupons(connection: Connection, coupon_ids: Sequence[str]) -> dict[str, Row[Any]]:
    """Lock these coupons in the engine's lock order (sorted by id); missing ones are absent."""
    rows: dict[str, Row[Any]] = {}
    for coupon_id in sorted(set(coupon_ids)):
        row = read_coupon(connection, coupon_id, lock=True)
        if row is not None:
            rows[coupon_id] = row
    return rows


def stored_state(row: Row[Any]) -> CouponState:
    return CouponState(row.state)


def state_now(row: Row[Any], now_us: int) -> CouponState:
    return effective_state(CouponState(row.state), row.expires_at_us, now_us)


def change_state(
    connection: Connection,
    row: Row[Any],
    event: CouponEvent,
    now_us: int,
    *,
    charge_id: str | None = None,
    reference: str = "",
    restore_on_refund: bool = True,
) -> CouponState:
    """Move the coupon ``row`` (read in this transaction, normally locked) by ``event``.

    The machine judges the state as of ``now_us`` (past its validity an ACTIVATED coupon is
    EXPIRED), except for EXPIRE itself, which records an expiry that has already taken effect.
    ``charge_id`` (when given) becomes the coupon's holding charge.
    """
    stored = CouponState(row.state)
    ended = is_past_validity(row.expires_at_us, now_us)
    current = stored if event is CouponEvent.EXPIRE else effective_state(stored, row.expires_at_us, now_us)
    target = transition(current, event, validity_ended=ended, restore_on_refund=restore_on_refund)
    values: dict[str, Any] = {"state": target.value, "updated_at_us": now_us}
    if charge_id is not None:
        values["charge_id"] = charge_id
    updated = connection.execute(
        user_coupons.update()
        .where(user_coupons.c.coupon_id == row.coupon_id, user_coupons.c.state == stored.value)
        .values(**values)
    )
    if updated.rowcount != 1:
        raise CofferError(
            Reason.CONTENTION,
            f"coupon {row.coupon_id} changed concurrently; retry with the same key",
            metadata={"coupon_id": row.coupon_id},
        )
    _event(
        connection,
        coupon_id=row.coupon_id,
        user_id=row.user_id,
        event=event,
        from_state=stored,
        to_state=target,
        reference=reference or (charge_id or ""),
        now_us=now_us,
    )
    return target


def coupon_view(row: Row[Any], now_us: int) -> CouponView:
    return CouponView(
        coupon_id=row.coupon_id,
        code=row.code,
        template_id=row.template_id,
        state=state_now(row, now_us).value,
        expires_at_us=row.expires_at_us,
        user_id=row.user_id,
    )


def read_coupon_views(connection: Connection, user_id: int, now_us: int) -> tuple[CouponView, ...]:
    """A wallet's coupons in every state, newest first (at most :data:`MAX_LISTED_COUPONS`)."""
    rows = connection.execute(_WALLET_COUPONS, {"p_user_id": user_id}).all()
    return tuple(coupon_view(row, now_us) for row in rows)


# Built once: a wallet (and so every mutation's answer) reads it.
_WALLET_COUPONS = (
    select(user_coupons)
    .where(user_coupons.c.user_id == bindparam("p_user_id"))
    .order_by(user_coupons.c.claimed_at_us.desc(), user_coupons.c.coupon_id.desc())
    .limit(MAX_LISTED_COUPONS)
)


LIVE_STATES = (CouponState.ACTIVATED.value, CouponState.LOCKED.value, CouponState.FROZEN.value)


def read_live_coupons(connection: Connection, user_id: int) -> list[Row[Any]]:
    """The user's coupons that may still matter to a cart (ACTIVATED, LOCKED, FROZEN), soonest
    expiry first, at most :data:`MAX_QUOTE_COUPONS`."""
    return list(
        connection.execute(
            select(user_coupons)
            .where(user_coupons.c.user_id == user_id, user_coupons.c.state.in_(LIVE_STATES))
            .order_by(user_coupons.c.expires_at_us, user_coupons.c.coupon_id)
            .limit(MAX_QUOTE_COUPONS)
        ).all()
    )


def coupon_not_found(coupon_id: str, field: str = "coupon_id") -> CofferError:
    return CofferError(
        Reason.COUPON_NOT_FOUND,
        f"no coupon {coupon_id!r}",
        metadata={"coupon_id": coupon_id, "field": field},
    )


# --- activities ------------------------------------------------------------------------------


def insert_activity(connection: Connection, activity: Activity, now_us: int) -> bool:
    rules = activity.rules
    return insert_or_ignore(
        connection,
        activities,
        {
            "activity_id": activity.activity_id,
            "name": activity.name,
            "rewards": _dump(
                [
                    {
                        "template_id": reward.template_id,
                        "quantity": reward.quantity,
                        "points": reward.points,
                        "points_ttl_days": reward.points_ttl_days,
                    }
                    for reward in activity.rewards
                ]
            ),
            "rules": _dump(
                {
                    "device_blacklist": list(rules.device_blacklist),
                    "ip_cities": list(rules.ip_cities),
                    "new_users_only": rules.new_users_only,
                    "min_member_level": rules.min_member_level,
                    "phone_blacklist": list(rules.phone_blacklist),
                }
            ),
            "valid_from_us": activity.valid_from_us,
            "valid_until_us": activity.valid_until_us,
            "created_at_us": now_us,
        },
    )


def read_activity(connection: Connection, activity_id: str) -> Activity | None:
    row = connection.execute(select(activities).where(activities.c.activity_id == activity_id)).one_or_none()
    if row is None:
        return None
    rules = json.loads(row.rules)
    return Activity(
        activity_id=row.activity_id,
        name=row.name,
        rewards=tuple(
            ActivityReward(
                template_id=reward["template_id"],
                quantity=int(reward["quantity"]),
                points=int(reward["points"]),
                points_ttl_days=int(reward["points_ttl_days"]),
            )
            for reward in json.loads(row.rewards)
        ),
        rules=ActivityRules(
            device_blacklist=tuple(rules["device_blacklist"]),
            ip_cities=tuple(rules["ip_cities"]),
            new_users_only=bool(rules["new_users_only"]),
            min_member_level=int(rules["min_member_level"]),
            phone_blacklist=tuple(rules["phone_blacklist"]),
        ),
        valid_from_us=row.valid_from_us,
        valid_until_us=row.valid_until_us,
    )


def claim_activity_grant(
    connection: Connection, user_id: int, activity_id: str, transaction_id: str, now_us: int
) -> bool:
    """Record the one grant of ``activity_id`` to ``user_id``; False when it was granted before.

    On PostgreSQL a concurrent grant still in flight makes this wait for it (the primary key),
    so twenty simultaneous requests end in one bundle and nineteen refusals.
    """
    return insert_or_ignore(
        connection,
        activity_grants,
        {
            "user_id": user_id,
            "activity_id": activity_id,
            "transaction_id": transaction_id,
            "created_at_us": now_us,
        },
    )
