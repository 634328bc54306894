"""The layering of docs/architecture.md, checked on the source: no upward imports, no import cycles.

Every ``import`` statement of every module counts, also those inside functions (a lazy import is still a
dependency); only imports under ``if TYPE_CHECKING:`` are ignored (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "intrinsic_robustness"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Rooms (first-level modules and packages) by layer, lowest first; a room may import its own layer or below.
LAYERS = {
    "base": {"__init__", "errors", "storage", "hashing", "runtime", "modes", "progress", "registry", "plugins",
             "weights", "distributed"},
    "domain": {"bound", "threat", "certify", "data", "generators", "lipschitz", "models", "attacks", "training",
               "evaluation"},
    "orchestration": {"pipeline", "report"},
    "facade": {"api"},
    "cli": {"cli"},
}
ORDER = list(LAYERS)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> set[str]:
    """Every intrinsic_robustness module a file imports (parents included: importing a.b runs a)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    modules = {module_name(m) for m in ROOT.rglob("*.py")}
    resolved = set()
    for name in found:
        while name and name not in modules:  # "from pkg import name" may name an attribute, not a module
            name = name.rpartition(".")[0]
        parts = name.split(".")
        resolved.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return resolved


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (its own ancestors left out: Python ran them first)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        out[name] = {d for d in imports_of(path) if d != name and not name.startswith(d + ".")}
    return out


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    for i, name in enumerate(ORDER):
        if room(module) in LAYERS[name]:
            return i
    raise AssertionError(f"{module}: room {room(module)!r} is in no layer; add it to LAYERS and architecture.md")


def test_every_room_has_a_layer() -> None:
    for module in graph():
        layer(module)


def test_no_upward_imports() -> None:
    upward = [f"{m} ({ORDER[layer(m)]}) imports {d} ({ORDER[layer(d)]})"
              for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert not upward, "\n".join(upward)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph, if any (iterative depth-first search)."""
    state: dict[str, int] = {}
    for start in edges:
        if state.get(start):
            continue
        stack = [(start, iter(sorted(edges.get(start, ()))))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(edges.get(child, ())))))
    return None


def test_no_module_import_cycles() -> None:
    cycle = _cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_cycles_between_domain_rooms() -> None:
    rooms: dict[str, set[str]] = {}
    for module, deps in graph().items():
        if room(module) in LAYERS["domain"]:
            rooms.setdefault(room(module), set()).update(room(d) for d in deps
                                                         if room(d) in LAYERS["domain"] and room(d) != room(module))
    cycle = _cycle(rooms)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(("edges", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[str] | None) -> None:
    assert _cycle(edges) == expected


def test_architecture_doc_names_every_room() -> None:
    doc = (ROOT.parents[1] / "docs" / "architecture.md").read_text()
    missing = [r for rooms in LAYERS.values() for r in rooms if r != "__init__" and f"`{r}" not in doc]
    assert not missing, f"docs/architecture.md does not describe {missing}"
