"""One log line per RPC: method, outcome, reason, idempotency key, ids, duration.

The ids are read from the request's own fields when it has them (``user_id``, ``charge_id``,
...). From the request context only the caller's network is logged (an IPv4 /24, an IPv6 /48):
never a phone hash, never a full IP. Cost: a dict and one formatted record per call, built only
when the ``coffer.request`` logger is enabled for INFO. Health checks and reflection are not logged.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from coffer.v1 import engine_pb2
from engine.api.metrics import CallResult, Observer
from engine.process_log import FIELDS_ATTRIBUTE

__all__ = ["ID_FIELDS", "REQUEST_LOG", "caller_network", "log_request", "request_fields"]

logger = logging.getLogger("coffer.request")

#: Request fields worth a place in the log line, when present and set.
ID_FIELDS = (
    "idempotency_key",
    "user_id",
    "charge_id",
    "order_id",
    "merchant_id",
    "transaction_id",
    "template_id",
    "coupon_id",
)
_IPV4_PREFIX_BITS = 24
_IPV6_PREFIX_BITS = 48
_CONTEXT_FIELD = "context"
#: Only coffer's own services are logged ("/coffer.v1.TransactionEngine/Charge").
_LOGGED_PREFIX = f"/{engine_pb2.DESCRIPTOR.package}."
#: Fields the text line shows up front rather than as name=value.
_HEADLINE = frozenset({"method", "outcome", "reason", "code", "duration_ms"})


def caller_network(ip: str) -> str:
    """The caller's network, not its address: ``203.0.113.0/24`` for ``203.0.113.7``."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "invalid"
    bits = _IPV4_PREFIX_BITS if address.version == 4 else _IPV6_PREFIX_BITS
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def request_fields(request: Any) -> dict[str, Any]:
    """The ids a request carries (set fields of :data:`ID_FIELDS`) and the caller's network."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None:
        return {}
    present = descriptor.fields_by_name
    fields: dict[str, Any] = {}
    for name in ID_FIELDS:
        if name in present:
            value = getattr(request, name)
            if value:
                fields[name] = value
    if _CONTEXT_FIELD in present and request.HasField(_CONTEXT_FIELD):
        ip = request.context.ip
        if ip:
            fields["caller_network"] = caller_network(ip)
    return fields


def log_request(request: Any, result: CallResult) -> None:
    """The ``coffer.request`` record of one finished call (when that logger takes INFO)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    duration_ms = round(result.duration_s * 1000, 3)
    fields: dict[str, Any] = {
        "method": result.method,
        "outcome": result.outcome.value,
        "reason": result.reason,
        "code": result.code,
        "duration_ms": duration_ms,
        **request_fields(request),
    }
    details = " ".join(f"{name}={value}" for name, value in fields.items() if name not in _HEADLINE and value)
    logger.info(
        "%s %s%s %.3fms %s",
        result.method,
        result.outcome.value,
        f" {result.reason}" if result.reason else "",
        duration_ms,
        details,
        extra={FIELDS_ATTRIBUTE: fields},
    )


#: The request log's observer (engine.api.metrics.ObservingInterceptor): coffer's own RPCs only;
#: health probes and reflection are not logged (a probe every few seconds is noise).
REQUEST_LOG = Observer(log_request, method_prefix=_LOGGED_PREFIX)
