"""The order-service client: a typed wrapper over the ``coffer.v1`` stubs (CONTRACT §7).

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

import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from clients.errors import *  # noqa: F403  (re-exported: callers import the exceptions from here)
from clients.errors import CofferError, from_rpc_error
from coffer.v1 import admin_pb2, admin_pb2_grpc, common_pb2, engine_pb2, engine_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 5.0
#: Hard bounds on what a caller may configure: nothing retries forever.
MAX_ATTEMPTS_LIMIT = 20
MAX_PAGES_LIMIT = 10_000
MAX_CONNECTIONS = 64

#: Reconnect quickly after the engine restarts (gRPC's own default backoff grows to 120 s).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)

Response = TypeVar("Response", bound=Message)
RetryHook = Callable[[str, CofferError, int], None]

LineItemLike = common_pb2.LineItem | tuple[str, int, int] | tuple[str, str, int, int]
RefundItemLike = engine_pb2.RefundItem | tuple[str, int]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a call is retried (only on UNAVAILABLE / ABORTED / DEADLINE_EXCEEDED).

    The wait before attempt ``n + 1`` is uniform in ``[0, min(max_backoff_s, initial_backoff_s * 2**n)]``
    ("full jitter"), so many clients retrying at once spread out instead of stampeding.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    #: Upper bound on the whole call, attempts and waits included (None: attempts bound it alone).
    total_timeout_s: float | None = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(f"max_attempts must be within 1..{MAX_ATTEMPTS_LIMIT}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("backoff must satisfy 0 <= initial_backoff_s <= max_backoff_s")
        if self.total_timeout_s is not None and self.total_timeout_s <= 0:
            raise ValueError("total_timeout_s must be positive")


NO_RETRY = RetryPolicy(max_attempts=1)


def new_idempotency_key(prefix: str = "oc") -> str:
    """A fresh key (``[A-Za-z0-9._:-]``, well under 128 characters)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, CofferError) and error.retryable


# Request builders: shared by the client methods and by callers that journal a request before
# sending it (the POS CLI), so what is stored is exactly what is sent.


def line_item(item: LineItemLike) -> common_pb2.LineItem:
    """``LineItem``, ``(sku, unit_price, quantity)`` or ``(sku, category, unit_price, quantity)``."""
    if isinstance(item, common_pb2.LineItem):
        return item
    if len(item) == 3:
        sku, unit_price, quantity = item
        return common_pb2.LineItem(sku=sku, unit_price=unit_price, quantity=quantity)
    sku, category, unit_price, quantity = item
    return common_pb2.LineItem(sku=sku, category=category, unit_price=unit_price, quantity=quantity)


def refund_item(item: RefundItemLike) -> engine_pb2.RefundItem:
    if isinstance(item, engine_pb2.RefundItem):
        return item
    sku, quantity = item
    return engine_pb2.RefundItem(sku=sku, quantity=quantity)


def build_charge_request(
    user_id: int,
    order_id: str,
    merchant_id: str,
    amount: int,
    *,
    idempotency_key: str,
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
    currency: str = "",
) -> engine_pb2.ChargeRequest:
    return engine_pb2.ChargeRequest(
        idempotency_key=idempotency_key,
        user_id=user_id,
        order_id=order_id,
        merchant_id=merchant_id,
        channel_id=channel_id,
        amount=amount,
        items=[line_item(item) for item in items],
        coupon_ids=list(coupon_ids),
        points=points,
        coins=coins,
        gift_card_codes=list(gift_card_codes),
        authorize_only=authorize_only,
        step_up_verified=step_up_verified,
        context=context,
        currency=currency,
        business_line=business_line,
    )


