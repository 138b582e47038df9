"""JSON text columns (template scopes and eligibility, activity rewards and rules): one canonical
encoding, so the same definition stored on every shard is the same text byte for byte."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dump_json"]


def dump_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
