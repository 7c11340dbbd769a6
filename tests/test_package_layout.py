"""The package's shape: one sub-package per pipeline stage, imports only go down, modules stay readable.

The rule (CONTRIBUTING.md, "How the package is layered"): a module imports only from its own sub-package and
from the layers below it. The foundations are imported by everything; nothing but a runner imports a runner.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mmgeo_utils"

# The data's path through the course, bottom to top. The foundations are ordered among themselves too.
LAYERS = {
    "gpu": 0,
    "profiles": 1,
    "repro": 2,
    "plots": 3,
    "diagrams": 4,
    "negatives": 5,
    "data": 6,
    "clip": 7,
    "lmm": 8,
    "experiments": 9,
    "course": 9,
    "reproduce": 9,
    "cli": 9,
    "__main__": 9,
}
RUNNERS = 9  # runners (experiments, course, cli) may import anything; only a runner imports a runner
MAX_LINES = 550  # "about 500": a module a reader holds in one sitting


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _unit(parts: list[str]) -> str:
    """The layer a module belongs to: its sub-package, or its own name for a top-level module."""
    return parts[0] if parts else "__init__"


def _imported_units(path: Path) -> list[tuple[int, str]]:
    """(line, unit) for every import of a mmgeo_utils module in ``path``, at any depth of the file."""
    here = _dotted(path)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "mmgeo_utils":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.append((node.lineno, _unit(target)))
            else:  # from mmgeo_utils import x, y: each name is a module
                found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "mmgeo_utils" and len(names) > 1:
                    found.append((node.lineno, names[1]))
    return found


MODULES = _modules()
IDS = [str(p.relative_to(PACKAGE)) for p in MODULES]


def test_every_unit_has_a_layer():
    units = {_unit(_dotted(p)) for p in MODULES} - {"__init__"}
    assert units <= set(LAYERS), f"give these a layer in LAYERS and CONTRIBUTING.md: {sorted(units - set(LAYERS))}"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_imports_only_go_down(path):
    unit = _unit(_dotted(path))
    if unit == "__init__":  # the package's own docstring module imports nothing
        assert _imported_units(path) == []
        return
    wrong = [
        f"line {line}: {unit} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS.get(target, '?')})"
        for line, target in _imported_units(path)
        if target != unit and LAYERS[unit] < RUNNERS and (target not in LAYERS or LAYERS[target] >= LAYERS[unit])
    ]
    assert not wrong, "imports go down the layers only (CONTRIBUTING.md):\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_module_is_readable_in_one_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it along its sections (at most about 500)"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_local_imports_say_why(path):
    """An import inside a function is the exception; a comment beside or above it says why (a cycle, a heavy import)."""
    source = path.read_text().splitlines()
    tree = ast.parse("\n".join(source))
    silent = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            block = source[node.lineno - 1 : node.end_lineno]  # the import, and the imports right above it
            above = node.lineno - 2
            while above >= 0 and source[above].strip().startswith(("from ", "import ", ")")):
                block.append(source[above])
                above -= 1
            explained = any("#" in line for line in block) or (above >= 0 and source[above].strip().startswith("#"))
            if not explained:
                silent.append(f"line {node.lineno}: {source[node.lineno - 1].strip()}")
    assert not silent, "move these imports to the top, or say in a comment why they stay local:\n" + "\n".join(silent)


def test_the_diagram_stage_imports_without_the_training_stack():
    """As open_clip's library imports without its training code: drawing a diagram needs no torch."""
    code = "import sys, mmgeo_utils.diagrams; print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing mmgeo_utils.diagrams imported {out.strip()}"
