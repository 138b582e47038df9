"""How a call is retried: only on UNAVAILABLE / ABORTED / DEADLINE_EXCEEDED, a bounded number of
times within a bounded total time, with jittered exponential backoff (tenacity).

The caller hands in one ``attempt`` function that sends the same request object every time, so
every attempt carries the same idempotency key and the engine applies the effect at most once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from clients.errors import CofferError

#: Hard bound on what a caller may configure: nothing retries forever.
MAX_ATTEMPTS_LIMIT = 20

T = TypeVar("T")
#: ``on_retry(rpc, error, attempt)``, called before each retry (for metrics and logs).
RetryHook = Callable[[str, CofferError, int], None]


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


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, CofferError) and error.retryable


def call_with_retries(
    rpc: str, attempt: Callable[[], T], policy: RetryPolicy, on_retry: RetryHook | None
) -> T:
    """``attempt()`` until it succeeds, raises a non-retryable error, or ``policy`` is spent (then the
    last error is raised)."""
    stop = stop_after_attempt(policy.max_attempts)
    if policy.total_timeout_s is not None:
        stop = stop | stop_after_delay(policy.total_timeout_s)  # type: ignore[assignment]

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if isinstance(error, CofferError):
                on_retry(rpc, error, state.attempt_number)

    retrying = Retrying(
        stop=stop,
        wait=wait_random_exponential(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s),
        retry=retry_if_exception(_is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(attempt)