def build_refund_request(
    charge_id: str,
    amount: int = 0,
    *,
    idempotency_key: str,
    items: Iterable[RefundItemLike] = (),
    reason: str = "",
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.RefundRequest:
    return engine_pb2.RefundRequest(
        idempotency_key=idempotency_key,
        charge_id=charge_id,
        amount=amount,
        items=[refund_item(item) for item in items],
        reason=reason,
        context=context,
        currency=currency,
    )


def build_redeem_coupon_request(
    code: str,
    order_amount: int,
    merchant_id: str,
    *,
    idempotency_key: str,
    items: Iterable[LineItemLike] = (),
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.RedeemRequest:
    return engine_pb2.RedeemRequest(
        idempotency_key=idempotency_key,
        merchant_id=merchant_id,
        context=context,
        currency=currency,
        coupon_code=engine_pb2.CouponCodeRedemption(
            code=code, order_amount=order_amount, items=[line_item(item) for item in items]
        ),
    )


def build_redeem_gift_card_request(
    code: str,
    amount: int,
    merchant_id: str,
    *,
    idempotency_key: str,
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.RedeemRequest:
    return engine_pb2.RedeemRequest(
        idempotency_key=idempotency_key,
        merchant_id=merchant_id,
        context=context,
        currency=currency,
        gift_card=engine_pb2.GiftCardRedemption(code=code, amount=amount),
    )


#: "Service.Method" -> (service, request type) for :meth:`OrderClient.send`.
RPCS: dict[str, tuple[str, type[Message]]] = {
    "TransactionEngine.Issue": ("engine", engine_pb2.IssueRequest),
    "TransactionEngine.Charge": ("engine", engine_pb2.ChargeRequest),
    "TransactionEngine.Capture": ("engine", engine_pb2.CaptureRequest),
    "TransactionEngine.Void": ("engine", engine_pb2.VoidRequest),
    "TransactionEngine.Refund": ("engine", engine_pb2.RefundRequest),
    "TransactionEngine.Redeem": ("engine", engine_pb2.RedeemRequest),
    "TransactionEngine.QuoteCharge": ("engine", engine_pb2.ChargeRequest),
    "TransactionEngine.GetWallet": ("engine", engine_pb2.GetWalletRequest),
    "TransactionEngine.GetCharge": ("engine", engine_pb2.GetChargeRequest),
    "TransactionEngine.ListTransactions": ("engine", engine_pb2.ListTransactionsRequest),
    "TransactionEngine.GetGiftCard": ("engine", engine_pb2.GetGiftCardRequest),
    "Admin.CreateCouponTemplate": ("admin", admin_pb2.CreateCouponTemplateRequest),
    "Admin.CreateActivity": ("admin", admin_pb2.CreateActivityRequest),
    "Admin.FreezeAccount": ("admin", admin_pb2.FreezeAccountRequest),
    "Admin.UnfreezeAccount": ("admin", admin_pb2.FreezeAccountRequest),
    "Admin.FreezeCoupon": ("admin", admin_pb2.FreezeCouponRequest),
    "Admin.UnfreezeCoupon": ("admin", admin_pb2.FreezeCouponRequest),
    "Admin.Adjust": ("admin", admin_pb2.AdjustRequest),
    "Admin.Audit": ("admin", admin_pb2.AuditRequest),
}


class OrderClient:
    """A synchronous, thread-safe client for ``TransactionEngine`` and ``Admin``.

    ``target`` is ``host:port`` (plaintext) unless ``credentials`` are given; pass ``channel`` to
    reuse one you built. ``timeout`` is the default deadline of every attempt, ``retry`` the
    default :class:`RetryPolicy`; both can be overridden per call. ``on_retry(rpc, error,
    attempt)`` is called before each retry (for metrics and logs).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        key_prefix: str = "oc",
        on_retry: RetryHook | None = None,
        connections: int = 1,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be within 1..{MAX_CONNECTIONS}")
        self.target = target
        self._owns_channel = channel is None
        if channel is None:
            # Several connections let an engine running several worker processes on one port
            # (COFFER_WORKERS, SO_REUSEPORT) spread the calls: the kernel balances connections,
            # not calls. Each channel gets its own subchannel, hence its own TCP connection.
            options = (*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1 if connections > 1 else 0))
            channels = [
                grpc.insecure_channel(target, options=options)
                if credentials is None
                else grpc.secure_channel(target, credentials, options=options)
                for _ in range(connections)
            ]
        else:
            channels = [channel]
        self._channels = channels
        self.channel = channels[0]
        self._stubs = [
            (engine_pb2_grpc.TransactionEngineStub(each), admin_pb2_grpc.AdminStub(each)) for each in channels
        ]
        self._next_stub = itertools.cycle(range(len(channels)))
        self.engine, self.admin = self._stubs[0]
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata = tuple(metadata)
        self.key_prefix = key_prefix
        self.on_retry = on_retry

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_channel:
            for channel in self._channels:
                channel.close()

    def __enter__(self) -> OrderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def new_key(self) -> str:
        return new_idempotency_key(self.key_prefix)

    def _key(self, idempotency_key: str | None) -> str:
        return idempotency_key if idempotency_key else self.new_key()

    def _stub_method(self, rpc: str) -> Callable[..., Any]:
        service, _ = RPCS[rpc]
        engine, admin = self._stubs[next(self._next_stub)]
        stub = engine if service == "engine" else admin
        return getattr(stub, rpc.split(".", 1)[1])  # type: ignore[no-any-return]

    def send(
        self,
        rpc: str,
        request: Message,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Call ``rpc`` ("TransactionEngine.Charge", "Admin.Audit", ...) with a prepared request.

        Every typed method ends here: one deadline per attempt, retries on the retryable codes
        only, the same request object (hence the same idempotency key) on every attempt.
        """
        if rpc not in RPCS:
            raise ValueError(f"unknown RPC {rpc!r}")
        expected = RPCS[rpc][1]
        if not isinstance(request, expected):
            raise TypeError(f"{rpc} takes {expected.__name__}, not {type(request).__name__}")
        method = self._stub_method(rpc)
        per_attempt = self.timeout if timeout is None else timeout
        if per_attempt <= 0:
            raise ValueError("timeout must be positive")
        policy = retry or self.retry
        stop = stop_after_attempt(policy.max_attempts)
        if policy.total_timeout_s is not None:
            stop = stop | stop_after_delay(policy.total_timeout_s)  # type: ignore[assignment]

        def before_sleep(state: RetryCallState) -> None:
            if self.on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if isinstance(error, CofferError):
                    self.on_retry(rpc, error, state.attempt_number)

        def attempt() -> Any:
            try:
                return method(request, timeout=per_attempt, metadata=self.metadata)
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None

        retrying = Retrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s),
            retry=retry_if_exception(_is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)

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
        return self.issue(
            engine_pb2.IssueRequest(
                idempotency_key=self._key(idempotency_key),
                user_id=user_id,
                context=context,
                gift_card=engine_pb2.GiftCardIssue(
                    amount=amount,
                    code=code,
                    payment_channel=payment_channel,
                    channel_txn_id=channel_txn_id,
                    ttl_days=ttl_days,
                ),
            ),
            timeout=timeout,
        )

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
        """The CONTRACT §8 invariant report (every shard unless ``shard`` is given)."""
        request = admin_pb2.AuditRequest() if shard is None else admin_pb2.AuditRequest(shard=shard)
        response: admin_pb2.AuditReport = self.send("Admin.Audit", request, timeout=timeout)
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
