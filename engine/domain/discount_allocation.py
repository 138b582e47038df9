"""Spreading a discount across order lines in proportion to their totals.

Each line gets ``floor(discount × line / total)``; the fen left over by rounding go to the
largest line (the first of equals), so shares always sum to the discount exactly and no line's
share exceeds its total.
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
    largest = max(range(len(line_totals)), key=lambda index: (line_totals[index], -index))
    shares[largest] += discount - sum(shares)
    require(shares[largest] <= line_totals[largest], "the remainder fits the largest line")
    return shares
