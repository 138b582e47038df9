"""The array literals the set-based statements bind (engine.storage.bulk.array_literal) read
back in PostgreSQL as exactly the values they were built from: whatever a key, an order id or a
memo holds — quotes, backslashes, commas, braces, blanks, the word NULL — and NULL itself."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from engine.service.context import EngineContext
from engine.storage.bulk import array_literal

_ROUND_TRIP = {
    array_type: text(
        f"SELECT value FROM unnest(CAST(:values AS {array_type})) WITH ORDINALITY AS a(value, n) ORDER BY n"
    )
    for array_type in ("TEXT[]", "BIGINT[]")
}
#: PostgreSQL text holds no NUL; every other character may reach a statement.
_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_TEXT = st.text(alphabet=_CHARACTERS, max_size=12)
_TRICKY = st.sampled_from(['"', "\\", "\\\\\"", ",", "{", "}", "{a,b}", " ", "", "NULL", "null", "'"])
_ONCE = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_back(context: EngineContext, array_type: str, values: list[Any]) -> list[Any]:
    with context.router.shards[0].engine.connect() as connection:
        rows = connection.execute(_ROUND_TRIP[array_type], {"values": array_literal(values)}).all()
    return [row.value for row in rows]


@_ONCE
@given(values=st.lists(st.one_of(_TEXT, _TRICKY), max_size=30))
def test_strings_read_back_as_they_were(pg_context: EngineContext, values: list[str]) -> None:
    assert _read_back(pg_context, "TEXT[]", values) == values


@_ONCE
@given(values=st.lists(st.one_of(st.none(), _TEXT, _TRICKY), max_size=30))
def test_strings_and_nulls_read_back(pg_context: EngineContext, values: list[str | None]) -> None:
    assert _read_back(pg_context, "TEXT[]", values) == values


@_ONCE
@given(values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=30))
def test_integers_read_back_as_they_were(pg_context: EngineContext, values: list[int | None]) -> None:
    assert _read_back(pg_context, "BIGINT[]", values) == values
