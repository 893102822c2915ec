"""The package's layout: every module imports, imports run only downward through the floors
below, nothing imports in a circle, and no module grows past what a reader takes in one sitting."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "toolduel"

# Bottom to top: a module may import from its own floor and the floors below it, never above.
FLOORS = [
    ("toolduel.schema", "toolduel.config"),
    ("toolduel.parsing", "toolduel.calls_text", "toolduel.checker_values", "toolduel.progress", "toolduel.run_files",
     "toolduel.chat_templates"),
    ("toolduel.checker", "toolduel.prompts", "toolduel.checkpoints"),
    ("toolduel.models", "toolduel.serving"),
    ("toolduel.evaluate", "toolduel.referee"),
    ("toolduel.report", "toolduel.world"),
    ("toolduel.data", "toolduel.specs"),
    ("toolduel.testing", "toolduel.settings"),
    ("toolduel.training",),
    ("toolduel.duel", "toolduel.blackbox"),
    ("toolduel.cli",),
]
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int:
    matches = [(len(prefix), index) for index, group in enumerate(FLOORS) for prefix in group
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is on no floor: add it to FLOORS in {Path(__file__).name}"
    return max(matches)[1]


def imports(module: str, top_level_only: bool = False) -> set[str]:
    """The toolduel modules ``module`` imports (anywhere in it, or only in its top-level statements)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `from toolduel.x import y`: y is a module or a name in x
                name = name.rpartition(".")[0]
            if name and name not in (module, "toolduel"):
                found.add(name)
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_imports_run_downward_only():
    upward = [f"{module} imports {target}" for module in MODULES for target in imports(module)
              if floor(target) > floor(module)]
    assert upward == []


def test_the_world_supplies_data_and_the_referee_serves_both_programs():
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if module.startswith("toolduel.world"):
            assert "import trl" not in text and "from trl" not in text, module
            assert not any(t.startswith("toolduel.training") for t in imports(module)), module
        if module.startswith("toolduel.referee"):
            assert not any(t.startswith(("toolduel.duel", "toolduel.blackbox")) for t in imports(module)), module
        if module.startswith("toolduel.duel"):
            assert not any(t.startswith("toolduel.blackbox") for t in imports(module)), module
        if module.startswith("toolduel.blackbox"):
            assert not any(t.startswith("toolduel.duel") for t in imports(module)), module


def test_no_circular_import():
    graph = {module: imports(module, top_level_only=True) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail("circular import: " + " -> ".join(path[path.index(module):] + (module,)))
        if module in done:
            return
        for target in graph.get(module, ()):
            visit(target, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_no_module_is_too_long_to_read_in_one_sitting():
    long = {module: n for module, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
