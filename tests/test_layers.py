"""The layout's rules, read from the source: data flows router -> workflow -> (auth, db)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("aidaccess", "api", "auth", "db", "workflow")
# Who may import whom, among the layers; `aidaccess` (settings, clock, logs) is below them all.
MAY_IMPORT = {
    "api": {"api", "auth", "db", "workflow", "aidaccess"},
    "workflow": {"workflow", "auth", "db", "aidaccess"},
    "auth": {"auth", "db", "aidaccess"},
    "db": {"db", "aidaccess"},
}
# db.seed builds the demo data through the workflow, as an operator would.
EXCEPTIONS = {"db.seed": {"workflow", "auth"}}
# The HTTP edge takes the unit of work from db/, and nothing else: queries are the workflow's,
# who a token names is auth's.
API_MAY_IMPORT_FROM_DB = {"db.engine"}
QUERY_BUILDERS = {"select", "insert", "update", "delete", "text", "union", "union_all"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in the file, at any depth (a deferred import is still one)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def _first_party(module: str, names: list[str]) -> set[str]:
    targets = {module} | {f"{module}.{name}" for name in names}
    return {t for t in targets if t in MODULES}


GRAPH = {
    name: set().union(set(), *(_first_party(m, n) for m, n in _imports(path))) - {name}
    for name, path in MODULES.items()
}


def test_the_modules_are_found():
    assert {"api.app", "auth.tokens", "db.engine", "workflow.audit", "aidaccess.cli"} <= set(MODULES)


def test_no_import_circle():
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                circles.append(path[path.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert circles == []


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_what_is_below_it(layer):
    wrong = []
    for module, imported in GRAPH.items():
        if module.split(".")[0] != layer:
            continue
        allowed = MAY_IMPORT[layer] | EXCEPTIONS.get(module, set())
        wrong += [(module, i) for i in imported if i.split(".")[0] not in allowed]
    assert wrong == []


def test_the_http_edge_takes_only_the_unit_of_work_from_db():
    wrong = [
        (m, i)
        for m, imported in GRAPH.items()
        if m.startswith("api.")
        for i in imported
        if i.startswith("db") and i not in API_MAY_IMPORT_FROM_DB
    ]
    assert wrong == []


def test_routers_build_no_queries():
    wrong = []
    for module, path in MODULES.items():
        if module.startswith("api.routers."):
            wrong += [
                (module, name)
                for source, names in _imports(path)
                if source.split(".")[0] in ("sqlalchemy", "sqlmodel")
                for name in names
                if name in QUERY_BUILDERS
            ]
    assert wrong == []


def test_only_the_edge_knows_http_and_only_auth_tokens_knows_jose():
    for module, path in MODULES.items():
        roots = {source.split(".")[0] for source, _ in _imports(path)}
        if module.split(".")[0] in ("workflow", "auth", "db"):
            assert not roots & {"fastapi", "starlette"}, module
        if module != "auth.tokens":
            assert "jose" not in roots, module
