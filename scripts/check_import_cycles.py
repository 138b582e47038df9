"""Fail when any engine module takes part in an import cycle (run by ``make lint``).

import-linter's contracts cover layering, and its ``acyclic_siblings`` contract compares sibling
packages only, so a cycle between a package's ``__init__`` and one of its own modules, or one hidden
inside a package, would pass it. This finds every strongly connected component of the module
graph that grimp (import-linter's own parser) builds, so any cycle at all fails.

Imports under ``if TYPE_CHECKING:`` are left out: they never run, and they are the sanctioned way
to name a type from a module that imports this one.

Run: ``.venv/bin/python scripts/check_import_cycles.py [PACKAGE ...]`` (default: engine).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence

import grimp

__all__ = ["find_cycles", "main"]

DEFAULT_PACKAGES = ("engine",)


def _direct_imports(graph: grimp.ImportGraph, packages: Sequence[str]) -> dict[str, set[str]]:
    def ours(module: str) -> bool:
        return any(module == package or module.startswith(package + ".") for package in packages)

    return {
        module: {imported for imported in graph.find_modules_directly_imported_by(module) if ours(imported)}
        for module in graph.modules
        if ours(module)
    }


def find_cycles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing
    itself), each sorted, in sorted order. Iterative Tarjan: no recursion limit on deep graphs."""
    index_of: dict[str, int] = {}
    low_link: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(imports):
        if root in index_of:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(imports.get(root, ())))]
        index_of[root] = low_link[root] = len(index_of)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, pending = work[-1]
            if pending:
                imported = pending.pop()
                if imported not in index_of:
                    index_of[imported] = low_link[imported] = len(index_of)
                    stack.append(imported)
                    on_stack.add(imported)
                    work.append((imported, sorted(imports.get(imported, ()))))
                elif imported in on_stack:
                    low_link[module] = min(low_link[module], index_of[imported])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low_link[parent] = min(low_link[parent], low_link[module])
            if low_link[module] == index_of[module]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1 or module in imports.get(module, ()):
                    components.append(sorted(component))
    return sorted(components)


def main(argv: Sequence[str] | None = None) -> int:
    packages = tuple(argv if argv else DEFAULT_PACKAGES)
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True, cache_dir=None)
    imports = _direct_imports(graph, packages)
    cycles = find_cycles(imports)
    for cycle in cycles:
        members = set(cycle)
        print(f"import cycle among {len(cycle)} modules:")
        for module in cycle:
            for imported in sorted(imports[module] & members):
                details = graph.get_import_details(importer=module, imported=imported)
                lines = sorted({str(detail["line_number"]) for detail in details})
                print(f"    {module} -> {imported} (l. {', '.join(lines)})")
    if cycles:
        print(f"{len(cycles)} import cycle(s) in {', '.join(packages)}")
        return 1
    print(f"no import cycles in {', '.join(packages)} ({len(imports)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
