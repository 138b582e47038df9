"""Plain-data <-> JSON for commands and results, driven by their type hints.

Used to store an idempotent request's original answer and to fingerprint its payload.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


#: Each dataclass's field names, looked up once per type: every stored answer and payload digest
#: walks a tree of dataclasses, and ``dataclasses.fields`` is slow. ``None``: not a dataclass.
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        is_dataclass = dataclasses.is_dataclass(cls)
        names = tuple(item.name for item in dataclasses.fields(cls)) if is_dataclass else None
        _FIELD_NAMES[cls] = names
        return names


def to_jsonable(value: Any) -> Any:
    """Dataclasses become dicts, tuples lists, enums their values; primitives stay."""
    if isinstance(value, (str, int, float, bool)) and not isinstance(value, enum.Enum):
        return value
    names = None if isinstance(value, type) else _field_names(type(value))
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, (tuple, list)):
        return [to_jsonable(element) for element in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _convert(hint: Any, data: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arguments = typing.get_args(hint)
        if data is None and type(None) in arguments:
            return None
        concrete = [argument for argument in arguments if argument is not type(None)]
        if len(concrete) == 1:
            return _convert(concrete[0], data)
        # A union of dataclasses is stored with its type name (see to_tagged_jsonable).
        for candidate in concrete:
            if isinstance(data, dict) and data.get("__type__") == candidate.__name__:
                return from_jsonable(candidate, data)
        raise ValueError(f"cannot decode {data!r} as {hint}")
    if origin is tuple:
        (element_hint, _ellipsis) = typing.get_args(hint)
        return tuple(_convert(element_hint, element) for element in data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_jsonable(hint, data)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    return data


def from_jsonable(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild dataclass ``cls`` from what :func:`to_jsonable` produced."""
    hints = typing.get_type_hints(cls)
    values = {
        item.name: _convert(hints[item.name], data[item.name])
        for item in dataclasses.fields(cls)  # type: ignore[arg-type]
        if item.name in data
    }
    return cls(**values)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


def loads(cls: type[T], text: str) -> T:
    return from_jsonable(cls, json.loads(text))


#: Command fields that are not the caller's payload: ``context`` (CONTRACT: "same payload" compares
#: every field except it) and ``merchant_scope`` (the caller's authority, from its credential — a
#: retry of the same request through another credential of the same till is the same request,
#: and a till of another merchant is refused before the key is looked at).
_NOT_PAYLOAD = ("context", "merchant_scope")


def payload_digest(operation: str, command: Any) -> str:
    """Fingerprint of a request for idempotency: every field except :data:`_NOT_PAYLOAD`.

    The operation name is part of it, so one key used for two different RPCs is a reuse.
    """
    body = to_jsonable(command)
    for field in _NOT_PAYLOAD:
        body.pop(field, None)
    spec = getattr(command, "spec", None)
    if spec is not None:
        body["spec"] = {"__type__": type(spec).__name__, **to_jsonable(spec)}
    text = json.dumps({"operation": operation, "body": body}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
