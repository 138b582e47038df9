"""clients/ is what a caller installs with the ``client`` extra: it never imports the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import clients

CLIENTS = Path(clients.__file__).parent
#: ``tests`` is not listed: the local-run helpers of the load test and bench (clients/loadtest/local.py,
#: clients/bench.py) start a throwaway engine through tests.support, which may import both.
FORBIDDEN = ("engine", "server")


def _imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_clients_never_import_the_engine() -> None:
    sources = sorted(CLIENTS.rglob("*.py"))
    assert sources
    offending = [
        f"{path.relative_to(CLIENTS.parent)}: {name}"
        for path in sources
        for name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert not offending, offending


def test_the_public_surface_is_declared() -> None:
    for name in clients.__all__:
        assert hasattr(clients, name), name
    assert "OrderClient" in clients.__all__
    assert "InsufficientFunds" in clients.__all__
    assert not [name for name in clients.__all__ if name.startswith("_")]
