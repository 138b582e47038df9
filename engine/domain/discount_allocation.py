"""Spreading a discount across order lines in proportion to their totals.

Each line gets ``floor(discount × line / total)``; the fen left over by rounding (fewer than the
number of lines) go to the largest line (the first of equals) — and, only when that line is
already fully discounted, on to the next largest. Shares always sum to the discount exactly and
no line's share exceeds its total.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.errors import require


def allocate_discount(line_totals: Sequence[int], discount: int) -> list[int]:
    total = sum(line_totals)
    require(0 <= discount <= total or (total == 0 and discount == 0), "a discount fits its lines")
    if discount == 0 or total == 0:
        return [0 for _ in line_totals]
    shares = [(discount * line) // total for line in line_totals]
    remainder = discount - sum(shares)
    by_size = sorted(range(len(line_totals)), key=lambda index: (-line_totals[index], index))
    for index in by_size:
        if remainder == 0:
            break
        give = min(remainder, line_totals[index] - shares[index])
        shares[index] += give
        remainder -= give
    require(remainder == 0, "the rounding remainder fits the lines")
    return shares
