"""The shared layer's floors, read from the source (every import, also the lazy ones inside functions):
core <- data <- domain <- api / proxy. A lower floor never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "llm_platform"

# layer -> the llm_platform subpackages it must not import
FORBIDDEN = {
    "core": {"data", "domain", "api", "proxy", "web", "config", "observability", "secrets", "catalog"},
    "data": {"domain", "api", "proxy", "web"},
    "domain": {"api", "proxy", "web"},
}


def imported_platform_modules(source: str) -> set[str]:
    """Every ``llm_platform.…`` module a file imports, dotted (``from llm_platform import x``: ``llm_platform.x``)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError("relative import: the layering test reads absolute imports only")
    return {module for module in modules if module.split(".")[0] == "llm_platform"}


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_platform_modules(path.read_text()):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                found.append(f"{path.relative_to(PACKAGE)} imports {module}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_from_the_floors_above_it(layer) -> None:
    assert (PACKAGE / layer).is_dir()
    assert violations(layer) == []


def test_the_checker_sees_lazy_and_from_package_imports() -> None:
    # Given imports of every shape a module might use, at module level and inside a function
    source = (
        "import llm_platform.api.app\n"
        "from llm_platform import domain\n"
        "def f():\n"
        "    from llm_platform.proxy.keys import KeyCache\n"
        "import json\n"
    )
    # Then each one is reported under its dotted name, and nothing outside the platform is
    assert imported_platform_modules(source) >= {
        "llm_platform.api.app",
        "llm_platform.domain",
        "llm_platform.proxy.keys",
    }
    assert "json" not in imported_platform_modules(source)


def test_the_local_stack_has_no_import_cycle() -> None:
    """Modules of local_stack import each other one way only (lazy imports count): the servers the stack starts
    (Stripe simulator, upstream, outbox) never import the stack back."""
    root = PACKAGE.parents[2] / "local_stack"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("local_stack"):
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("local_stack"))
        graph[name] = imported
    edges = {
        name: {target for target in imported if target in graph and target != name} for name, imported in graph.items()
    }

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for target in edges[node]:
                if target == start:
                    return [*trail, start]
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*trail, target]))
        return None

    assert "local_stack.server_thread" in graph and "local_stack.stripe_simulator.state" in graph
    assert [cycle for name in sorted(graph) if (cycle := cycle_from(name))] == []
