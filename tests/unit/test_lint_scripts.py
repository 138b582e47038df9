"""The two import checks that ``make lint`` runs: cycles of any length, and imports of engine or
clients modules below a module's top level."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up in sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cycles = _load("check_import_cycles")
local_imports = _load("check_local_imports")


def test_every_cycle_is_found_and_acyclic_imports_pass() -> None:
    imports = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": {"e"},
        "e": set(),
        "f": {"f"},
        "g": {"e"},
    }
    assert cycles.find_cycles(imports) == [["a", "b", "c"], ["f"]]
    assert cycles.find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_function_level_imports_of_our_packages_are_found(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import engine.config\n"
        "if TYPE_CHECKING:\n"
        "    from engine.service.context import EngineContext\n"
        "def run() -> None:\n"
        "    import json\n"
        "    from engine.app import build_router\n"
        "class Job:\n"
        "    def go(self) -> None:\n"
        "        from . import sibling\n"
        "        import clients.pos\n",
        encoding="utf-8",
    )
    found = [(local.line, local.scope) for local in local_imports.find_local_imports(source)]
    assert found == [(7, "run"), (10, "Job.go"), (11, "Job.go")]

