"""The layering of docs/architecture.md, checked on the source: no upward imports, no import cycles.

Every ``import`` statement of every module counts: those inside functions (a lazy import is still a dependency)
and those under ``if TYPE_CHECKING:`` (a type a module names is a dependency of its meaning, and a cycle there
is one refactor away from a real one). A string naming a package module (``"intrinsic_robustness.x.y"`` or
``"intrinsic_robustness.x.y:attr"``, as lazy re-export tables write them) counts as an import of it, and
``importlib.import_module`` with a computed name is allowed only where ``DYNAMIC`` says why.
The checker is tested on a tiny planted tree (``test_the_checker_*``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "intrinsic_robustness"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Rooms (first-level modules and packages) by layer, lowest first; a room may import its own layer or below.
# The package's own ``__init__`` is the front door (``irob.api`` and a few re-exports, loaded lazily): top of
# the library, beside ``api``; nothing imports it (a module's ancestors are left out of its imports).
LAYERS = {
    "base": {"errors", "storage", "hashing", "runtime", "modes", "progress", "registry", "plugins", "weights",
             "distributed", "stats"},
    "domain": {"bound", "threat", "certify", "data", "generators", "lipschitz", "models", "attacks", "training",
               "evaluation", "concentration"},
    "orchestration": {"layout", "pipeline", "report"},
    "facade": {"__init__", "api"},
    "cli": {"cli"},
}
ORDER = list(LAYERS)
# Modules allowed to call ``importlib.import_module`` with a computed name, and why the test loses nothing.
DYNAMIC = {
    f"{PACKAGE}.plugins": "user code named as package.module:factory, outside this package",
    f"{PACKAGE}.cli": "its own command modules (COMMAND_MODULES), all in the cli room",
    PACKAGE: "the front door's submodules (_SUBMODULES), nothing imports the package's __init__",
    f"{PACKAGE}.pipeline": "lazy re-exports: _LAZY writes each full module name, which counts as an import",
    f"{PACKAGE}.lipschitz": "lazy re-exports: _LAZY writes each full module name, which counts as an import",
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _named_module(text: str, package: str) -> str | None:
    """The module a string names (``pkg.a.b`` or ``pkg.a.b:attr``), if it names one of ``package``'s."""
    name = text.partition(":")[0]
    if name.split(".")[0] == package and all(part.isidentifier() for part in name.split(".")):
        return name if "." in name else None
    return None


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module")


def _scan(path: Path, package: str) -> tuple[set[str], list[int]]:
    """The package names a file imports or names in a string, and the lines of computed ``import_module`` calls."""
    found: set[str] = set()
    dynamic: list[int] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = _named_module(node.value, package)
            if named:
                found.add(named)
        elif (isinstance(node, ast.Call) and _is_import_module(node)
              and not (node.args and isinstance(node.args[0], ast.Constant))):
            dynamic.append(node.lineno)
    return found, dynamic


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every package module a file imports (parents included: importing a.b runs a)."""
    found, _ = _scan(path, root.name)
    modules = {module_name(m, root) for m in root.rglob("*.py")}
    resolved = set()
    for name in found:
        while name and name not in modules:  # "from pkg import name" may name an attribute, not a module
            name = name.rpartition(".")[0]
        parts = name.split(".")
        resolved.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return resolved


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports (its own ancestors left out: Python ran them first)."""
    out = {}
    for path in root.rglob("*.py"):
        name = module_name(path, root)
        out[name] = {d for d in imports_of(path, root) if d != name and not name.startswith(d + ".")}
    return out


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str, layers: dict[str, set[str]] = LAYERS) -> int:
    for i, name in enumerate(layers):
        if room(module) in layers[name]:
            return i
    raise AssertionError(f"{module}: room {room(module)!r} is in no layer; add it to LAYERS and architecture.md")


def upward_imports(edges: dict[str, set[str]], layers: dict[str, set[str]] = LAYERS) -> list[str]:
    """Every import of a module from a higher layer, as readable lines."""
    order = list(layers)
    return [f"{m} ({order[layer(m, layers)]}) imports {d} ({order[layer(d, layers)]})"
            for m, deps in sorted(edges.items()) for d in sorted(deps) if layer(d, layers) > layer(m, layers)]


