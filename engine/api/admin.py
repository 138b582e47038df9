"""The Admin servicer: a thin adapter over the admin use cases."""

from __future__ import annotations

from typing import Any

import grpc

from coffer.v1 import admin_pb2, admin_pb2_grpc
from engine.api import convert_admin, convert_common
from engine.api.runner import UseCaseRunner
from engine.domain.commands import AdjustCommand, FreezeAccountCommand
from engine.service import account_admin, audit_trail
from engine.service import audit as audit_service
from engine.service.activities import create_activity
from engine.service.context import EngineContext
from engine.service.coupon_admin import set_coupon_frozen
from engine.service.coupon_templates import create_coupon_template

Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, engine: EngineContext, runner: UseCaseRunner) -> None:
        self.engine = engine
        self.runner = runner

    async def Audit(self, request: admin_pb2.AuditRequest, context: Context) -> admin_pb2.AuditReport:
        shard = request.shard if request.HasField("shard") else None
        return await self.runner.run(
            context, lambda: convert_admin.audit_to_proto(audit_service.audit(self.engine, shard))
        )

    async def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: Context
    ) -> admin_pb2.ListAuditEventsResponse:
        def work() -> admin_pb2.ListAuditEventsResponse:
            query = convert_admin.audit_query_from_proto(request)
            return convert_admin.audit_events_to_proto(audit_trail.list_audit_events(self.engine, query))

        return await self.runner.run(context, work)

    async def CreateCouponTemplate(
        self, request: admin_pb2.CreateCouponTemplateRequest, context: Context
    ) -> admin_pb2.CreateCouponTemplateResponse:
        def work() -> admin_pb2.CreateCouponTemplateResponse:
            result = create_coupon_template(self.engine, convert_admin.template_from_proto(request))
            return admin_pb2.CreateCouponTemplateResponse(
                template_id=result.template_id, replayed=result.replayed
            )

        return await self.runner.run(context, work)

    async def CreateActivity(
        self, request: admin_pb2.CreateActivityRequest, context: Context
    ) -> admin_pb2.CreateActivityResponse:
        def work() -> admin_pb2.CreateActivityResponse:
            result = create_activity(self.engine, convert_admin.activity_from_proto(request))
            return admin_pb2.CreateActivityResponse(activity_id=result.activity_id, replayed=result.replayed)

        return await self.runner.run(context, work)

    async def FreezeAccount(
        self, request: admin_pb2.FreezeAccountRequest, context: Context
    ) -> admin_pb2.AccountState:
        return await self._set_frozen(request, context, frozen=True)

    async def UnfreezeAccount(
        self, request: admin_pb2.FreezeAccountRequest, context: Context
    ) -> admin_pb2.AccountState:
        return await self._set_frozen(request, context, frozen=False)

    async def _set_frozen(
        self, request: admin_pb2.FreezeAccountRequest, context: Context, *, frozen: bool
    ) -> admin_pb2.AccountState:
        command = FreezeAccountCommand(
            idempotency_key=request.idempotency_key,
            user_id=request.user_id,
            frozen=frozen,
            reason=request.reason,
            operator_id=request.operator_id,
        )
        return await self.runner.run(
            context,
            lambda: convert_admin.account_state_to_proto(
                account_admin.set_account_frozen(self.engine, command)
            ),
        )

    async def FreezeCoupon(
        self, request: admin_pb2.FreezeCouponRequest, context: Context
    ) -> admin_pb2.CouponStateResponse:
        return await self._set_coupon_frozen(request, context, frozen=True)

    async def UnfreezeCoupon(
        self, request: admin_pb2.FreezeCouponRequest, context: Context
    ) -> admin_pb2.CouponStateResponse:
        return await self._set_coupon_frozen(request, context, frozen=False)

    async def _set_coupon_frozen(
        self, request: admin_pb2.FreezeCouponRequest, context: Context, *, frozen: bool
    ) -> admin_pb2.CouponStateResponse:
        command = convert_admin.freeze_coupon_from_proto(request, frozen=frozen)
        return await self.runner.run(
            context, lambda: convert_admin.coupon_state_to_proto(set_coupon_frozen(self.engine, command))
        )

    async def Adjust(self, request: admin_pb2.AdjustRequest, context: Context) -> admin_pb2.AdjustResponse:
        def work() -> admin_pb2.AdjustResponse:
            command = AdjustCommand(
                idempotency_key=request.idempotency_key,
                user_id=request.user_id,
                asset=convert_common.asset_from_proto(request.asset, "asset"),
                amount=request.amount,
                reason=request.reason,
                operator_id=request.operator_id,
            )
            return convert_admin.adjust_to_proto(account_admin.adjust(self.engine, command))

        return await self.runner.run(context, work)
