"""Only the HTTP layer knows HTTP (issue 15 point 3, DESIGN "One seam per concern").

Services, schemas, jobs and the CLI raise the domain errors of ``callerid.failures``; they never import the web
framework (Starlette, FastAPI) nor ``callerid.errors``, the one map from those errors to HTTP answers. Nor do they
import a module of the HTTP layer, so none of them reaches the framework indirectly either. The modules below are
the HTTP layer; a new route module joins the list explicitly.

Read from the source (``ast``): every ``import`` counts, at module level or inside a function, except those under
``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from callerid import openapi
from callerid.responses import JsonResponse

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "callerid"
FRAMEWORKS = ("starlette", "fastapi")

# The HTTP layer: the app and its middleware, the error map, request and response helpers, routes and their
# dependencies (the bearer checks), and the web pages (console, API docs, the demo phone).
HTTP_MODULES = frozenset(
    {
        "callerid.app",
        "callerid.errors",
        "callerid.fastlane",
        "callerid.http",
        "callerid.request_limits",
        "callerid.responses",
        "callerid.ops.middleware",
        "callerid.ops.routes",
        "callerid.accounts.dependencies",
        "callerid.accounts.routes",
        "callerid.analytics.routes",
        "callerid.analytics.app_routes",
        "callerid.delivery.auth",
        "callerid.delivery.routes",
        "callerid.engagement.routes",
        "callerid.identity.routes",
        "callerid.labels.routes",
        "callerid.numbers.routes",
        "callerid.personalisation.routes",
    }
)
HTTP_PACKAGES = ("callerid.console", "callerid.docs_page", "callerid.phone_page")

# Imports of the HTTP layer from outside it, each with its reason.
ALLOWED_CROSSINGS = {
    # `callerid worker` loads the job handlers the app registers (`callerid serve` names the app by string).
    ("callerid.cli.main", "callerid.app"),
}


def is_http(module: str) -> bool:
    return module in HTTP_MODULES or any(module == p or module.startswith(p + ".") for p in HTTP_PACKAGES)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" not in path.parts:
            yield module_name(path), path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module the file imports at run time, and of every name it imports from one
    (``from a import b`` gives ``a`` and ``a.b``: ``b`` may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[tuple[int, str]]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from walk(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                yield node.lineno, f"{source}.{alias.name}"
        for child in ast.iter_child_nodes(node):
            yield from walk(child)

    yield from walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def _within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def test_outside_the_http_layer_nothing_imports_the_web_framework_or_the_http_error_map() -> None:
    found = []
    for module, path in source_modules():
        if is_http(module):
            continue
        for line, name in imported_names(module, path):
            if any(_within(name, framework) for framework in FRAMEWORKS) or _within(name, "callerid.errors"):
                found.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    assert not found, "raise callerid.failures errors instead:\n" + "\n".join(found)


def test_outside_the_http_layer_nothing_imports_an_http_module() -> None:
    """With the test above, this keeps the framework out of services even through another module."""
    found = []
    for module, path in source_modules():
        if is_http(module):
            continue
        for line, name in imported_names(module, path):
            target = next((m for m in _modules_named(name) if is_http(m)), None)
            if target is not None and (module, target) not in ALLOWED_CROSSINGS:
                found.append(f"{path.relative_to(SRC)}:{line} imports {name} (HTTP layer)")
    assert not found, "\n".join(sorted(set(found)))


def _modules_named(name: str) -> Iterator[str]:
    """``name`` and the packages it is inside: importing ``a.b.c`` imports ``a.b`` and ``a`` too."""
    parts = name.split(".")
    for end in range(len(parts), 1, -1):
        yield ".".join(parts[:end])


def test_the_http_layer_lists_only_modules_that_exist() -> None:
    modules = {module for module, _ in source_modules()}
    assert HTTP_MODULES - modules == set()
    assert {p for p in HTTP_PACKAGES if p not in modules} == set()
    assert {crossing for crossing in ALLOWED_CROSSINGS if crossing[0] not in modules} == set()


def test_the_domain_errors_module_is_outside_the_http_layer() -> None:
    assert not is_http("callerid.failures")
    path = PACKAGE / "failures.py"
    assert [name for _, name in imported_names("callerid.failures", path) if not name.startswith("__future__")] == []


def test_the_wire_schemas_media_type_is_the_responses_one() -> None:
    assert JsonResponse.media_type == openapi.JSON
