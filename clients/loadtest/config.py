"""What a harness run does: the operation mix (weights by kind) and the run's parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

from clients.loadtest.credentials import Credentials

#: Every kind of operation the harness knows, with what it does (``--mix`` names).
KINDS: dict[str, str] = {
    "charge": "an immediate Charge mixing cash with points, coins, a gift card and a coupon at random",
    "cash_charge": "an immediate Charge paid from the cash balance alone",
    "refund": "a partial or full Refund of an earlier charge or till redemption",
    "topup": "a payment-channel top-up (Issue top_up)",
    "gift_card_redeem": "a till redemption from a user's gift card (Redeem gift_card)",
    "coupon_claim": "a flash claim on a coupon template with little stock (Issue coupon)",
    "auth_capture": "Charge authorize_only, then a full or partial Capture",
    "auth_void": "Charge authorize_only, then Void",
    "duplicate": "a deliberate retry: the same key again (sequential or concurrent), the same key "
    "with another payload, or a top-up callback repeated under a new key",
    "coupon_redeem": "a till redemption of a user's coupon code (Redeem coupon_code)",
    "points_exchange": "points exchanged for cash (Redeem points_exchange)",
    "quote": "a QuoteCharge (no effect)",
    "wallet": "a GetWallet read",
    "echo": "a grpc.health.v1.Health/Check on the engine: the gRPC floor (no use case, no database)",
}

DEFAULT_MIX = "charge=50,refund=10,topup=10,gift_card_redeem=5,coupon_claim=5,auth_capture=10,duplicate=10"
CHARGE_ONLY_MIX = "charge=100"
CASH_CHARGE_MIX = "cash_charge=100"
#: About a third of the charges carry coupons, points, coins or gift cards (``charge`` and the
#: charges of holds and duplicates), the rest are cash; plus holds, refunds, top-ups and retries.
MIXED_MIX = "cash_charge=40,charge=20,auth_capture=8,auth_void=2,refund=10,topup=10,duplicate=10"
ECHO_MIX = "echo=100"
PRESETS = {
    "default": DEFAULT_MIX,
    "charge-only": CHARGE_ONLY_MIX,
    "cash-charge": CASH_CHARGE_MIX,
    "mixed": MIXED_MIX,
    "echo": ECHO_MIX,
}

MAX_WEIGHT = 1_000_000
MAX_USERS = 1_000_000
MAX_CONCURRENCY = 1024
MAX_DURATION_SECONDS = 24 * 3600
MAX_PROCESSES = 32
MAX_RATE_PER_SECOND = 1_000_000.0


class MixError(ValueError):
    pass


def parse_mix(text: str) -> dict[str, int]:
    """``"charge=50,refund=10"`` (or a preset name) -> weights; a kind left out has weight 0."""
    text = PRESETS.get(text.strip(), text)
    weights: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, separator, raw = part.partition("=")
        name = name.strip()
        if not separator:
            raise MixError(f"{part!r}: expected kind=weight")
        if name not in KINDS:
            raise MixError(f"unknown kind {name!r}; known: {', '.join(KINDS)}")
        if name in weights:
            raise MixError(f"{name!r} appears twice")
        try:
            weight = int(raw)
        except ValueError:
            raise MixError(f"{part!r}: the weight must be a whole number") from None
        if not 0 <= weight <= MAX_WEIGHT:
            raise MixError(f"{part!r}: the weight must be within 0..{MAX_WEIGHT}")
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise MixError("the mix has no kind with a positive weight")
    return {name: weight for name, weight in weights.items() if weight > 0}


def format_mix(weights: dict[str, int]) -> str:
    return ",".join(f"{name}={weight}" for name, weight in weights.items())


@dataclass(frozen=True)
class LoadConfig:
    target: str
    users: int = 200
    concurrency: int = 16
    duration_s: float = 30.0
    mix: dict[str, int] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    #: Deadline of each attempt; generous, because a loaded engine answers slowly.
    timeout_s: float = 30.0
    attempts: int = 5
    seed: int = 1
    #: First user id is ``user_base + 1``; None: a random base so runs never share users.
    user_base: int | None = None
    merchants: int = 20
    #: Requested kinds the engine does not serve fail the run instead of being switched off.
    strict: bool = False
    progress: bool = True
    audit: bool = True
    audit_timeout_s: float = 600.0
    run_id: str = ""
    #: gRPC connections the harness spreads its calls over (an engine with several worker
    #: processes balances connections, not calls).
    connections: int = 4
    #: Load processes, each with its own channels, users and a share of the concurrency (and of
    #: the rate), so the load generator's own GIL is not the bottleneck.
    processes: int = 1
    #: Open loop: operations started on a fixed schedule at this rate (per second, all processes
    #: together), latency measured from the scheduled start. None: closed loop, each caller
    #: starts its next operation when the last one ends.
    rate_per_s: float | None = None
    #: TLS files / token, or a directory of per-role certificates (clients/loadtest/credentials.py).
    credentials: Credentials = field(default_factory=Credentials)
    #: The merchant the till's (``pos``) credential is bound to: redemptions name it. "": any of
    #: the harness's merchants (an engine without roles).
    till_merchant: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"--users must be within 1..{MAX_USERS}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"--concurrency must be within 1..{MAX_CONCURRENCY}")
        if not 0 < self.duration_s <= MAX_DURATION_SECONDS:
            raise ValueError(f"--duration must be within 0..{MAX_DURATION_SECONDS} seconds")
        if self.timeout_s <= 0 or not 1 <= self.attempts <= 20:
            raise ValueError("--timeout must be positive and --attempts within 1..20")
        if not 1 <= self.connections <= 64:
            raise ValueError("--connections must be within 1..64")
        if not 1 <= self.merchants <= 10_000:
            raise ValueError("--merchants must be within 1..10000")
        if not 1 <= self.processes <= min(MAX_PROCESSES, self.concurrency):
            raise ValueError(f"--processes must be within 1..{MAX_PROCESSES} and at most --concurrency")
        if self.processes > self.users:
            raise ValueError("--processes must be at most --users (each process seeds its own users)")
        if self.rate_per_s is not None and not 0 < self.rate_per_s <= MAX_RATE_PER_SECOND:
            raise ValueError(f"--rate must be within 0..{MAX_RATE_PER_SECOND:g} operations per second")
