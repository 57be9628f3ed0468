"""The house's rooms: the firmware imports neither the lab nor the custodian, and no package's imports go round.

Every import statement counts, at module level or inside a function: a lazy
import is still a dependency. `firmware.cli` finds the lab's and the
custodian's commands through entry points, which no import statement names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("firmware", "lab", "custodian")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that `name` imports (`from a import b` names a.b when b is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_walk_sees_the_imports_it_must_judge():
    g = graph()
    assert "firmware.scanner.sources" in g["firmware.technician.aim"] and "firmware.store.records" in g["custodian.ingest"]
    assert "lab.world" in g["lab.demo"]


def test_the_firmware_imports_neither_the_lab_nor_the_custodian():
    wrong = sorted(f"{name} -> {dep}" for name, deps in graph().items() if name.split(".")[0] == "firmware"
                   for dep in deps if dep.split(".")[0] != "firmware")
    assert wrong == []


def test_no_imports_go_round():
    g = graph()
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(g[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert cycles == []
