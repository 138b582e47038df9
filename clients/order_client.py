"""The order-service client: a typed wrapper over the ``coffer.v1`` stubs (docs/api.md).

    from clients.order_client import OrderClient, InsufficientFunds

    with OrderClient("127.0.0.1:50051") as coffer:
        key = f"order-{order_id}-pay"          # persist it with the order before calling
        try:
            paid = coffer.charge(user_id, order_id, "m-42", 12_900, points=500, idempotency_key=key)
        except InsufficientFunds as refused:
            print("short of", refused.metadata.get("asset"))

* Every call has a deadline (``timeout`` seconds per attempt; the client's default unless given).
* Calls are retried with tenacity only on UNAVAILABLE / ABORTED / DEADLINE_EXCEEDED, at most
  ``RetryPolicy.max_attempts`` times within ``RetryPolicy.total_timeout_s``, waiting a jittered
  exponential backoff between attempts. The request is built once, so every attempt carries the
  same idempotency key and the engine applies the effect at most once.
* A mutating call without an ``idempotency_key`` gets a fresh one; a caller that must survive its
  own crash passes a key it stored first (see the POS CLI's journal).
* Refusals arrive as typed exceptions (:mod:`clients.errors`): ``InsufficientFunds``,
  ``CouponNotApplicable``, ``IdempotencyKeyReused``, ... each with ``.reason``, ``.metadata``
  and ``.code``.

Only grpcio, grpcio-status, protobuf and tenacity are imported (the ``client`` extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from clients import errors
from clients._requests import (
    LineItemLike,
    RefundItemLike,
    build_charge_request,
    build_gift_card_issue_request,
    build_redeem_coupon_request,
    build_redeem_gift_card_request,
    build_refund_request,
    line_item,
    new_idempotency_key,
    refund_item,
)
from clients._retry import MAX_ATTEMPTS_LIMIT, NO_RETRY, RetryHook, RetryPolicy
from clients._transport import (
    CHANNEL_OPTIONS,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_CONNECTIONS,
    RPCS,
    TlsFiles,
    Transport,
)
from clients.errors import *  # noqa: F403  (re-exported: callers import the exceptions from here)
from coffer.v1 import admin_pb2, common_pb2, engine_pb2

#: Hard bound on :meth:`OrderClient.iter_transactions`.
MAX_PAGES_LIMIT = 10_000


class OrderClient(Transport):
    """A synchronous, thread-safe client for ``TransactionEngine`` and ``Admin``.

    ``target`` is ``host:port``, plaintext unless ``tls=TlsFiles(ca, cert, key)`` (or ready-made
    ``credentials``) are given; ``token`` adds ``authorization: Bearer <token>`` to every call.
    Pass ``channel`` to reuse one you built. ``timeout`` is the default deadline of every attempt,
    ``retry`` the default :class:`RetryPolicy`; both can be overridden per call. ``on_retry(rpc, error,
    attempt)`` is called before each retry (for metrics and logs).
    """

    # -- TransactionEngine: money ------------------------------------------------------------

    def issue(
        self, request: engine_pb2.IssueRequest, *, timeout: float | None = None
    ) -> engine_pb2.IssueResponse:
        if not request.idempotency_key:
            request.idempotency_key = self.new_key()
        response: engine_pb2.IssueResponse = self.send("TransactionEngine.Issue", request, timeout=timeout)
        return response

    def issue_top_up(
        self,
        user_id: int,
        amount: int,
        *,
        payment_channel: str,
        channel_txn_id: str,
        asset: common_pb2.Asset.ValueType = common_pb2.ASSET_CASH,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.IssueResponse:
        """A payment-channel top-up (CASH, or COINS bought with money)."""
        return self.issue(
            engine_pb2.IssueRequest(
                idempotency_key=self._key(idempotency_key),
                user_id=user_id,
                context=context,
                top_up=engine_pb2.TopUp(
                    amount=amount, asset=asset, payment_channel=payment_channel, channel_txn_id=channel_txn_id
                ),
            ),
            timeout=timeout,
        )

    def issue_points(
        self,
        user_id: int,
        points: int,
        *,
        ttl_days: int = 0,
        reason: str = "",
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.IssueResponse:
        return self.issue(
            engine_pb2.IssueRequest(
                idempotency_key=self._key(idempotency_key),
                user_id=user_id,
                context=context,
                points=engine_pb2.PointsGrant(points=points, ttl_days=ttl_days, reason=reason),
            ),
            timeout=timeout,
        )

    def issue_coins(
        self,
        user_id: int,
        coins: int,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.IssueResponse:
        return self.issue(
            engine_pb2.IssueRequest(
                idempotency_key=self._key(idempotency_key),
                user_id=user_id,
                context=context,
                coins=engine_pb2.CoinsGrant(coins=coins, reason=reason),
            ),
            timeout=timeout,
        )

    def issue_coupon(
        self,
        user_id: int,
        template_id: str,
        *,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.IssueResponse:
        """Claim a coupon from a template (the flash claim); ``response.coupons`` holds it."""
        return self.issue(
            engine_pb2.IssueRequest(
                idempotency_key=self._key(idempotency_key),
                user_id=user_id,
                context=context,
                coupon=engine_pb2.CouponClaim(template_id=template_id),
            ),
            timeout=timeout,
        )

    def issue_gift_card(
        self,
        user_id: int,
        amount: int,
        *,
        code: str = "",
        payment_channel: str = "",
        channel_txn_id: str = "",
        ttl_days: int = 0,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.IssueResponse:
        """A new card (no ``code``) or a reload of ``code``; ``response.gift_card`` holds it."""
        request = build_gift_card_issue_request(
            user_id,
            amount,
            idempotency_key=self._key(idempotency_key),
            code=code,
            payment_channel=payment_channel,
            channel_txn_id=channel_txn_id,
            ttl_days=ttl_days,
            context=context,
        )
        return self.issue(request, timeout=timeout)

    def issue_activity(
        self,
        user_id: int,
        activity_id: str,
        *,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.IssueResponse:
        return self.issue(
            engine_pb2.IssueRequest(
                idempotency_key=self._key(idempotency_key),
                user_id=user_id,
                context=context,
                activity=engine_pb2.ActivityGrant(activity_id=activity_id),
            ),
            timeout=timeout,
        )

    def charge(
        self,
        user_id: int,
        order_id: str,
        merchant_id: str,
        amount: int,
        *,
        items: Iterable[LineItemLike] = (),
        coupon_ids: Iterable[str] = (),
        points: int = 0,
        coins: int = 0,
        gift_card_codes: Iterable[str] = (),
        authorize_only: bool = False,
        step_up_verified: bool = False,
        channel_id: str = "",
        business_line: str = "",
        context: common_pb2.RequestContext | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.ChargeResponse:
        """Pay ``amount`` (the order total before discounts) from coupons, points, coins, gift
        cards and cash, all legs or none; ``authorize_only`` holds them for :meth:`capture`."""
        request = build_charge_request(
            user_id,
            order_id,
            merchant_id,
            amount,
            idempotency_key=self._key(idempotency_key),
            items=items,
            coupon_ids=coupon_ids,
            points=points,
            coins=coins,
            gift_card_codes=gift_card_codes,
            authorize_only=authorize_only,
            step_up_verified=step_up_verified,
            channel_id=channel_id,
            business_line=business_line,
            context=context,
        )
        response: engine_pb2.ChargeResponse = self.send("TransactionEngine.Charge", request, timeout=timeout)
        return response

    def authorize(
        self, user_id: int, order_id: str, merchant_id: str, amount: int, **options: Any
    ) -> engine_pb2.ChargeResponse:
        """:meth:`charge` with ``authorize_only=True``."""
        return self.charge(user_id, order_id, merchant_id, amount, authorize_only=True, **options)

    def capture(
        self,
        charge_id: str,
        amount: int = 0,
        *,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.CaptureResponse:
        """Capture ``amount`` of the authorized paid amount (0: all); the rest is released."""
        request = engine_pb2.CaptureRequest(
            idempotency_key=self._key(idempotency_key), charge_id=charge_id, amount=amount, context=context
        )
        response: engine_pb2.CaptureResponse = self.send(
            "TransactionEngine.Capture", request, timeout=timeout
        )
        return response

    def void(
        self,
        charge_id: str,
        *,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.VoidResponse:
        request = engine_pb2.VoidRequest(
            idempotency_key=self._key(idempotency_key), charge_id=charge_id, context=context
        )
        response: engine_pb2.VoidResponse = self.send("TransactionEngine.Void", request, timeout=timeout)
        return response

    def refund(
        self,
        charge_id: str,
        amount: int = 0,
        *,
        items: Iterable[RefundItemLike] = (),
        reason: str = "",
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.RefundResponse:
        """Refund ``amount`` (or the paid share of ``items``) of a charge or till redemption."""
        request = build_refund_request(
            charge_id,
            amount,
            idempotency_key=self._key(idempotency_key),
            items=items,
            reason=reason,
            context=context,
        )
        response: engine_pb2.RefundResponse = self.send("TransactionEngine.Refund", request, timeout=timeout)
        return response

    def redeem_coupon_code(
        self,
        code: str,
        order_amount: int,
        merchant_id: str,
        *,
        items: Iterable[LineItemLike] = (),
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.RedeemResponse:
        """A till redemption of a coupon code; ``response.discount`` is what it took off."""
        request = build_redeem_coupon_request(
            code,
            order_amount,
            merchant_id,
            idempotency_key=self._key(idempotency_key),
            items=items,
            context=context,
        )
        response: engine_pb2.RedeemResponse = self.send("TransactionEngine.Redeem", request, timeout=timeout)
        return response

    def redeem_gift_card(
        self,
        code: str,
        amount: int,
        merchant_id: str,
        *,
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.RedeemResponse:
        """A till redemption of ``amount`` from a gift card, all or nothing."""
        request = build_redeem_gift_card_request(
            code, amount, merchant_id, idempotency_key=self._key(idempotency_key), context=context
        )
        response: engine_pb2.RedeemResponse = self.send("TransactionEngine.Redeem", request, timeout=timeout)
        return response

    def redeem_points_exchange(
        self,
        user_id: int,
        points: int,
        *,
        merchant_id: str = "",
        idempotency_key: str | None = None,
        context: common_pb2.RequestContext | None = None,
        timeout: float | None = None,
    ) -> engine_pb2.RedeemResponse:
        """Exchange points for cash (capped per user per business day)."""
        request = engine_pb2.RedeemRequest(
            idempotency_key=self._key(idempotency_key),
            merchant_id=merchant_id,
            context=context,
            points_exchange=engine_pb2.PointsExchange(user_id=user_id, points=points),
        )
        response: engine_pb2.RedeemResponse = self.send("TransactionEngine.Redeem", request, timeout=timeout)
        return response

    def quote(
        self,
        user_id: int,
        order_id: str,
        merchant_id: str,
        amount: int,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> engine_pb2.QuoteChargeResponse:
        """What :meth:`charge` with the same arguments would do, without effect."""
        key = options.pop("idempotency_key", None)
        request = build_charge_request(
            user_id, order_id, merchant_id, amount, idempotency_key=self._key(key), **options
        )
        response: engine_pb2.QuoteChargeResponse = self.send(
            "TransactionEngine.QuoteCharge", request, timeout=timeout
        )
        return response

    # -- TransactionEngine: reads ------------------------------------------------------------

    def get_wallet(self, user_id: int, *, timeout: float | None = None) -> common_pb2.Wallet:
        response: common_pb2.Wallet = self.send(
            "TransactionEngine.GetWallet", engine_pb2.GetWalletRequest(user_id=user_id), timeout=timeout
        )
        return response

    def get_charge(self, charge_id: str, *, timeout: float | None = None) -> common_pb2.Charge:
        response: common_pb2.Charge = self.send(
            "TransactionEngine.GetCharge", engine_pb2.GetChargeRequest(charge_id=charge_id), timeout=timeout
        )
        return response

    def get_gift_card(self, code: str, *, timeout: float | None = None) -> common_pb2.GiftCard:
        response: common_pb2.GiftCard = self.send(
            "TransactionEngine.GetGiftCard", engine_pb2.GetGiftCardRequest(code=code), timeout=timeout
        )
        return response

    def list_transactions(
        self, user_id: int, *, page_size: int = 50, page_token: str = "", timeout: float | None = None
    ) -> engine_pb2.ListTransactionsResponse:
        response: engine_pb2.ListTransactionsResponse = self.send(
            "TransactionEngine.ListTransactions",
            engine_pb2.ListTransactionsRequest(user_id=user_id, page_size=page_size, page_token=page_token),
            timeout=timeout,
        )
        return response

    def iter_transactions(
        self, user_id: int, *, page_size: int = 200, max_pages: int = 100
    ) -> Iterator[common_pb2.Transaction]:
        """Every transaction of a user, newest first, page by page (at most ``max_pages``)."""
        token = ""
        for _ in range(min(max_pages, MAX_PAGES_LIMIT)):
            page = self.list_transactions(user_id, page_size=page_size, page_token=token)
            yield from page.transactions
            token = page.next_page_token
            if not token:
                return

    # -- Admin -------------------------------------------------------------------------------

    def audit(self, shard: int | None = None, *, timeout: float | None = None) -> admin_pb2.AuditReport:
        """The ledger invariant report (every shard unless ``shard`` is given)."""
        request = admin_pb2.AuditRequest() if shard is None else admin_pb2.AuditRequest(shard=shard)
        response: admin_pb2.AuditReport = self.send("Admin.Audit", request, timeout=timeout)
        return response

    def list_audit_events(
        self,
        *,
        user_id: int = 0,
        order_id: str = "",
        charge_id: str = "",
        caller: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> admin_pb2.ListAuditEventsResponse:
        """One page of audit-trail rows, newest first; every filter given must match."""
        request = admin_pb2.ListAuditEventsRequest(
            user_id=user_id,
            order_id=order_id,
            charge_id=charge_id,
            caller=caller,
            page_size=page_size,
            page_token=page_token,
        )
        response: admin_pb2.ListAuditEventsResponse = self.send(
            "Admin.ListAuditEvents", request, timeout=timeout
        )
        return response

    def create_coupon_template(
        self, request: admin_pb2.CreateCouponTemplateRequest, *, timeout: float | None = None
    ) -> admin_pb2.CreateCouponTemplateResponse:
        if not request.idempotency_key:
            request.idempotency_key = self.new_key()
        response: admin_pb2.CreateCouponTemplateResponse = self.send(
            "Admin.CreateCouponTemplate", request, timeout=timeout
        )
        return response

    def create_activity(
        self, request: admin_pb2.CreateActivityRequest, *, timeout: float | None = None
    ) -> admin_pb2.CreateActivityResponse:
        if not request.idempotency_key:
            request.idempotency_key = self.new_key()
        response: admin_pb2.CreateActivityResponse = self.send(
            "Admin.CreateActivity", request, timeout=timeout
        )
        return response

    def set_account_frozen(
        self,
        user_id: int,
        frozen: bool,
        *,
        reason: str,
        operator_id: str,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> admin_pb2.AccountState:
        """Freeze (``frozen=True``) or unfreeze a wallet; while frozen, every movement out of it is
        refused with ACCOUNT_FROZEN."""
        request = admin_pb2.FreezeAccountRequest(
            idempotency_key=self._key(idempotency_key),
            user_id=user_id,
            reason=reason,
            operator_id=operator_id,
        )
        rpc = "Admin.FreezeAccount" if frozen else "Admin.UnfreezeAccount"
        response: admin_pb2.AccountState = self.send(rpc, request, timeout=timeout)
        return response

    def adjust(
        self,
        user_id: int,
        asset: common_pb2.Asset.ValueType,
        amount: int,
        *,
        reason: str,
        operator_id: str,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> admin_pb2.AdjustResponse:
        request = admin_pb2.AdjustRequest(
            idempotency_key=self._key(idempotency_key),
            user_id=user_id,
            asset=asset,
            amount=amount,
            reason=reason,
            operator_id=operator_id,
        )
        response: admin_pb2.AdjustResponse = self.send("Admin.Adjust", request, timeout=timeout)
        return response


def balance_of(wallet: common_pb2.Wallet, asset: common_pb2.Asset.ValueType) -> tuple[int, int]:
    """``(available, held)`` of one asset in a wallet (zeros when absent)."""
    for balance in wallet.balances:
        if balance.asset == asset:
            return balance.available, balance.held
    return 0, 0


__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_CONNECTIONS",
    "MAX_PAGES_LIMIT",
    "NO_RETRY",
    "RPCS",
    "LineItemLike",
    "OrderClient",
    "RefundItemLike",
    "RetryHook",
    "RetryPolicy",
    "TlsFiles",
    "balance_of",
    "build_charge_request",
    "build_gift_card_issue_request",
    "build_redeem_coupon_request",
    "build_redeem_gift_card_request",
    "build_refund_request",
    "line_item",
    "new_idempotency_key",
    "refund_item",
]
__all__ += errors.__all__
