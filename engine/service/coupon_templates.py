"""Admin.CreateCouponTemplate: a template written to every physical shard, with its stock split
into per-virtual-shard allotments on the database of each virtual shard.

Global definitions without a global database: one request never needs two databases *per
request that uses them* — claims, charges and refunds read the template on their own shard. The
admin call itself visits every shard in index order, each visit its own idempotent transaction
with the key scoped to user 0 on that shard. The first shard mints the ``template_id``; later
shards store the same id. A retry after a crash between shards replays the shards already done
(same id) and completes the rest, so the definition converges everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.coupons.definitions import (
    CreateCouponTemplateCommand,
    template_of,
    validate_template,
    validate_template_now,
)
from engine.domain.coupons.messages import TemplateCreated
from engine.service.context import EngineContext
from engine.service.idempotent import Replayable, execute_idempotent
from engine.storage.coupon_stock import insert_allotments, split_stock
from engine.storage.coupon_templates import insert_template
from engine.storage.router import Shard

#: Admin requests are not any user's: their keys live under this owner on every shard.
ADMIN_OWNER = 0

R = TypeVar("R", bound=Replayable)


def on_every_shard(
    context: EngineContext,
    *,
    key: str,
    operation: str,
    command: object,
    result_type: type[R],
    first: Callable[[Connection, int], R],
    rest: Callable[[Shard, R], Callable[[Connection, int], R]],
) -> R:
    """Run ``first`` on shard 0, then ``rest(shard, first_result)`` on every other shard, each
    idempotently under ``key``; the answer is shard 0's (``replayed`` as shard 0 saw it)."""
    shards = context.router.shards
    result = execute_idempotent(
        context,
        shard=shards[0],
        key=key,
        operation=operation,
        command=command,
        result_type=result_type,
        owner=ADMIN_OWNER,
        effect=first,
    )
    for shard in shards[1:]:
        execute_idempotent(
            context,
            shard=shard,
            key=key,
            operation=operation,
            command=command,
            result_type=result_type,
            owner=ADMIN_OWNER,
            effect=rest(shard, result),
        )
    return result


def create_coupon_template(context: EngineContext, command: CreateCouponTemplateCommand) -> TemplateCreated:
    validate_template(command)
    router = context.router
    allotments = split_stock(command.total_stock, router.virtual_shards)

    def store(shard: Shard, template_id: str, connection: Connection, now_us: int) -> TemplateCreated:
        insert_template(connection, template_of(template_id, command), now_us)
        insert_allotments(
            connection,
            template_id,
            {
                virtual: units
                for virtual, units in enumerate(allotments)
                if router.for_virtual(virtual).index == shard.index
            },
        )
        return TemplateCreated(template_id=template_id)

    def first(connection: Connection, now_us: int) -> TemplateCreated:
        validate_template_now(command, now_us)
        template_id = ids.new_id("tpl", 0, now_us // 1000)
        return store(router.shards[0], template_id, connection, now_us)

    def rest(shard: Shard, created: TemplateCreated) -> Callable[[Connection, int], TemplateCreated]:
        return lambda connection, now_us: store(shard, created.template_id, connection, now_us)

    return on_every_shard(
        context,
        key=command.idempotency_key,
        operation="CreateCouponTemplate",
        command=command,
        result_type=TemplateCreated,
        first=first,
        rest=rest,
    )