def room_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Room -> the other rooms its modules import (a room is a first-level module or package)."""
    rooms: dict[str, set[str]] = {}
    for module, deps in edges.items():
        rooms.setdefault(room(module), set()).update(room(d) for d in deps if room(d) != room(module))
    return rooms


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


def test_every_room_has_a_layer() -> None:
    for module in graph():
        layer(module)


def test_no_upward_imports() -> None:
    upward = upward_imports(graph())
    assert not upward, "\n".join(upward)


def test_no_module_import_cycles() -> None:
    cycle = _cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("floor", ["base", "domain", "orchestration", "facade"])
def test_no_cycles_between_rooms_of_a_floor(floor: str) -> None:
    rooms = {r: {d for d in deps if d in LAYERS[floor]} for r, deps in room_edges(graph()).items()
             if r in LAYERS[floor]}
    cycle = _cycle(rooms)
    assert cycle is None, " -> ".join(cycle or [])


def test_no_hidden_imports() -> None:
    """A module named at run time is invisible to this test: only the modules in ``DYNAMIC`` may do it."""
    hidden = []
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        lines = _scan(path, PACKAGE)[1]
        if lines and name not in DYNAMIC:
            hidden.append(f"{name}: importlib.import_module with a computed name (lines {lines})")
    assert not hidden, "\n".join(hidden)


def _random_sources(path: Path) -> list[int]:
    """Lines that make a torch generator or seed one (``torch.Generator(...)``, ``.manual_seed(...)``)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr == "manual_seed" or (node.func.attr == "Generator" and isinstance(node.func.value,
                                                                                                ast.Name))):
            lines.append(node.lineno)
    return lines


def test_one_randomness_source() -> None:
    """Only ``runtime`` makes or seeds torch generators (``make_generator``, ``stage_generator``, ``seeded``):
    one place decides how a seed becomes random numbers, so every stage's draws derive from one base seed."""
    found = [f"{module_name(p)}: lines {lines}" for p in ROOT.rglob("*.py")
             if module_name(p) != f"{PACKAGE}.runtime" and (lines := _random_sources(p))]
    assert not found, "use runtime.make_generator / runtime.seeded instead:\n" + "\n".join(found)


def test_the_randomness_check_sees_a_planted_generator(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("import torch\ng = torch.Generator().manual_seed(0)\ntorch.manual_seed(1)\nx = torch.rand(1)\n")
    assert sorted(_random_sources(path)) == [2, 2, 3]


@pytest.mark.parametrize(("edges", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[str] | None) -> None:
    assert _cycle(edges) == expected


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A tiny fake package ``fakepkg`` with the given files (path -> source)."""
    root = tmp_path / "fakepkg"
    for rel, text in {"__init__.py": "", "low/__init__.py": "", "high/__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


FAKE_LAYERS = {"bottom": {"low", "other"}, "top": {"high", "__init__"}}


def test_the_checker_sees_a_planted_upward_import_in_every_form(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "high/a.py": "",
        "low/plain.py": "from fakepkg.high import a\n",
        "low/lazy.py": "def f():\n    import fakepkg.high.a\n",
        "low/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.high.a import X\n",
        "low/named.py": "TARGET = 'fakepkg.high.a:build'\n",
        "low/fine.py": "from fakepkg.low import plain\nNOTE = 'fakepkg is a name, not a module'\n",
    })
    upward = upward_imports(graph(root), FAKE_LAYERS)
    assert sorted({line.split()[0] for line in upward}) == [f"fakepkg.low.{m}" for m in ("lazy", "named", "plain",
                                                                                        "typed")]


def test_the_checker_sees_a_planted_cycle_through_a_type_checking_import(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "low/a.py": "from fakepkg.low.b import f\n",
        "low/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.low.a import g\n",
    })
    assert _cycle(graph(root)) == ["fakepkg.low.a", "fakepkg.low.b", "fakepkg.low.a"]


def test_the_checker_sees_a_planted_cycle_between_rooms(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "low/a.py": "from fakepkg.other import b\n",
        "other/__init__.py": "",
        "other/b.py": "",
        "other/c.py": "def f():\n    from fakepkg.low import d\n",
        "low/d.py": "",
    })
    edges = graph(root)
    assert _cycle(edges) is None  # no module cycle: only the rooms go round
    assert set(_cycle(room_edges(edges)) or []) == {"low", "other"}


def test_the_checker_finds_a_planted_computed_import(tmp_path: Path) -> None:
    root = _plant(tmp_path, {"low/dyn.py": "import importlib\nname = 'a'\nimportlib.import_module(f'x.{name}')\n",
                             "low/lit.py": "import importlib\nimportlib.import_module('fakepkg.high.a')\n",
                             "high/a.py": ""})
    assert _scan(root / "low" / "dyn.py", "fakepkg")[1] == [3]
    assert _scan(root / "low" / "lit.py", "fakepkg")[1] == []
    assert "fakepkg.low.lit (bottom) imports fakepkg.high.a (top)" in upward_imports(graph(root), FAKE_LAYERS)


def test_architecture_doc_names_every_room() -> None:
    doc = (ROOT.parents[1] / "docs" / "architecture.md").read_text()
    missing = [r for rooms in LAYERS.values() for r in rooms if r != "__init__" and f"`{r}" not in doc]
    assert not missing, f"docs/architecture.md does not describe {missing}"
