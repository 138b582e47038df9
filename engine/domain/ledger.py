"""The double-entry ledger's vocabulary: transaction types, the chart of accounts, entries.

Every transaction's entries sum to zero per asset. User-side accounts (a wallet's available and
held buckets, a gift card's available and held buckets) carry the owner's ``user_id``; system
accounts carry none and are never a row updated per request — they exist only as entries, so a
merchant receiving every payment is never a hot row.

Chart of accounts (system side; the part after ``:`` names the counterparty):

==============================  =====  ===========================================================
account                         asset  what a credit (+) / debit (-) means
==============================  =====  ===========================================================
``topup_clearing:<channel>``    CASH,  money received through a payment channel, not yet
                                COINS  settled with it; debited when a user is credited
``merchant_payable:<merchant>`` CASH   owed to a merchant for captured charges (rolled up later)
``coupon_expense``              CASH   the platform's marketing cost: coupon discounts,
                                       promotional gift cards
``points_issued``               POINTS points granted to users (debited on grant)
``points_redeemed``             POINTS points spent on orders or exchanged for cash
``points_expired``              POINTS points whose lot expired
``points_funding``              CASH   the platform paying a merchant (or a user) the cash value
                                       of points spent
``points_debt`` (per user)      POINTS points a refund clawed back after they were spent: a
                                       receivable (negative), settled from future grants;
                                       ``accounts.points_debt`` is its cache
``coins_issued``                COINS  coins granted to users for free
``coins_redeemed``              COINS  coins spent on orders
``coins_funding``               CASH   the cash value of coins spent
``adjustment:<asset>``          any    manual corrections (Admin.Adjust)
==============================  =====  ===========================================================
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from engine.domain.errors import require
from engine.domain.money import Asset


class TransactionType(enum.Enum):
    TOP_UP = "TOP_UP"
    POINTS_GRANT = "POINTS_GRANT"
    COINS_GRANT = "COINS_GRANT"
    GIFT_CARD_ISSUE = "GIFT_CARD_ISSUE"
    COUPON_CLAIM = "COUPON_CLAIM"
    CHARGE = "CHARGE"
    CAPTURE = "CAPTURE"
    VOID = "VOID"
    EXPIRE = "EXPIRE"
    REFUND = "REFUND"
    REDEEM = "REDEEM"
    EXCHANGE = "EXCHANGE"
    ADJUST = "ADJUST"
    SETTLE = "SETTLE"


class Bucket(enum.Enum):
    AVAILABLE = "available"
    HELD = "held"


USER_ACCOUNT = "user"
GIFT_CARD_ACCOUNT = "gift_card"
COUPON_EXPENSE = "coupon_expense"
POINTS_ISSUED = "points_issued"
POINTS_REDEEMED = "points_redeemed"
POINTS_EXPIRED = "points_expired"
POINTS_FUNDING = "points_funding"
COINS_ISSUED = "coins_issued"
COINS_REDEEMED = "coins_redeemed"
COINS_FUNDING = "coins_funding"
POINTS_DEBT = "points_debt"


def topup_clearing(payment_channel: str) -> str:
    return f"topup_clearing:{payment_channel}"


def merchant_payable(merchant_id: str) -> str:
    return f"merchant_payable:{merchant_id}"


def adjustment(asset: Asset) -> str:
    return f"adjustment:{asset.value}"


@dataclass(frozen=True)
class Entry:
    """One signed line of a transaction. ``bucket`` is set on user and gift-card accounts."""

    account: str
    asset: Asset
    amount: int
    user_id: int | None = None
    bucket: Bucket | None = None
    instrument: str = ""


def user_entry(
    user_id: int,
    asset: Asset,
    amount: int,
    bucket: Bucket = Bucket.AVAILABLE,
    instrument: str = "",
) -> Entry:
    return Entry(USER_ACCOUNT, asset, amount, user_id=user_id, bucket=bucket, instrument=instrument)


def gift_card_entry(user_id: int, code: str, amount: int, bucket: Bucket = Bucket.AVAILABLE) -> Entry:
    return Entry(GIFT_CARD_ACCOUNT, Asset.CASH, amount, user_id=user_id, bucket=bucket, instrument=code)


def points_debt_entry(user_id: int, amount: int) -> Entry:
    """The user's points debt account (a receivable: negative while points are owed)."""
    return Entry(POINTS_DEBT, Asset.POINTS, amount, user_id=user_id)


def system_entry(account: str, asset: Asset, amount: int, instrument: str = "") -> Entry:
    return Entry(account, asset, amount, instrument=instrument)


class Posting:
    """Builds one transaction's entries; :meth:`entries` refuses an unbalanced set."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []

    def move(self, source: Entry, destination: Entry) -> None:
        """Move ``source.amount`` (positive) from ``source``'s account to ``destination``'s.

        Both entries are templates whose ``amount`` is the positive quantity moved; the posted
        source line is negative, the destination line positive.
        """
        require(source.amount == destination.amount, "a move must carry one amount")
        require(source.asset == destination.asset, "a move stays within one asset")
        if source.amount == 0:
            return
        require(source.amount > 0, "a move's amount is positive")
        self._entries.append(
            Entry(
                source.account,
                source.asset,
                -source.amount,
                source.user_id,
                source.bucket,
                source.instrument,
            )
        )
        self._entries.append(destination)

    def add(self, entry: Entry) -> None:
        self._entries.append(entry)

    def entries(self) -> list[Entry]:
        check_balanced(self._entries)
        return [entry for entry in self._entries if entry.amount != 0]


def check_balanced(entries: Iterable[Entry]) -> None:
    totals: dict[Asset, int] = defaultdict(int)
    for entry in entries:
        totals[entry.asset] += entry.amount
    unbalanced = {asset.value: total for asset, total in totals.items() if total != 0}
    require(not unbalanced, f"transaction entries do not sum to zero: {unbalanced}")
