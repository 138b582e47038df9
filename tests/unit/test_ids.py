"""Ids and codes carry their virtual shard; codes survive typing mistakes or refuse them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.domain import ids


@given(
    st.integers(min_value=0, max_value=ids.MAX_VIRTUAL_SHARDS - 1), st.integers(min_value=0, max_value=2**45)
)
def test_ids_carry_their_virtual_shard(virtual_shard: int, now_ms: int) -> None:
    identifier = ids.new_id("ch", virtual_shard, now_ms)
    assert ids.id_virtual_shard(identifier) == virtual_shard
    assert ids.id_prefix(identifier) == "ch"


def test_ids_sort_by_creation_time() -> None:
    earlier = ids.new_id("tx", 5, 1_700_000_000_000)
    later = ids.new_id("tx", 5, 1_700_000_000_001)
    assert earlier < later


def test_malformed_ids_route_nowhere() -> None:
    for text in ("", "ch_", "nope", "ch_0123", "CH_" + "0" * 22, "ch_" + "u" * 22, "ch_" + "0" * 23):
        assert ids.id_virtual_shard(text) is None


@given(st.integers(min_value=0, max_value=ids.MAX_VIRTUAL_SHARDS - 1))
def test_codes_carry_their_shard_and_a_check_symbol(virtual_shard: int) -> None:
    code = ids.new_code(virtual_shard)
    groups = code.split("-")
    assert [len(group) for group in groups] == [4, 4, 4, 2]
    assert ids.normalize_code(code) == code
    assert ids.code_virtual_shard(code) == virtual_shard
    assert ids.normalize_code(code.lower().replace("-", " ")) == code


def test_codes_have_at_least_48_random_bits() -> None:
    codes = {ids.new_code(3) for _ in range(2000)}
    assert len(codes) == 2000
    assert ids._CODE_RANDOM_SYMBOLS * 5 >= 48


def test_a_mistyped_code_fails_its_check() -> None:
    code = ids.new_code(7)
    compact = code.replace("-", "")
    position = 5
    replacement = "0" if compact[position] != "0" else "1"
    mistyped = compact[:position] + replacement + compact[position + 1 :]
    assert ids.normalize_code(mistyped) is None
    swapped = compact[:2] + compact[3] + compact[2] + compact[4:]
    if swapped != compact:
        assert ids.normalize_code(swapped) is None


def test_confusable_letters_read_as_digits() -> None:
    code = ids.new_code(1)
    confusable = code.replace("0", "O").replace("1", "I")
    assert ids.normalize_code(confusable) == code
