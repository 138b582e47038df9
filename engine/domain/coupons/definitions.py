"""Coupon templates and marketing activities as operators define them, with the validation
that refuses a nonsensical definition field by field (INVALID_ARGUMENT + BadRequest)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.commands import RequestContext
from engine.domain.coupons.rules import CouponRules, CouponScope, CouponType
from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.money import BPS_PER_WHOLE, require_non_negative_amount, require_positive_amount
from engine.domain.validation import require_idempotency_key, require_reference

MICROSECONDS_PER_DAY = 86_400 * 1_000_000
#: Bounds on definitions (every list and number in the engine has one).
MAX_TOTAL_STOCK = 1_000_000_000
MAX_PER_USER_LIMIT = 1_000
MAX_VALID_DAYS = 3_650
MAX_SCOPE_ENTRIES = 200
MAX_REWARDS = 10
MAX_REWARD_QUANTITY = 10
MAX_COUPONS_PER_BUNDLE = 20
MAX_LIST_ENTRIES = 10_000
MAX_MEMBER_LEVEL = 1_000
MAX_POINTS_TTL_DAYS = 36_500
DEFAULT_NEW_USER_DAYS = 30


@dataclass(frozen=True)
class Eligibility:
    new_users_only: bool = False
    #: A "new user" registered at most this many days ago (0 means 30).
    new_user_days: int = 0
    min_member_level: int = 0


@dataclass(frozen=True)
class CreateCouponTemplateCommand:
    idempotency_key: str
    name: str
    #: ``None`` when the request named no type (COUPON_TYPE_UNSPECIFIED).
    type: CouponType | None
    amount_off: int = 0
    discount_bps: int = 0
    min_spend: int = 0
    max_discount: int = 0
    total_stock: int = 0
    #: 0 means 1.
    per_user_limit: int = 0
    valid_from_us: int | None = None
    valid_until_us: int | None = None
    valid_days_after_claim: int = 0
    scope: CouponScope = field(default_factory=CouponScope)
    stackable: bool = False
    restore_on_refund: bool = True
    eligibility: Eligibility = field(default_factory=Eligibility)


@dataclass(frozen=True)
class CouponTemplate:
    """A stored template: what a claim, a charge and a refund need to know."""

    template_id: str
    name: str
    rules: CouponRules
    total_stock: int
    per_user_limit: int
    valid_from_us: int | None
    valid_until_us: int | None
    valid_days_after_claim: int
    restore_on_refund: bool
    eligibility: Eligibility

    def expires_at_us(self, claimed_at_us: int) -> int | None:
        """The end of a coupon claimed at ``claimed_at_us``: the absolute end, ``N`` days after
        the claim, or the earlier of the two when both are set."""
        ends = []
        if self.valid_until_us is not None:
            ends.append(self.valid_until_us)
        if self.valid_days_after_claim:
            ends.append(claimed_at_us + self.valid_days_after_claim * MICROSECONDS_PER_DAY)
        return min(ends) if ends else None


def _require_list(name: str, values: tuple[str, ...], limit: int) -> None:
    if len(values) > limit:
        raise invalid_argument(name, f"at most {limit} entries")
    for index, value in enumerate(values):
        require_reference(f"{name}[{index}]", value, required=True)


def _require_within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise invalid_argument(name, f"must be within {low}..{high}")


def validate_template(command: CreateCouponTemplateCommand) -> None:
    """Everything that can be judged without the clock (see :func:`validate_template_now`)."""
    require_idempotency_key(command.idempotency_key)
    require_reference("name", command.name, required=True)
    kind = command.type
    if kind is None:
        raise invalid_argument("type", "name a type: FIXED_OFF, PERCENT_OFF or NO_THRESHOLD")
    require_non_negative_amount("min_spend", command.min_spend)
    require_non_negative_amount("max_discount", command.max_discount)
    require_non_negative_amount("amount_off", command.amount_off)
    if kind is CouponType.PERCENT_OFF:
        _require_within("discount_bps", command.discount_bps, 1, BPS_PER_WHOLE)
        if command.amount_off:
            raise invalid_argument("amount_off", "a PERCENT_OFF coupon takes discount_bps, not amount_off")
    else:
        require_positive_amount("amount_off", command.amount_off)
        if command.discount_bps:
            raise invalid_argument(
                "discount_bps", f"only PERCENT_OFF coupons take discount_bps, not {kind.value}"
            )
        if command.max_discount:
            raise invalid_argument("max_discount", f"only PERCENT_OFF coupons are capped, not {kind.value}")
    if kind is CouponType.FIXED_OFF and command.min_spend < command.amount_off:
        raise invalid_argument(
            "min_spend",
            "a FIXED_OFF (满减) threshold must be at least its amount_off; use NO_THRESHOLD for none",
        )
    if kind is CouponType.NO_THRESHOLD and command.min_spend:
        raise invalid_argument("min_spend", "a NO_THRESHOLD coupon has no minimum spend")
    _require_within("total_stock", command.total_stock, 1, MAX_TOTAL_STOCK)
    _require_within("per_user_limit", command.per_user_limit, 0, MAX_PER_USER_LIMIT)
    _require_within("valid_days_after_claim", command.valid_days_after_claim, 0, MAX_VALID_DAYS)
    if command.valid_until_us is None and not command.valid_days_after_claim:
        raise invalid_argument(
            "valid_until", "a coupon needs a validity: valid_until, valid_days_after_claim, or both"
        )
    if (
        command.valid_from_us is not None
        and command.valid_until_us is not None
        and command.valid_until_us <= command.valid_from_us
    ):
        raise invalid_argument("valid_until", "must be after valid_from")
    _require_list("scope.categories", command.scope.categories, MAX_SCOPE_ENTRIES)
    _require_list("scope.merchants", command.scope.merchants, MAX_SCOPE_ENTRIES)
    _require_list("scope.business_lines", command.scope.business_lines, MAX_SCOPE_ENTRIES)
    _require_within("eligibility.new_user_days", command.eligibility.new_user_days, 0, MAX_VALID_DAYS)
    _require_within("eligibility.min_member_level", command.eligibility.min_member_level, 0, MAX_MEMBER_LEVEL)


def validate_template_now(command: CreateCouponTemplateCommand, now_us: int) -> None:
    if command.valid_until_us is not None and command.valid_until_us <= now_us:
        raise invalid_argument("valid_until", "has already passed")


def template_of(template_id: str, command: CreateCouponTemplateCommand) -> CouponTemplate:
    """The stored form of a validated definition."""
    kind = command.type
    if kind is None:
        raise invalid_argument("type", "name a type")
    return CouponTemplate(
        template_id=template_id,
        name=command.name,
        rules=CouponRules(
            type=kind,
            amount_off=command.amount_off,
            discount_bps=command.discount_bps,
            min_spend=command.min_spend,
            max_discount=command.max_discount,
            scope=command.scope,
            stackable=command.stackable,
        ),
        total_stock=command.total_stock,
        per_user_limit=command.per_user_limit or 1,
        valid_from_us=command.valid_from_us,
        valid_until_us=command.valid_until_us,
        valid_days_after_claim=command.valid_days_after_claim,
        restore_on_refund=command.restore_on_refund,
        eligibility=command.eligibility,
    )


def is_new_user(context: RequestContext, days: int, now_us: int) -> bool:
    """Registered at most ``days`` (0 → 30) days ago; an unknown registration is not new."""
    if context.registered_at_us is None:
        return False
    window = (days or DEFAULT_NEW_USER_DAYS) * MICROSECONDS_PER_DAY
    return now_us - context.registered_at_us <= window


def claim_refusal(template: CouponTemplate, context: RequestContext, now_us: int) -> CofferError | None:
    """Why this user may not claim ``template`` now (window, eligibility), or ``None``."""
    metadata = {"template_id": template.template_id}
    if template.valid_from_us is not None and now_us < template.valid_from_us:
        return CofferError(
            Reason.COUPON_NOT_ACTIVE, "the template's claim window has not opened", metadata=metadata
        )
    if template.valid_until_us is not None and now_us >= template.valid_until_us:
        return CofferError(Reason.COUPON_EXPIRED, "the template's validity has ended", metadata=metadata)
    rule = ""
    if template.eligibility.new_users_only and not is_new_user(
        context, template.eligibility.new_user_days, now_us
    ):
        rule = "new_users_only"
    elif context.member_level < template.eligibility.min_member_level:
        rule = "min_member_level"
    if rule:
        return CofferError(
            Reason.COUPON_NOT_APPLICABLE,
            f"this user is not eligible for the template ({rule})",
            metadata={**metadata, "rule": rule},
        )
    return None


@dataclass(frozen=True)
class ActivityReward:
    template_id: str = ""
    #: Coupons of ``template_id`` granted (0 with a template means 1).
    quantity: int = 0
    points: int = 0
    #: 0: the points never expire.
    points_ttl_days: int = 0


@dataclass(frozen=True)
class ActivityRules:
    device_blacklist: tuple[str, ...] = ()
    #: When non-empty, the request's ``ip_city`` must be one of these.
    ip_cities: tuple[str, ...] = ()
    new_users_only: bool = False
    min_member_level: int = 0
    phone_blacklist: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateActivityCommand:
    idempotency_key: str
    name: str
    rewards: tuple[ActivityReward, ...]
    rules: ActivityRules = field(default_factory=ActivityRules)
    valid_from_us: int | None = None
    valid_until_us: int | None = None


@dataclass(frozen=True)
class Activity:
    activity_id: str
    name: str
    rewards: tuple[ActivityReward, ...]
    rules: ActivityRules
    valid_from_us: int | None
    valid_until_us: int | None


def validate_activity(command: CreateActivityCommand) -> None:
    require_idempotency_key(command.idempotency_key)
    require_reference("name", command.name, required=True)
    if not command.rewards:
        raise invalid_argument("rewards", "an activity grants at least one reward")
    if len(command.rewards) > MAX_REWARDS:
        raise invalid_argument("rewards", f"at most {MAX_REWARDS} rewards")
    coupons = 0
    for index, reward in enumerate(command.rewards):
        name = f"rewards[{index}]"
        require_reference(f"{name}.template_id", reward.template_id, required=False)
        _require_within(f"{name}.quantity", reward.quantity, 0, MAX_REWARD_QUANTITY)
        require_non_negative_amount(f"{name}.points", reward.points)
        _require_within(f"{name}.points_ttl_days", reward.points_ttl_days, 0, MAX_POINTS_TTL_DAYS)
        if not reward.template_id and reward.quantity:
            raise invalid_argument(f"{name}.quantity", "a quantity needs a template_id")
        if not reward.template_id and not reward.points:
            raise invalid_argument(name, "grants nothing: give a template_id or points")
        if reward.template_id:
            coupons += reward.quantity or 1
    if coupons > MAX_COUPONS_PER_BUNDLE:
        raise invalid_argument("rewards", f"at most {MAX_COUPONS_PER_BUNDLE} coupons per bundle")
    rules = command.rules
    _require_list("rules.device_blacklist", rules.device_blacklist, MAX_LIST_ENTRIES)
    _require_list("rules.ip_cities", rules.ip_cities, MAX_SCOPE_ENTRIES)
    _require_list("rules.phone_blacklist", rules.phone_blacklist, MAX_LIST_ENTRIES)
    _require_within("rules.min_member_level", rules.min_member_level, 0, MAX_MEMBER_LEVEL)
    if (
        command.valid_from_us is not None
        and command.valid_until_us is not None
        and command.valid_until_us <= command.valid_from_us
    ):
        raise invalid_argument("valid_until", "must be after valid_from")


def activity_refusal(activity: Activity, context: RequestContext, now_us: int) -> str | None:
    """The first rule this request fails (its name), or ``None`` when the user is eligible."""
    if activity.valid_from_us is not None and now_us < activity.valid_from_us:
        return "valid_from"
    if activity.valid_until_us is not None and now_us >= activity.valid_until_us:
        return "valid_until"
    rules = activity.rules
    if context.device_id and context.device_id in rules.device_blacklist:
        return "device_blacklist"
    if rules.device_blacklist and not context.device_id:
        # ``device_id NOT IN (blacklist)`` cannot hold for an unknown device: fail closed.
        return "device_blacklist"
    if context.phone_hash and context.phone_hash in rules.phone_blacklist:
        return "phone_blacklist"
    if rules.ip_cities and context.ip_city not in rules.ip_cities:
        return "ip_cities"
    if rules.new_users_only and not is_new_user(context, 0, now_us):
        return "new_users_only"
    if context.member_level < rules.min_member_level:
        return "min_member_level"
    return None
