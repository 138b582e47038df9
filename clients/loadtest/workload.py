"""The harness's world: seeded users, what the engine serves, and one function per operation kind.

Every call goes through :class:`clients.order_client.OrderClient` (so the harness also exercises
the client's deadlines, retries and typed errors) and through :meth:`Recorder.call`, which says
which refusals are expected for that operation. Anything else fails the run.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.errors import CofferError, UnimplementedError
from clients.loadtest.config import LoadConfig
from clients.loadtest.stats import Recorder
from clients.order_client import OrderClient, build_charge_request
from coffer.v1 import admin_pb2, common_pb2, engine_pb2

# Seed amounts per user (fen, points, coins).
SEED_CASH = 1_000_000
SEED_POINTS = 50_000
SEED_COINS = 20_000
SEED_GIFT_CARD = 20_000
SEED_COUPONS_PER_USER = 2
# Coupon templates the run creates: a plentiful wallet coupon, and a scarce flash-claim coupon.
WALLET_COUPON_OFF = 300
FLASH_COUPON_OFF = 500
FLASH_MIN_SPEND = 2_000
#: A charge only carries a coupon when its amount is at least this (above every min spend).
COUPON_MIN_ORDER = 2_500
MAX_COUPON_OFF = max(WALLET_COUPON_OFF, FLASH_COUPON_OFF)
CHARGE_MIN, CHARGE_MAX = 100, 20_000
MAX_REFUNDABLE = 50_000

#: What each kind needs from the engine besides Issue/Charge/Refund/GetWallet.
REQUIRES: dict[str, tuple[str, ...]] = {
    "charge": (),
    "cash_charge": (),
    "refund": (),
    "topup": (),
    "gift_card_redeem": ("gift_cards", "gift_card_redeem"),
    "coupon_claim": ("coupons",),
    "auth_capture": ("capture",),
    "auth_void": ("void",),
    "duplicate": (),
    "coupon_redeem": ("coupons", "coupon_redeem"),
    "points_exchange": ("points_exchange",),
    "quote": ("quote",),
    "wallet": (),
    "echo": (),
}
#: Kinds that touch no user: a mix of only these seeds nothing.
NO_USER_KINDS = frozenset({"echo"})
#: Kinds that use no points, coins, gift card or coupon: a mix of only these seeds cash alone.
CASH_ONLY_KINDS = NO_USER_KINDS | {"cash_charge", "topup", "wallet"}
#: The no-op RPC of the ``echo`` kind, named as the engine's interceptors see it.
ECHO_RPC = "Check"
#: Give each echo channel its own TCP connection, as the order client does for its channels.
ECHO_CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
#: Kinds whose charges may carry coupon / gift-card legs.
CHARGING_KINDS = frozenset({"charge", "refund", "auth_capture", "auth_void", "duplicate"})

CHARGE_EXPECTED = frozenset({"INSUFFICIENT_FUNDS", "GIFT_CARD_INACTIVE"})
#: What an engine answers for an RPC (or a oneof kind) it does not serve yet.
UNIMPLEMENTED_REASONS = frozenset({"NOT_IMPLEMENTED", "UNIMPLEMENTED"})
#: Refusals after which a coupon offered to a charge is known to be untouched.
COUPON_UNTOUCHED = frozenset({"INSUFFICIENT_FUNDS", "GIFT_CARD_INACTIVE"})


@dataclass
class Coupon:
    coupon_id: str
    code: str


@dataclass
class UserState:
    user_id: int
    gift_card: str = ""
    coupons: list[Coupon] = field(default_factory=list)


@dataclass
class Refundable:
    charge_id: str
    remaining: int


def _unimplemented(answer: object) -> bool:
    return isinstance(answer, UnimplementedError)


class World:
    def __init__(
        self,
        config: LoadConfig,
        client: OrderClient,
        recorder: Recorder,
        seed_recorder: Recorder,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.config = config
        self.client = client
        self.recorder = recorder
        self.seed_recorder = seed_recorder
        self.executor = executor
        self.run_id = config.run_id or uuid.uuid4().hex[:8]
        base = config.user_base
        if base is None:
            base = random.SystemRandom().randrange(10**9, 10**15)
        self.user_base = base
        self.users = [UserState(base + index + 1) for index in range(config.users)]
        self.lock = threading.Lock()
        self.refundable: deque[Refundable] = deque(maxlen=MAX_REFUNDABLE)
        self.features: dict[str, bool] = {}
        self.disabled: dict[str, str] = {}
        self.flash_template = ""
        self.flash_stock = 0
        self.flash_claimed = 0
        self.wallet_template = ""
        self._sequence = itertools.count(1)
        self._echo_channels = (
            [
                grpc.insecure_channel(config.target, options=ECHO_CHANNEL_OPTIONS)
                for _ in range(config.connections)
            ]
            if "echo" in config.mix
            else []
        )
        self._health = [health_pb2_grpc.HealthStub(channel) for channel in self._echo_channels]
        #: kind -> operation; it returns whether it succeeded, or None when it had nothing to do
        #: (no gift card, no coupon left) and made no call.
        self.operations: dict[str, Callable[[random.Random], bool | None]] = {
            "charge": self.op_charge,
            "cash_charge": self.op_cash_charge,
            "refund": self.op_refund,
            "topup": self.op_topup,
            "gift_card_redeem": self.op_gift_card_redeem,
            "coupon_claim": self.op_coupon_claim,
            "auth_capture": self.op_auth_capture,
            "auth_void": self.op_auth_void,
            "duplicate": self.op_duplicate,
            "coupon_redeem": self.op_coupon_redeem,
            "points_exchange": self.op_points_exchange,
            "quote": self.op_quote,
            "wallet": self.op_wallet,
            "echo": self.op_echo,
        }

    def close(self) -> None:
        for channel in self._echo_channels:
            channel.close()

    # -- naming ------------------------------------------------------------------------------

    def key(self, label: str) -> str:
        return f"lt-{self.run_id}-{label}-{next(self._sequence)}"

    def merchant(self, rng: random.Random) -> str:
        return f"lt-m{rng.randrange(self.config.merchants)}"

    def till(self, rng: random.Random) -> str:
        """The merchant of a till redemption: the one the till's credential is bound to, if any."""
        return self.config.till_merchant or self.merchant(rng)

    def order_id(self) -> str:
        return f"lt-{self.run_id}-o{next(self._sequence)}"

    # -- seeding -----------------------------------------------------------------------------

    def _seed_call(self, rpc: str, work: Callable[[], Any], *, expected: frozenset[str] = frozenset()) -> Any:
        return self.seed_recorder.call(rpc, work, expected=expected)

    def _probe(self, feature: str, rpc: str, work: Callable[[], Any]) -> None:
        """A feature is served unless the engine answers UNIMPLEMENTED; any other answer (even a
        refusal of the probe's made-up id) means the RPC is there."""
        try:
            work()
        except UnimplementedError:
            self.features[feature] = False
            return
        except CofferError:
            pass
        self.features[feature] = True

    def seed(self) -> None:
        mix = self.config.mix
        if set(mix) <= NO_USER_KINDS:
            return
        instruments = not set(mix) <= CASH_ONLY_KINDS
        wanted = {feature for kind in mix for feature in REQUIRES[kind]}
        charging = bool(CHARGING_KINDS & set(mix))
        if charging:
            wanted |= {"coupons", "gift_cards"}
        first = self.users[0]
        probe_id = f"ch_lt{self.run_id}probe"
        probe_till = self.config.till_merchant or "lt-m0"
        probes: dict[str, tuple[str, Callable[[], Any]]] = {
            "capture": ("Capture", lambda: self.client.capture(probe_id, idempotency_key=self.key("probe"))),
            "void": ("Void", lambda: self.client.void(probe_id, idempotency_key=self.key("probe"))),
            "gift_card_redeem": (
                "Redeem",
                lambda: self.client.redeem_gift_card(
                    "LT-PROBE", 1, probe_till, idempotency_key=self.key("probe")
                ),
            ),
            "coupon_redeem": (
                "Redeem",
                lambda: self.client.redeem_coupon_code(
                    "LT-PROBE", 100, probe_till, idempotency_key=self.key("probe")
                ),
            ),
            "points_exchange": (
                "Redeem",
                lambda: self.client.redeem_points_exchange(
                    first.user_id, 0, idempotency_key=self.key("probe")
                ),
            ),
            "quote": ("QuoteCharge", lambda: self.client.quote(first.user_id, "lt-probe", "lt-m0", 100)),
        }
        for feature, (rpc, work) in probes.items():
            if feature in wanted:
                self._probe(feature, rpc, work)
        if "coupons" in wanted:
            self._create_templates()
        # The first user alone, to learn whether gift cards and coupons are served at all.
        self._seed_user(first, gift_cards="gift_cards" in wanted, instruments=instruments)
        rest = self.users[1:]
        list(
            self.executor.map(
                lambda user: self._seed_user(
                    user, gift_cards="gift_cards" in wanted, instruments=instruments
                ),
                rest,
            )
        )
        if charging:
            self._probe_legs(first)
        for kind in mix:
            missing = [feature for feature in REQUIRES[kind] if not self.features.get(feature, False)]
            if missing:
                self.disabled[kind] = "the engine does not serve " + ", ".join(missing) + " yet"

    def _create_templates(self) -> None:
        users = len(self.users)
        wallet = admin_pb2.CreateCouponTemplateRequest(
            idempotency_key=self.key("tpl-wallet"),
            name=f"loadtest {self.run_id} wallet coupon",
            type=common_pb2.COUPON_TYPE_NO_THRESHOLD,
            amount_off=WALLET_COUPON_OFF,
            total_stock=users * (SEED_COUPONS_PER_USER + 2) + 100,
            per_user_limit=SEED_COUPONS_PER_USER + 2,
            valid_days_after_claim=30,
            stackable=True,
        )
        answer = self._probe_call(
            "coupons", "CreateCouponTemplate", lambda: self.client.create_coupon_template(wallet)
        )
        if answer is None:
            return
        self.wallet_template = answer.template_id
        self.flash_stock = max(1, users // 2)
        flash = admin_pb2.CreateCouponTemplateRequest(
            idempotency_key=self.key("tpl-flash"),
            name=f"loadtest {self.run_id} flash coupon",
            type=common_pb2.COUPON_TYPE_FIXED_OFF,
            amount_off=FLASH_COUPON_OFF,
            min_spend=FLASH_MIN_SPEND,
            total_stock=self.flash_stock,
            per_user_limit=1,
            valid_days_after_claim=30,
            stackable=True,
        )
        answer = self._probe_call(
            "coupons", "CreateCouponTemplate", lambda: self.client.create_coupon_template(flash)
        )
        if answer is not None:
            self.flash_template = answer.template_id

    def _probe_call(self, feature: str, rpc: str, work: Callable[[], Any]) -> Any:
        """A seeding call that also tells whether ``feature`` is served; None when it is not."""
        if self.features.get(feature) is False:
            return None
        answer = self._seed_call(rpc, work, expected=UNIMPLEMENTED_REASONS)
        if _unimplemented(answer):
            self.features[feature] = False
            return None
        if isinstance(answer, CofferError):
            return None
        self.features[feature] = True
        return answer

    def _seed_user(self, user: UserState, *, gift_cards: bool, instruments: bool = True) -> None:
        """Cash for every user; points and coins too unless the mix pays with cash alone."""
        uid = user.user_id
        self._seed_call(
            "Issue",
            lambda: self.client.issue_top_up(
                uid,
                SEED_CASH,
                payment_channel="lt-seed",
                channel_txn_id=f"lt-{self.run_id}-{uid}-cash",
                idempotency_key=self.key("seed-cash"),
            ),
        )
        if not instruments:
            return
        self._seed_call(
            "Issue",
            lambda: self.client.issue_points(
                uid, SEED_POINTS, reason="loadtest", idempotency_key=self.key("seed-pts")
            ),
        )
        self._seed_call(
            "Issue",
            lambda: self.client.issue_coins(
                uid, SEED_COINS, reason="loadtest", idempotency_key=self.key("seed-coins")
            ),
        )
        if gift_cards:
            issued = self._probe_call(
                "gift_cards",
                "Issue",
                lambda: self.client.issue_gift_card(
                    uid,
                    SEED_GIFT_CARD,
                    payment_channel="lt-seed",
                    channel_txn_id=f"lt-{self.run_id}-{uid}-card",
                    idempotency_key=self.key("seed-card"),
                ),
            )
            if issued is not None and issued.HasField("gift_card"):
                user.gift_card = issued.gift_card.code
        if self.wallet_template:
            for _ in range(SEED_COUPONS_PER_USER):
                claimed = self._probe_call(
                    "coupons",
                    "Issue",
                    lambda: self.client.issue_coupon(
                        uid, self.wallet_template, idempotency_key=self.key("seed-cpn")
                    ),
                )
                if claimed is not None:
                    with self.lock:
                        user.coupons.extend(Coupon(c.coupon_id, c.code) for c in claimed.coupons)

    def _probe_legs(self, user: UserState) -> None:
        """One real charge per optional leg kind, on the first user, to learn whether it is served."""
        if user.coupons:
            coupon = user.coupons.pop()
            answer = self._probe_call(
                "coupon_legs",
                "Charge",
                lambda: self.client.charge(
                    user.user_id,
                    self.order_id(),
                    "lt-m0",
                    5_000,
                    coupon_ids=[coupon.coupon_id],
                    idempotency_key=self.key("probe-cpn"),
                ),
            )
            if answer is None:
                user.coupons.append(coupon)
        else:
            self.features["coupon_legs"] = False
        if user.gift_card:
            self._probe_call(
                "gift_card_legs",
                "Charge",
                lambda: self.client.charge(
                    user.user_id,
                    self.order_id(),
                    "lt-m0",
                    1_000,
                    gift_card_codes=[user.gift_card],
                    idempotency_key=self.key("probe-gc"),
                ),
            )
        else:
            self.features["gift_card_legs"] = False

    # -- shared pieces -----------------------------------------------------------------------

    def user(self, rng: random.Random) -> UserState:
        return self.users[rng.randrange(len(self.users))]

    def _take_coupon(self, user: UserState) -> Coupon | None:
        with self.lock:
            return user.coupons.pop() if user.coupons else None

    def _give_back_coupon(self, user: UserState, coupon: Coupon | None) -> None:
        if coupon is not None:
            with self.lock:
                user.coupons.append(coupon)

    def _add_refundable(self, charge_id: str, amount: int) -> None:
        if amount > 0:
            with self.lock:
                self.refundable.append(Refundable(charge_id, amount))

    def charge_request(
        self, rng: random.Random, user: UserState, *, authorize_only: bool = False
    ) -> tuple[engine_pb2.ChargeRequest, Coupon | None]:
        """A charge of a random amount with random legs, always within the engine's rules."""
        amount = rng.randint(CHARGE_MIN, CHARGE_MAX)
        coupon = None
        if self.features.get("coupon_legs") and amount >= COUPON_MIN_ORDER and rng.random() < 0.15:
            coupon = self._take_coupon(user)
        after = amount - (MAX_COUPON_OFF if coupon else 0)
        points = rng.randint(1, after * 2 // 5) if rng.random() < 0.3 else 0
        coins = rng.randint(1, max(1, after // 5)) if rng.random() < 0.2 else 0
        cards = (
            [user.gift_card]
            if user.gift_card and self.features.get("gift_card_legs") and rng.random() < 0.2
            else []
        )
        request = build_charge_request(
            user.user_id,
            self.order_id(),
            self.merchant(rng),
            amount,
            idempotency_key=self.key("ch"),
            points=points,
            coins=coins,
            gift_card_codes=cards,
            coupon_ids=[coupon.coupon_id] if coupon else [],
            authorize_only=authorize_only,
        )
        return request, coupon

    def _send_charge(self, request: engine_pb2.ChargeRequest) -> engine_pb2.ChargeResponse | CofferError:
        answer: engine_pb2.ChargeResponse | CofferError = self.recorder.call(
            "Charge", lambda: self.client.send("TransactionEngine.Charge", request), expected=CHARGE_EXPECTED
        )
        return answer

    def _after_charge(
        self, user: UserState, coupon: Coupon | None, answer: engine_pb2.ChargeResponse | CofferError
    ) -> None:
        if isinstance(answer, CofferError) and answer.reason in COUPON_UNTOUCHED:
            self._give_back_coupon(user, coupon)

    # -- operations (each returns whether it succeeded, None when it had nothing to do) --------

    def op_charge(self, rng: random.Random) -> bool:
        user = self.user(rng)
        request, coupon = self.charge_request(rng, user)
        answer = self._send_charge(request)
        self._after_charge(user, coupon, answer)
        if isinstance(answer, CofferError):
            return False
        if answer.status == common_pb2.CHARGE_STATUS_CAPTURED:
            self._add_refundable(answer.charge_id, request.amount - answer.breakdown.discount)
        return True

    def op_cash_charge(self, rng: random.Random) -> bool:
        user = self.user(rng)
        amount = rng.randint(CHARGE_MIN, CHARGE_MAX)
        request = build_charge_request(
            user.user_id, self.order_id(), self.merchant(rng), amount, idempotency_key=self.key("cc")
        )
        answer = self._send_charge(request)
        if isinstance(answer, CofferError):
            return False
        if answer.status == common_pb2.CHARGE_STATUS_CAPTURED:
            self._add_refundable(answer.charge_id, amount)
        return True

    def op_echo(self, rng: random.Random) -> bool:
        """The gRPC floor: the engine's own server and interceptors, no use case behind them. A
        transport error propagates (the worker reports it as a harness error): the floor must
        not fail."""
        stub = self._health[rng.randrange(len(self._health))]
        answer = self.recorder.call(
            ECHO_RPC, lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=self.config.timeout_s)
        )
        return not isinstance(answer, CofferError)

    def op_refund(self, rng: random.Random) -> bool:
        with self.lock:
            item = self.refundable.popleft() if self.refundable else None
        if item is None:
            # Nothing captured is waiting: make a charge to refund.
            if not self.op_charge(rng):
                return False
            with self.lock:
                item = self.refundable.pop() if self.refundable else None
            if item is None:
                return False
        amount = item.remaining if rng.random() < 0.4 else rng.randint(1, item.remaining)
        answer = self.recorder.call(
            "Refund",
            lambda: self.client.refund(
                item.charge_id, amount, reason="loadtest", idempotency_key=self.key("rf")
            ),
        )
        if isinstance(answer, CofferError):
            return False
        if item.remaining > amount:
            self._add_refundable(item.charge_id, item.remaining - amount)
        return True

    def op_topup(self, rng: random.Random) -> bool:
        user = self.user(rng)
        key = self.key("top")
        answer = self.recorder.call(
            "Issue",
            lambda: self.client.issue_top_up(
                user.user_id,
                rng.randint(1_000, 200_000),
                payment_channel="lt-pay",
                channel_txn_id=key,
                idempotency_key=key,
            ),
        )
        return not isinstance(answer, CofferError)

    def op_gift_card_redeem(self, rng: random.Random) -> bool | None:
        user = self.user(rng)
        if not user.gift_card:
            return None
        amount = rng.randint(100, 3_000)
        answer = self.recorder.call(
            "Redeem",
            lambda: self.client.redeem_gift_card(
                user.gift_card, amount, self.till(rng), idempotency_key=self.key("gcr")
            ),
            expected={"INSUFFICIENT_FUNDS", "GIFT_CARD_INACTIVE"},
        )
        if isinstance(answer, CofferError):
            return False
        self._add_refundable(answer.transaction_id, answer.amount or amount)
        return True

    def op_coupon_claim(self, rng: random.Random) -> bool | None:
        if not self.flash_template:
            return None
        user = self.user(rng)
        answer = self.recorder.call(
            "Issue",
            lambda: self.client.issue_coupon(
                user.user_id, self.flash_template, idempotency_key=self.key("flash")
            ),
            expected={"STOCK_EXHAUSTED", "CLAIM_LIMIT_REACHED"},
        )
        if isinstance(answer, CofferError):
            return False
        with self.lock:
            if not answer.replayed:
                self.flash_claimed += len(answer.coupons)
            user.coupons.extend(Coupon(c.coupon_id, c.code) for c in answer.coupons)
            over = self.flash_claimed > self.flash_stock
        if over:
            self.recorder.violation(
                f"flash template {self.flash_template}: {self.flash_claimed} claimed "
                f"of a stock of {self.flash_stock}"
            )
        return True

    def _authorize(self, rng: random.Random) -> tuple[UserState, engine_pb2.ChargeResponse | None]:
        user = self.user(rng)
        request, coupon = self.charge_request(rng, user, authorize_only=True)
        answer = self._send_charge(request)
        self._after_charge(user, coupon, answer)
        if isinstance(answer, CofferError):
            return user, None
        if answer.status != common_pb2.CHARGE_STATUS_AUTHORIZED:
            self.recorder.violation(
                f"authorize_only charge {answer.charge_id} came back with status {answer.status}"
            )
            return user, None
        return user, answer

    def op_auth_capture(self, rng: random.Random) -> bool:
        _, authorized = self._authorize(rng)
        if authorized is None:
            return False
        breakdown = authorized.breakdown
        paid = (
            breakdown.points_value + breakdown.coins_used + breakdown.gift_card_amount + breakdown.cash_amount
        )
        amount = 0 if rng.random() < 0.5 or paid <= 1 else rng.randint(1, paid)
        answer = self.recorder.call(
            "Capture",
            lambda: self.client.capture(authorized.charge_id, amount, idempotency_key=self.key("cap")),
        )
        if isinstance(answer, CofferError):
            return False
        self._add_refundable(answer.charge.charge_id, answer.charge.captured_amount)
        return True

    def op_auth_void(self, rng: random.Random) -> bool:
        _, authorized = self._authorize(rng)
        if authorized is None:
            return False
        answer = self.recorder.call(
            "Void", lambda: self.client.void(authorized.charge_id, idempotency_key=self.key("void"))
        )
        return not isinstance(answer, CofferError)

    def op_coupon_redeem(self, rng: random.Random) -> bool | None:
        user = self.user(rng)
        coupon = self._take_coupon(user)
        if coupon is None or not coupon.code:
            return None
        answer = self.recorder.call(
            "Redeem",
            lambda: self.client.redeem_coupon_code(
                coupon.code,
                rng.randint(COUPON_MIN_ORDER, CHARGE_MAX),
                self.till(rng),
                idempotency_key=self.key("cpr"),
            ),
        )
        return not isinstance(answer, CofferError)

    def op_points_exchange(self, rng: random.Random) -> bool:
        user = self.user(rng)
        answer = self.recorder.call(
            "Redeem",
            lambda: self.client.redeem_points_exchange(
                user.user_id, rng.randint(100, 2_000), idempotency_key=self.key("pex")
            ),
            expected={"EXCHANGE_LIMIT_REACHED", "INSUFFICIENT_FUNDS"},
        )
        return not isinstance(answer, CofferError)

    def op_quote(self, rng: random.Random) -> bool:
        user = self.user(rng)
        amount = rng.randint(CHARGE_MIN, CHARGE_MAX)
        answer = self.recorder.call(
            "QuoteCharge",
            lambda: self.client.quote(user.user_id, self.order_id(), self.merchant(rng), amount),
        )
        return not isinstance(answer, CofferError)

    def op_wallet(self, rng: random.Random) -> bool:
        user = self.user(rng)
        answer = self.recorder.call("GetWallet", lambda: self.client.get_wallet(user.user_id))
        return not isinstance(answer, CofferError)

    # -- deliberate duplicates -----------------------------------------------------------------

    def op_duplicate(self, rng: random.Random) -> bool:
        variant = rng.choice(("sequential", "concurrent", "reuse", "callback"))
        self.recorder.count(f"duplicate_{variant}")
        if variant == "callback":
            return self._duplicate_callback(rng)
        user = self.user(rng)
        request, coupon = self.charge_request(rng, user)
        if variant == "concurrent":
            futures = [self.executor.submit(self._send_charge, request) for _ in range(2)]
            answers = [future.result() for future in futures]
        else:
            answers = [self._send_charge(request)]
        first = answers[0]
        self._after_charge(user, coupon, first)
        if variant == "sequential":
            answers.append(self._send_charge(request))
        successes = [answer for answer in answers if not isinstance(answer, CofferError)]
        if successes:
            self._check_same_charge(request, successes, require_replay=len(answers) - 1)
            original = successes[0]
            if original.status == common_pb2.CHARGE_STATUS_CAPTURED:
                self._add_refundable(original.charge_id, request.amount - original.breakdown.discount)
        if variant == "reuse" and successes:
            changed = engine_pb2.ChargeRequest()
            changed.CopyFrom(request)
            changed.amount += 1
            answer = self.recorder.call(
                "Charge",
                lambda: self.client.send("TransactionEngine.Charge", changed),
                expected={"IDEMPOTENCY_KEY_REUSED"},
            )
            if not isinstance(answer, CofferError):
                self.recorder.violation(
                    f"key {request.idempotency_key} reused with another amount was accepted: "
                    f"{answer.charge_id}"
                )
        return bool(successes)

    def _check_same_charge(
        self,
        request: engine_pb2.ChargeRequest,
        successes: list[engine_pb2.ChargeResponse],
        require_replay: int,
    ) -> None:
        ids = {answer.charge_id for answer in successes}
        originals = [answer for answer in successes if not answer.replayed]
        key = request.idempotency_key
        if len(ids) > 1:
            self.recorder.violation(f"key {key} produced {len(ids)} charges: {sorted(ids)}")
        if len(originals) > 1:
            self.recorder.violation(f"key {key} executed {len(originals)} times (replayed=false on each)")
        if len(successes) == 2 and require_replay and not any(answer.replayed for answer in successes):
            self.recorder.violation(f"key {key}: the second answer was not marked replayed")

    def _duplicate_callback(self, rng: random.Random) -> bool:
        """A payment callback delivered twice under new keys: replayed, then a conflict."""
        user = self.user(rng)
        txn = self.key("cb")
        amount = rng.randint(1_000, 50_000)

        def top_up(value: int, label: str) -> Callable[[], engine_pb2.IssueResponse]:
            return lambda: self.client.issue_top_up(
                user.user_id,
                value,
                payment_channel="lt-pay",
                channel_txn_id=txn,
                idempotency_key=self.key(label),
            )

        first = self.recorder.call("Issue", top_up(amount, "cb1"))
        if isinstance(first, CofferError):
            return False
        again = self.recorder.call("Issue", top_up(amount, "cb2"))
        if isinstance(again, CofferError):
            return False
        if not again.replayed or again.transaction_id != first.transaction_id:
            self.recorder.violation(
                f"top-up {txn} repeated under a new key: replayed={again.replayed}, "
                f"transaction {again.transaction_id} vs {first.transaction_id}"
            )
        conflict = self.recorder.call("Issue", top_up(amount + 1, "cb3"), expected={"CHANNEL_TXN_CONFLICT"})
        if not isinstance(conflict, CofferError):
            self.recorder.violation(f"top-up {txn} repeated with another amount was accepted")
        return True
