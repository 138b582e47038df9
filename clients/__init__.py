"""Callers of the coffer engine: the order-service client (:mod:`clients.order_client`), the
cashier POS CLI (:mod:`clients.pos`) and the load-test harness (:mod:`clients.loadtest`).

The public surface is what ``__all__`` lists here (the client, its retry policy, the request
builders and the typed exceptions of :mod:`clients.errors`); modules whose name starts with an
underscore are private. Importing this package needs only the ``client`` extra (grpcio,
grpcio-status, protobuf, tenacity), and nothing in ``clients`` imports the engine.
"""

from clients import errors
from clients.errors import *  # noqa: F403  (the typed exceptions, re-exported)
from clients.order_client import (
    NO_RETRY,
    OrderClient,
    RetryPolicy,
    TlsFiles,
    balance_of,
    build_charge_request,
    build_gift_card_issue_request,
    build_redeem_coupon_request,
    build_redeem_gift_card_request,
    build_refund_request,
    new_idempotency_key,
)

__all__ = [
    "NO_RETRY",
    "OrderClient",
    "RetryPolicy",
    "TlsFiles",
    "balance_of",
    "build_charge_request",
    "build_gift_card_issue_request",
    "build_redeem_coupon_request",
    "build_redeem_gift_card_request",
    "build_refund_request",
    "new_idempotency_key",
]
__all__ += errors.__all__
