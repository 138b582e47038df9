"""Which libpq engine.storage.libpq_sends calls: the one mapped into the process, never a guess."""

from __future__ import annotations

from engine.storage.libpq_sends import MAX_MAPPED_REGIONS, libpq_path

_WHEEL = "/venv/lib/python3.11/site-packages/psycopg_binary.libs/libpq-e9b5c9ac.so.5.18"
_SYSTEM = "/usr/lib/x86_64-linux-gnu/libpq.so.5.15"


def _region(path: str, offset: str = "00000000") -> str:
    return f"7f18bf429000-7f18bf46f000 r-xp {offset} 08:01 1234567                    {path}\n"


def test_the_one_libpq_mapped_is_found_whatever_its_regions() -> None:
    lines = [
        _region("/usr/bin/python3.11"),
        _region(_WHEEL),
        _region(_WHEEL, "00046000"),
        _region("/usr/lib/x86_64-linux-gnu/libpthread.so.0"),
        "7ffd4a5e1000-7ffd4a602000 rw-p 00000000 00:00 0                          [stack]\n",
    ]
    assert libpq_path(lines) == _WHEEL


def test_a_distributions_libpq_is_recognised() -> None:
    assert libpq_path([_region(_SYSTEM)]) == _SYSTEM


def test_two_different_libpqs_or_none_give_no_library() -> None:
    assert libpq_path([_region(_WHEEL), _region(_SYSTEM)]) is None
    assert libpq_path([_region("/usr/lib/libpqwalreceiver.so"), _region("/opt/libpq-tools/run")]) is None
    assert libpq_path([]) is None


def test_the_scan_is_bounded() -> None:
    filler = [_region("/usr/lib/libc.so.6")] * MAX_MAPPED_REGIONS
    assert libpq_path([*filler, _region(_WHEEL)]) is None
