"""The import graph of src/stategrad follows the pipeline of the layout:

    atomic, comm -> data -> lm -> gradients, ablation -> analysis -> report -> synth, legacy, demo -> cli

A module imports from its own subpackage and from layers to its left, never to its right
(function-level imports included), and no chain of imports comes back to where it
started.  Other subpackages reach a subpackage through its ``__init__`` only, so its
modules can be split without breaking them.

ablation sits beside gradients (the same layer): it needs data and lm, and takes the
gradient results' coverage records and HDF5 writer from gradients' ``__init__``; the cycle
test keeps gradients from ever importing it.

synth sits with legacy and demo: it only needs atomic and data (it writes a corpus and
its word classes), but nothing below the demo and the command line uses it, and keeping
it on top leaves it free to train or analyse in the future.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "stategrad"

LAYERS = {
    "atomic": 0, "comm": 0,
    "data": 1,
    "lm": 2,
    "gradients": 3, "ablation": 3,
    "analysis": 4,
    "report": 5,
    "synth": 6, "legacy": 6, "demo": 6,
    "cli": 7,
}
EXEMPT = {"stategrad", "stategrad.__main__"}  # the public API re-exports everything


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str) -> list[tuple[int, str]]:
    """(line, module) for every stategrad module ``name`` imports, anywhere in the file."""
    path = MODULES[name]
    base = name.split(".") if is_package(name) else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import uncertainty`` imports a module, ``from .x import y`` a name
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                       for a in node.names]
        else:
            continue
        found += [(node.lineno, t) for t in targets if t.split(".")[0] == "stategrad"]
    return found


def layer(name: str) -> int | None:
    if name in EXEMPT:
        return None
    return LAYERS[name.split(".")[1]]


def test_every_module_has_a_layer():
    unknown = sorted(n for n in MODULES if n not in EXEMPT and n.split(".")[1] not in LAYERS)
    assert not unknown, f"add these to LAYERS (and to docs of the layout): {unknown}"


def test_imports_only_flow_forward():
    wrong = []
    for name in MODULES:
        mine = layer(name)
        for line, target in imports(name):
            theirs = layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {target}")
    assert not wrong, "imports against the pipeline order:\n" + "\n".join(wrong)


def test_other_subpackages_import_through_the_init():
    wrong = []
    for name in MODULES:
        sub = name.split(".")[1] if name not in EXEMPT else None
        for line, target in imports(name):
            parts = target.split(".")
            if len(parts) > 2 and parts[1] != sub and is_package("stategrad." + parts[1]):
                wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {target}; "
                             f"import from stategrad.{parts[1]} (add the name to its __init__)")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    # a package's __init__ imports its modules, so an import of a subpackage is an edge
    # to its __init__ and from there to the modules: cycles through an __init__ show too
    graph = {name: sorted({t for _, t in imports(name) if t in MODULES and t != name})
             for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in graph[n]:
            if state.get(m) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)
