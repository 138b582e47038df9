"""Issue(coupon{template_id}): claim a coupon, atomically with the stock decrement and the
per-user limit (CONTRACT §3 Coupons; docs/coupons.md).

One transaction on the user's shard: the idempotency key, the template (TEMPLATE_NOT_FOUND), its
claim window and eligibility, the per-user counter (CLAIM_LIMIT_REACHED), one unit of stock from
the user's virtual shard's allotment or another on the same database (STOCK_EXHAUSTED), the new
ACTIVATED coupon, and a COUPON_CLAIM ledger transaction (no money moves, so it has no entries;
it is the claim's line in the history).
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.commands import CouponClaimSpec, IssueCommand
from engine.domain.coupons.definitions import CouponTemplate, claim_refusal
from engine.domain.errors import CofferError, Reason
from engine.domain.ledger import TransactionType
from engine.domain.results import CouponView, IssueResult
from engine.domain.validation import require_idempotency_key, require_reference, require_user_id
from engine.service.context import EngineContext
from engine.service.idempotent import execute_for_user
from engine.service.movements import open_movement
from engine.storage.accounts import require_not_frozen
from engine.storage.coupon_stock import count_claim, take_stock
from engine.storage.coupon_templates import read_template, template_not_found
from engine.storage.coupons import SOURCE_CLAIM, coupon_view, insert_coupon

__all__ = ["claim_coupon", "issue_coupon", "stock_exhausted"]


def stock_exhausted(template_id: str) -> CofferError:
    return CofferError(
        Reason.STOCK_EXHAUSTED,
        f"template {template_id} has no stock left",
        metadata={"template_id": template_id},
    )


def issue_coupon(
    context: EngineContext,
    connection: Connection,
    *,
    template: CouponTemplate,
    user_id: int,
    source: str,
    activity_id: str,
    transaction_id: str,
    now_us: int,
) -> CouponView:
    """Take one unit of ``template``'s stock and create the user's ACTIVATED coupon."""
    virtual_shard = context.router.virtual_shard_of_user(user_id)
    if not take_stock(connection, template.template_id, virtual_shard):
        raise stock_exhausted(template.template_id)
    row = insert_coupon(
        connection,
        coupon_id=ids.new_id("cp", virtual_shard, now_us // 1000),
        code=ids.new_code(virtual_shard),
        user_id=user_id,
        template_id=template.template_id,
        source=source,
        activity_id=activity_id,
        expires_at_us=template.expires_at_us(now_us),
        transaction_id=transaction_id,
        now_us=now_us,
    )
    return coupon_view(row, now_us)


def claim_coupon(context: EngineContext, command: IssueCommand) -> IssueResult:
    require_idempotency_key(command.idempotency_key)
    require_user_id(command.user_id)
    spec = command.spec
    if not isinstance(spec, CouponClaimSpec):
        raise TypeError("claim_coupon takes Issue(coupon)")
    require_reference("coupon.template_id", spec.template_id, required=True)
    return execute_for_user(
        context,
        command,
        operation="Issue",
        result_type=IssueResult,
        effect=lambda connection, now_us: _claim(context, connection, command, spec, now_us),
    )


def _claim(
    context: EngineContext,
    connection: Connection,
    command: IssueCommand,
    spec: CouponClaimSpec,
    now_us: int,
) -> IssueResult:
    user_id = command.user_id
    template = read_template(connection, spec.template_id)
    if template is None:
        raise template_not_found(spec.template_id)
    refusal = claim_refusal(template, command.context, now_us)
    if refusal is not None:
        raise refusal
    require_not_frozen(connection, user_id)
    movement = open_movement(context, connection, user_id, now_us)
    movement.ensure_account()
    if not count_claim(connection, user_id, template.template_id, template.per_user_limit):
        raise CofferError(
            Reason.CLAIM_LIMIT_REACHED,
            f"user {user_id} already holds {template.per_user_limit} claim(s) of {template.template_id}",
            metadata={"template_id": template.template_id, "limit": str(template.per_user_limit)},
        )
    coupon = issue_coupon(
        context,
        connection,
        template=template,
        user_id=user_id,
        source=SOURCE_CLAIM,
        activity_id="",
        transaction_id=movement.transaction_id,
        now_us=now_us,
    )
    # No value moves: the transaction (without entries) is the claim's line in the history.
    movement.record(
        TransactionType.COUPON_CLAIM,
        idempotency_key=command.idempotency_key,
        memo=f"coupon {coupon.coupon_id} of template {template.template_id}",
    )
    return movement.issued((coupon,))
