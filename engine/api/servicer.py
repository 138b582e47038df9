"""The TransactionEngine servicer: a thin adapter over :mod:`engine.service`."""

from __future__ import annotations

from typing import Any

import grpc

from coffer.v1 import common_pb2, engine_pb2, engine_pb2_grpc
from engine.api import convert_common, convert_engine
from engine.api.auth import caller_merchant_scope, current_caller
from engine.api.runner import UseCaseRunner
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError
from engine.service import capture as capture_service
from engine.service import charge as charge_service
from engine.service import gift_cards as gift_card_service
from engine.service import issue as issue_service
from engine.service import issue_batch as issue_batch_service
from engine.service import queries
from engine.service import redeem as redeem_service
from engine.service import refund as refund_service
from engine.service import void as void_service
from engine.service.context import EngineContext
from engine.service.group_commit import WriteRoute, route_for_code, route_for_id, route_for_user
from engine.service.quote import quote_charge

Context = grpc.aio.ServicerContext[Any, Any]


def _redeem_route(engine: EngineContext, request: engine_pb2.RedeemRequest) -> WriteRoute | None:
    """A till redemption names a code (its shard is in the code); an exchange names its user."""
    if request.HasField("points_exchange"):
        return route_for_user(engine, request.points_exchange.user_id)
    if request.HasField("gift_card"):
        return route_for_code(engine, request.gift_card.code)
    if request.HasField("coupon_code"):
        return route_for_code(engine, request.coupon_code.code)
    return None


