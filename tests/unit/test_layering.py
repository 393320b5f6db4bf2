"""The layering rules of docs/ARCHITECTURE ("Layering rules"), checked on every import.

Every module under `atlas_actors/` and `supervisor/` is parsed with `ast`; module-level AND
function-level imports count (an import hidden in a function is still a dependency, and still
closes a cycle). Relative imports are resolved. Rules:

- `atlas_actors.domain` imports only the standard library and `atlas_actors.domain`;
- nothing under `atlas_actors` imports `supervisor`;
- `atlas_actors.venues` imports no engine, actors or supervisor;
- `atlas_actors.engine` imports no actors or supervisor;
- no import cycles among project modules;
- no product module is longer than MAX_MODULE_LINES.

Known exceptions are listed below, each with the work that removes it; an entry that no longer
matches anything fails too, so the lists only shrink.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("atlas_actors", "supervisor")
MAX_MODULE_LINES = 800

# (importing module, imported project module) edges that break a rule today.
# The library modules atlas_actors.backtest and atlas_actors.selfcheck still reach into
# `supervisor` (config loading, secrets, alerts, AccountGuard) for their command-line entry
# points; the work moving those entry points into `supervisor/` (and AccountGuard out of
# supervisor.tree) removes these entries. Their edges also close cycles through supervisor.cli /
# supervisor.run, which is why the cycle check skips them too. Do not add to this list.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("atlas_actors.backtest", "supervisor.config"),
        ("atlas_actors.selfcheck", "supervisor.secrets"),
        ("atlas_actors.selfcheck", "supervisor.config"),
        ("atlas_actors.selfcheck", "supervisor.alerts"),
    }
)


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _project_module(name: str) -> str | None:
    """The project module `name` refers to (the longest existing prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """(absolute imported name, line) for every import in the module, at any depth, except
    under `if TYPE_CHECKING:` (annotations only: never executed, so never a runtime cycle)."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def _edges() -> dict[str, dict[str, int]]:
    """Project import graph: module -> {imported project module: first line}."""
    graph: dict[str, dict[str, int]] = {}
    for module in MODULES:
        deps: dict[str, int] = {}
        for name, line in _imports(module):
            target = _project_module(name)
            if target is not None and target != module:
                deps.setdefault(target, line)
        graph[module] = deps
    return graph


GRAPH = _edges()


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(rule: str, importer_pkg: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for module, deps in GRAPH.items():
        if not _in(module, importer_pkg):
            continue
        for dep, line in deps.items():
            if any(_in(dep, f) for f in forbidden) and (module, dep) not in KNOWN_VIOLATIONS:
                out.append(
                    f"{MODULES[module].relative_to(REPO)}:{line}: {module} -> {dep} ({rule})"
                )
    return out


def test_the_module_scan_sees_the_project() -> None:
    assert "atlas_actors.domain.core" in MODULES and "supervisor.tree" in MODULES
    assert "atlas_actors.domain.lifecycle" in GRAPH["atlas_actors.domain.core.bars"]


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    bad = []
    stdlib = sys.stdlib_module_names
    for module in MODULES:
        if not _in(module, "atlas_actors.domain"):
            continue
        for name, line in _imports(module):
            if name.split(".")[0] in stdlib or _in(name, "atlas_actors.domain"):
                continue
            bad.append(f"{MODULES[module].relative_to(REPO)}:{line}: {module} imports {name}")
    assert not bad, "the domain must stay pure:\n" + "\n".join(sorted(set(bad)))


def test_library_code_does_not_import_the_supervisor() -> None:
    bad = _violations("atlas_actors imports no supervisor", "atlas_actors", ("supervisor",))
    assert not bad, "\n".join(bad)


def test_venues_import_no_engine_actors_or_supervisor() -> None:
    forbidden = ("atlas_actors.engine", "atlas_actors.actors", "supervisor")
    bad = _violations("venues sit below the engine", "atlas_actors.venues", forbidden)
    assert not bad, "\n".join(bad)


def test_engine_imports_no_actors_or_supervisor() -> None:
    forbidden = ("atlas_actors.actors", "supervisor")
    bad = _violations("the engine sits below the actors", "atlas_actors.engine", forbidden)
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    graph = {
        m: {d: line for d, line in deps.items() if (m, d) not in KNOWN_VIOLATIONS}
        for m, deps in GRAPH.items()
    }
    cycles = _cycles(graph)
    assert not cycles, "import cycles (function-level imports count):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [
        ["a", "b", "c"]
    ]


def test_known_violations_still_exist() -> None:
    stale = sorted(e for e in KNOWN_VIOLATIONS if e[1] not in GRAPH.get(e[0], {}))
    assert not stale, f"fixed: remove these entries from KNOWN_VIOLATIONS: {stale}"


def test_no_product_module_exceeds_the_line_limit() -> None:
    too_long = []
    for path in sorted(set(MODULES.values())):
        rel = path.relative_to(REPO).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {n} lines (split it into a package)")
    assert not too_long, "\n".join(too_long)
