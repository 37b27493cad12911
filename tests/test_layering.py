"""The import structure of perf_alerts: layers, no cycles (read from the source with `ast`).

Every `import` counts, at module level or inside a function (a lazy import is still a
dependency: it only moves the cost). Imports under `if TYPE_CHECKING:` are annotations
only; they cannot form a runtime cycle, but they must respect the layers too, except the
few listed in `TYPE_ONLY_EXCEPTIONS`.

The layers, lowest first; a module may import its own layer and the ones below, never
one above. They follow the data flow of SPEC §2 (sources → store → analytics → rules →
alerts → notifications), with the refinements the code needs:

 errors        perf_alerts.errors: the error hierarchy; imports nothing from perf_alerts
 basics        timeutil, catalog (metric names), aio (the I/O loop thread), textsafe (escaping
               for terminals and Discord markdown), selfmetrics (this process's own counters)
 model         samples, labels, alerts
 vocabulary    condition (the policy condition language), detectors (anomaly detector
               names and thresholds), template (annotation templates): what config
               validates against, kept below config so that loading a configuration
               never imports analytics or management
 config        YAML → pydantic; amimport (an Alertmanager config → perf-alerts config text)
 store         SQLite; every SQL statement lives here
 sources       files, host, simulate: samples in
 analytics     stats, trend, anomaly, forecast, health, recommend
 alerts        the state machine and its input (`SeriesResult`), history, views. Below
               rules: the state machine is pure (a rule's config and results in,
               transitions out), and the rule tools drive it
 rules         evaluation, backtest and test-rules (the last two replay rules through
               the state machine)
 insights      analysis reports over store + analytics (used by core and policies)
 core          the `PerfAlerts` façade: config + store + evaluation + alerts
 notify        the notification pipeline (it takes a `PerfAlerts`)
 manage        schedules, policies, actions, summaries, the daemon
 front ends    http, crew (the only package importing crewai)
 cli           cli, demo (the CLI starts the web server, the crew and the demo)
 entry         the package's public API (`perf_alerts.record`, lazy) and `__main__`

Cycles are checked twice: between modules (no module reaches itself through runtime
imports) and between the units of the layer table (top-level modules and packages, e.g.
`rules` and `alerts`), so two packages never depend on each other in both directions.

And SQL stays in the store: no module outside `perf_alerts.store` runs a statement or
holds SQL text.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "perf_alerts"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("perf_alerts.errors",)),
    ("basics", ("perf_alerts.timeutil", "perf_alerts.catalog", "perf_alerts.aio", "perf_alerts.textsafe",
                "perf_alerts.selfmetrics")),
    ("model", ("perf_alerts.model",)),
    ("vocabulary", ("perf_alerts.condition", "perf_alerts.detectors", "perf_alerts.template")),
    ("config", ("perf_alerts.config", "perf_alerts.amimport")),
    ("store", ("perf_alerts.store",)),
    ("sources", ("perf_alerts.sources", "perf_alerts.simulate")),
    ("analytics", ("perf_alerts.analytics",)),
    ("alerts", ("perf_alerts.alerts",)),
    ("rules", ("perf_alerts.rules",)),
    ("insights", ("perf_alerts.insights",)),
    ("core", ("perf_alerts.core",)),
    ("notify", ("perf_alerts.notify",)),
    ("manage", ("perf_alerts.manage",)),
    ("front ends", ("perf_alerts.http", "perf_alerts.crew")),
    ("cli", ("perf_alerts.cli", "perf_alerts.demo")),
    ("entry", ("perf_alerts.__main__", "perf_alerts")),
]

# (importer, imported) pairs allowed to point upward in annotations only
TYPE_ONLY_EXCEPTIONS = {
    # `optimize(system: PerfAlerts, ...)`: recommendations read the whole system
    ("perf_alerts.analytics.recommend", "perf_alerts.core"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    type_only: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PKG).rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_of(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def add(target: str, node: ast.stmt, type_only: bool) -> None:
        if target == PKG or target.startswith(PKG + "."):
            out.append(Import(name, target, node.lineno, type_only))

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, type_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                # `from perf_alerts import insights` imports the submodule perf_alerts.insights
                add(sub if sub in MODULES else module, node, type_only)
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return out


IMPORTS = [imp for name, path in MODULES.items() for imp in _imports_of(name, path)]


def _unit(module: str) -> str:
    """The layer-table entry a module belongs to (longest matching prefix)."""
    best = ""
    for _, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best = p
    assert best, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best


def _layer(module: str) -> int:
    unit = _unit(module)
    return next(i for i, (_, prefixes) in enumerate(LAYERS) if unit in prefixes)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def _where(imp: Import) -> str:
    rel = MODULES[imp.importer].relative_to(SRC.parent)
    return f"{rel}:{imp.line}: {imp.importer} imports {imp.imported}"


# --------------------------------------------------------------------------- tests


def test_every_module_is_in_a_layer() -> None:
    missing = []
    for m in MODULES:
        try:
            _unit(m)
        except AssertionError as e:
            missing.append(str(e))
    assert not missing, "\n".join(missing)


def test_the_error_module_is_the_bottom_layer() -> None:
    assert [_where(i) for i in IMPORTS if i.importer == "perf_alerts.errors"] == []


def test_importing_the_package_imports_nothing_else_up_front() -> None:
    """`import perf_alerts` stays cheap: its own imports are lazy (inside functions)."""
    tree = ast.parse(MODULES[PKG].read_text(encoding="utf-8"))
    eager = [n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
             and (getattr(n, "module", None) or "").startswith(PKG)]
    eager += [n.lineno for n in tree.body if isinstance(n, ast.Import)
              and any(a.name.startswith(PKG) for a in n.names)]
    assert eager == [], f"perf_alerts/__init__.py imports perf_alerts modules at module level (lines {eager})"


def test_lower_layers_never_import_upper_layers() -> None:
    bad = []
    for imp in IMPORTS:
        if imp.imported == PKG:
            continue  # the package itself runs first for any import; test above keeps it lazy
        if _layer(imp.imported) <= _layer(imp.importer):
            continue
        if imp.type_only and (imp.importer, imp.imported) in TYPE_ONLY_EXCEPTIONS:
            continue
        up = f"{LAYERS[_layer(imp.importer)][0]} → {LAYERS[_layer(imp.imported)][0]}"
        bad.append(f"{_where(imp)}{' (type only)' if imp.type_only else ''}  [{up}]")
    assert not bad, "imports against the layer order (see this test's docstring):\n" + "\n".join(bad)


def test_no_import_cycles_between_modules() -> None:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if not imp.type_only and imp.imported != imp.importer and imp.imported != PKG:
            edges.setdefault(imp.importer, set()).add(imp.imported)
    cycles = _cycles(edges)
    assert not cycles, "import cycles between modules:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_no_import_cycles_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    why: dict[tuple[str, str], Import] = {}
    for imp in IMPORTS:
        if imp.type_only or imp.imported == PKG:
            continue
        a, b = _unit(imp.importer), _unit(imp.imported)
        if a != b:
            edges.setdefault(a, set()).add(b)
            why.setdefault((a, b), imp)
    cycles = _cycles(edges)
    lines = []
    for comp in cycles:
        lines.append(" ↔ ".join(comp))
        lines += [f"    {_where(imp)}" for (a, b), imp in sorted(why.items()) if a in comp and b in comp]
    assert not cycles, "import cycles between packages:\n" + "\n".join(lines)


@pytest.mark.parametrize("name", ["perf_alerts.config", "perf_alerts.alerts.state"])
def test_the_cycles_this_layering_removed_stay_removed(name: str) -> None:
    """config used to import analytics and manage; alerts.state used to import rules.evaluate."""
    above = [_where(i) for i in IMPORTS if i.importer == name and _layer(i.imported) > _layer(name)]
    assert above == []


_SQL_RE = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN|WITH)\b[^\n]*"
                     r"\b(FROM|INTO|SET|TABLE|INDEX|WHERE|IMMEDIATE|[a-z_]+\s*=)")


def test_no_sql_outside_the_store() -> None:
    bad = []
    for name, path in MODULES.items():
        if name == "perf_alerts.store" or name.startswith("perf_alerts.store."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany", "executescript") and node.args
                    and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp))):
                bad.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: .{node.func.attr}(<SQL>)")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and _SQL_RE.match(node.value)):
                bad.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: SQL text {node.value[:60]!r}")
    assert not bad, "SQL outside perf_alerts.store (add a method to a store mixin instead):\n" + "\n".join(bad)


def test_the_sql_check_sees_sql() -> None:
    assert _SQL_RE.match("SELECT id FROM alerts") and _SQL_RE.match("UPDATE schedules SET runs = runs + 1")
    assert _SQL_RE.match("INSERT OR IGNORE INTO policy_state (name) VALUES (?)")
    assert not _SQL_RE.match("Select the worst alerts") and not _SQL_RE.match("update the dashboard")