class TransactionEngineServicer(engine_pb2_grpc.TransactionEngineServicer):
    def __init__(self, engine: EngineContext, runner: UseCaseRunner) -> None:
        self.engine = engine
        self.runner = runner

    def _currency(self, requested: str) -> None:
        convert_common.require_currency(requested, self.engine.settings.currency)

    async def Issue(self, request: engine_pb2.IssueRequest, context: Context) -> engine_pb2.IssueResponse:
        def work() -> engine_pb2.IssueResponse:
            self._currency(request.currency)
            result = issue_service.issue(self.engine, convert_engine.issue_from_proto(request))
            return engine_pb2.IssueResponse(
                transaction_id=result.transaction_id,
                replayed=result.replayed,
                wallet=convert_common.wallet_to_proto(result.wallet),
                coupons=[convert_common.coupon_to_proto(coupon) for coupon in result.coupons],
                gift_card=convert_common.gift_card_to_proto(result.gift_card) if result.gift_card else None,
            )

        return await self.runner.write(context, route_for_user(self.engine, request.user_id), work)

    async def Charge(self, request: engine_pb2.ChargeRequest, context: Context) -> engine_pb2.ChargeResponse:
        try:
            self._currency(request.currency)
            command: ChargeCommand | CofferError = convert_engine.charge_from_proto(request)
        except CofferError as refusal:
            command = refusal

        def work() -> engine_pb2.ChargeResponse:
            if isinstance(command, CofferError):
                raise command
            return convert_engine.charge_to_proto(charge_service.charge(self.engine, command))

        # A valid cash-only charge may be applied together with the others queued with it.
        joinable = (
            None
            if isinstance(command, CofferError)
            else charge_service.charge_joinable(
                self.engine, command, current_caller(), convert_engine.charge_to_proto
            )
        )
        route = route_for_user(self.engine, request.user_id)
        return await self.runner.write(context, route, work, joinable=joinable)

    async def Refund(self, request: engine_pb2.RefundRequest, context: Context) -> engine_pb2.RefundResponse:
        # Read in the call's task: the work below runs on a pool thread, outside its context.
        merchant_scope = caller_merchant_scope()

        def work() -> engine_pb2.RefundResponse:
            self._currency(request.currency)
            command = convert_engine.refund_from_proto(request, merchant_scope=merchant_scope)
            result = refund_service.refund(self.engine, command)
            return engine_pb2.RefundResponse(
                refund_id=result.refund_id,
                charge=convert_common.charge_to_proto(result.charge),
                replayed=result.replayed,
                wallet=convert_common.wallet_to_proto(result.wallet),
                breakdown=convert_common.breakdown_to_proto(result.breakdown),
            )

        return await self.runner.write(context, route_for_id(self.engine, request.charge_id), work)

    async def Capture(
        self, request: engine_pb2.CaptureRequest, context: Context
    ) -> engine_pb2.CaptureResponse:
        def work() -> engine_pb2.CaptureResponse:
            result = capture_service.capture(self.engine, convert_engine.capture_from_proto(request))
            return engine_pb2.CaptureResponse(
                charge=convert_common.charge_to_proto(result.charge), replayed=result.replayed
            )

        return await self.runner.write(context, route_for_id(self.engine, request.charge_id), work)

    async def Void(self, request: engine_pb2.VoidRequest, context: Context) -> engine_pb2.VoidResponse:
        def work() -> engine_pb2.VoidResponse:
            result = void_service.void(self.engine, convert_engine.void_from_proto(request))
            return engine_pb2.VoidResponse(
                charge=convert_common.charge_to_proto(result.charge), replayed=result.replayed
            )

        return await self.runner.write(context, route_for_id(self.engine, request.charge_id), work)

    async def Redeem(self, request: engine_pb2.RedeemRequest, context: Context) -> engine_pb2.RedeemResponse:
        def work() -> engine_pb2.RedeemResponse:
            self._currency(request.currency)
            result = redeem_service.redeem(self.engine, convert_engine.redeem_from_proto(request))
            return convert_engine.redeem_to_proto(result)

        return await self.runner.write(context, _redeem_route(self.engine, request), work)

    async def QuoteCharge(
        self, request: engine_pb2.ChargeRequest, context: Context
    ) -> engine_pb2.QuoteChargeResponse:
        def work() -> engine_pb2.QuoteChargeResponse:
            self._currency(request.currency)
            return convert_engine.quote_to_proto(
                quote_charge(self.engine, convert_engine.charge_from_proto(request))
            )

        return await self.runner.run(context, work)

    async def GetGiftCard(
        self, request: engine_pb2.GetGiftCardRequest, context: Context
    ) -> common_pb2.GiftCard:
        return await self.runner.run(
            context,
            lambda: convert_common.gift_card_to_proto(
                gift_card_service.get_gift_card(self.engine, request.code)
            ),
        )

    async def GetWallet(self, request: engine_pb2.GetWalletRequest, context: Context) -> common_pb2.Wallet:
        return await self.runner.run(
            context, lambda: convert_common.wallet_to_proto(queries.get_wallet(self.engine, request.user_id))
        )

    async def GetCharge(self, request: engine_pb2.GetChargeRequest, context: Context) -> common_pb2.Charge:
        return await self.runner.run(
            context,
            lambda: convert_common.charge_to_proto(queries.get_charge(self.engine, request.charge_id)),
        )

    async def ListTransactions(
        self, request: engine_pb2.ListTransactionsRequest, context: Context
    ) -> engine_pb2.ListTransactionsResponse:
        def work() -> engine_pb2.ListTransactionsResponse:
            page = queries.list_transactions(
                self.engine, request.user_id, request.page_size, request.page_token
            )
            return engine_pb2.ListTransactionsResponse(
                transactions=[convert_common.transaction_to_proto(view) for view in page.transactions],
                next_page_token=page.next_page_token,
            )

        return await self.runner.run(context, work)

    async def IssueBatch(
        self, request: engine_pb2.IssueBatchRequest, context: Context
    ) -> engine_pb2.IssueBatchResponse:
        def work() -> engine_pb2.IssueBatchResponse:
            items = convert_engine.issue_batch_items_from_proto(request, self.engine.settings.currency)
            return convert_engine.issue_batch_to_proto(issue_batch_service.issue_batch(self.engine, items))

        return await self.runner.run(context, work)
