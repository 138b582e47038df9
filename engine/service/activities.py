"""Marketing activities (seed 001 §4.3): Admin.CreateActivity and Issue(activity{activity_id}).

An activity grants a bundle — coupons of some templates and/or points lots — under rules on the
request context (``device_id`` not blacklisted, ``ip_city`` among the allowed cities, new users,
member level, ``phone_hash`` not blacklisted): a failed rule is ACTIVITY_NOT_ELIGIBLE with the
rule's name in the metadata. The bundle is granted atomically, in one transaction on the user's
shard, at most once per (user, activity) — the ``activity_grants`` primary key, claimed before any
stock is touched — so concurrent requests end in one bundle and ACTIVITY_ALREADY_GRANTED for the
rest. Coupons from a bundle take stock like any claim but are not counted against the template's
per-user claim limit (the activity's once-per-user rule bounds them); points reuse the points
grant (:func:`engine.service.points_grants.grant_lot`, which settles a points debt first).
The bundle is one ledger transaction: POINTS_GRANT when it carries points, else COUPON_CLAIM.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.commands import ActivitySpec, IssueCommand
from engine.domain.coupons.definitions import (
    Activity,
    CreateActivityCommand,
    activity_refusal,
    validate_activity,
)
from engine.domain.coupons.messages import ActivityCreated
from engine.domain.errors import CofferError, Reason
from engine.domain.ledger import TransactionType
from engine.domain.results import CouponView, IssueResult
from engine.domain.time_units import expiry_after_days
from engine.domain.validation import require_idempotency_key, require_reference, require_user_id
from engine.service.context import EngineContext
from engine.service.coupon_claims import issue_coupon
from engine.service.coupon_templates import on_every_shard
from engine.service.idempotent import execute_for_user
from engine.service.movements import open_movement
from engine.storage.accounts import require_not_frozen
from engine.storage.activities import claim_activity_grant, insert_activity, read_activity
from engine.storage.coupon_templates import read_template, template_not_found
from engine.storage.coupons import SOURCE_ACTIVITY
from engine.storage.router import Shard

__all__ = ["create_activity", "grant_activity"]


def create_activity(context: EngineContext, command: CreateActivityCommand) -> ActivityCreated:
    """Store the activity on every shard (as templates are); every coupon reward's template must
    exist (TEMPLATE_NOT_FOUND naming the reward)."""
    validate_activity(command)

    def store(activity_id: str, connection: Connection, now_us: int) -> ActivityCreated:
        for index, reward in enumerate(command.rewards):
            if reward.template_id and read_template(connection, reward.template_id) is None:
                raise template_not_found(reward.template_id, f"rewards[{index}].template_id")
        insert_activity(
            connection,
            Activity(
                activity_id=activity_id,
                name=command.name,
                rewards=command.rewards,
                rules=command.rules,
                valid_from_us=command.valid_from_us,
                valid_until_us=command.valid_until_us,
            ),
            now_us,
        )
        return ActivityCreated(activity_id=activity_id)

    def first(connection: Connection, now_us: int) -> ActivityCreated:
        return store(ids.new_id("act", 0, now_us // 1000), connection, now_us)

    def rest(_shard: Shard, created: ActivityCreated) -> Callable[[Connection, int], ActivityCreated]:
        return lambda connection, now_us: store(created.activity_id, connection, now_us)

    return on_every_shard(
        context,
        key=command.idempotency_key,
        operation="CreateActivity",
        command=command,
        result_type=ActivityCreated,
        first=first,
        rest=rest,
    )


def grant_activity(context: EngineContext, command: IssueCommand) -> IssueResult:
    require_idempotency_key(command.idempotency_key)
    require_user_id(command.user_id)
    spec = command.spec
    if not isinstance(spec, ActivitySpec):
        raise TypeError("grant_activity takes Issue(activity)")
    require_reference("activity.activity_id", spec.activity_id, required=True)
    return execute_for_user(
        context,
        command,
        operation="Issue",
        result_type=IssueResult,
        effect=lambda connection, now_us: _grant(context, connection, command, spec, now_us),
    )


def _grant(
    context: EngineContext,
    connection: Connection,
    command: IssueCommand,
    spec: ActivitySpec,
    now_us: int,
) -> IssueResult:
    user_id = command.user_id
    activity = read_activity(connection, spec.activity_id)
    if activity is None:
        raise CofferError(
            Reason.ACTIVITY_NOT_FOUND,
            f"no activity {spec.activity_id!r}",
            metadata={"activity_id": spec.activity_id, "field": "activity.activity_id"},
        )
    rule = activity_refusal(activity, command.context, now_us)
    if rule is not None:
        raise CofferError(
            Reason.ACTIVITY_NOT_ELIGIBLE,
            f"this request does not meet the activity's {rule} rule",
            metadata={"activity_id": activity.activity_id, "rule": rule},
        )
    require_not_frozen(connection, user_id)
    movement = open_movement(context, connection, user_id, now_us)
    movement.ensure_account()
    if not claim_activity_grant(connection, user_id, activity.activity_id, movement.transaction_id, now_us):
        raise CofferError(
            Reason.ACTIVITY_ALREADY_GRANTED,
            f"user {user_id} already received activity {activity.activity_id}",
            metadata={"activity_id": activity.activity_id},
        )
    coupons: list[CouponView] = []
    points = 0
    # Templates in id order, so two bundles never take stock rows in opposite orders.
    for reward in sorted(activity.rewards, key=lambda item: item.template_id):
        if reward.template_id:
            template = read_template(connection, reward.template_id)
            if template is None:
                raise template_not_found(reward.template_id, "activity.activity_id")
            if template.valid_until_us is not None and now_us >= template.valid_until_us:
                raise CofferError(
                    Reason.COUPON_EXPIRED,
                    f"the bundle's template {template.template_id} has ended",
                    metadata={"template_id": template.template_id, "activity_id": activity.activity_id},
                )
            for _unit in range(reward.quantity or 1):
                coupons.append(
                    issue_coupon(
                        context,
                        connection,
                        template=template,
                        user_id=user_id,
                        source=SOURCE_ACTIVITY,
                        activity_id=activity.activity_id,
                        transaction_id=movement.transaction_id,
                        now_us=now_us,
                    )
                )
        if reward.points:
            # points_ttl_days is validated within 0..MAX_POINTS_TTL_DAYS: 0 is "never expires".
            movement.grant_points(reward.points, expiry_after_days(now_us, reward.points_ttl_days))
            points += reward.points
    movement.record(
        TransactionType.POINTS_GRANT if points else TransactionType.COUPON_CLAIM,
        idempotency_key=command.idempotency_key,
        memo=f"activity {activity.activity_id}",
    )
    return movement.issued(coupons)
