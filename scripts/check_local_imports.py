"""Fail on an import of an engine or clients module anywhere but a module's top level
(run by ``make lint``).

An import inside a function (or a class body) hides a dependency from the module's header, from
import-linter and from the cycle check, and is the usual way to dodge a cycle instead of fixing the
layering. Allowed: module-level statements, including ``if TYPE_CHECKING:`` blocks and
``try``/``except`` around top-level imports. Standard-library and third-party imports are not checked.

Run: ``.venv/bin/python scripts/check_local_imports.py [DIRECTORY ...]`` (default: engine clients).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalImport", "find_local_imports", "main"]

DEFAULT_DIRECTORIES = ("engine", "clients")
#: Top-level packages whose modules must be imported at module level.
CHECKED_PACKAGES = frozenset({"engine", "clients"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class LocalImport:
    path: Path
    line: int
    scope: str
    statement: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement} inside {self.scope}"


def _imported_packages(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.ImportFrom):
        # A relative import inside engine/ or clients/ names one of their own modules.
        return {"<relative>"} if node.level else {(node.module or "").split(".")[0]}
    return {alias.name.split(".")[0] for alias in node.names}


def _walk(node: ast.AST, scope: str | None) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom) and scope is not None:
            yield child, scope
        inner = scope
        if isinstance(child, _SCOPES):
            name = "lambda" if isinstance(child, ast.Lambda) else child.name
            inner = f"{scope}.{name}" if scope else name
        yield from _walk(child, inner)


def find_local_imports(path: Path) -> list[LocalImport]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node, scope in _walk(tree, None):
        packages = _imported_packages(node)
        if packages & CHECKED_PACKAGES or "<relative>" in packages:
            found.append(LocalImport(path, node.lineno, scope, ast.unparse(node)))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    directories = [Path(name) for name in (argv if argv else DEFAULT_DIRECTORIES)]
    found = [
        local
        for directory in directories
        for path in sorted(directory.rglob("*.py"))
        for local in find_local_imports(path)
    ]
    print(
        *found,
        f"{len(found)} function-level import(s) of engine/clients modules; import at module level"
        if found
        else f"no function-level imports of engine/clients modules in {', '.join(map(str, directories))}",
        sep="\n",
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
