"""The package's import graph has no cycles: a static walk (ast) over src/convscope.

Every import that can run is an edge: module-level ones and those inside functions (a lazy
import that closes a cycle is still a cycle, only hidden); only ``if TYPE_CHECKING:`` blocks are
left out. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg`` (its ``__init__``)."""

import ast
from pathlib import Path

import convscope

ROOT = Path(convscope.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in ROOT.rglob("*.py")}


def runtime_imports(tree: ast.Module):
    """Every import node outside ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names
                ]
            for target in targets:
                while target and target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target in known and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_package():
    graph = import_graph()
    assert "convscope.attribution.cam" in graph and "convscope.hooks" in graph["convscope.attribution.cam"]
    assert "convscope.attribution" in graph["convscope.attribution.sanity"]  # a lazy `from . import METHODS`
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(component) for component in found)


def test_the_api_imports_and_runs_without_the_cli_stack():
    """``pip install convscope`` is the API: importing it loads none of the ``cli`` extra (rich,
    typer, jinja2, FastAPI, uvicorn), and with those unimportable the methods that take
    ``progress=True`` still run (the bar is simply not drawn). One subprocess for both checks."""
    import os
    import subprocess
    import sys

    code = """
import sys
import torch
from torch import nn
import convscope
convscope.attribute, convscope.attack, convscope.build_report
print(sorted(m for m in ("typer", "rich", "jinja2", "fastapi", "uvicorn") if m in sys.modules))
for name in ("rich", "typer", "jinja2", "fastapi", "uvicorn"):
    sys.modules[name] = None  # ImportError on import
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
x = torch.rand(1, 3, 32, 32)
heat = convscope.attribute(net, x, 0, method="occlusion", window=16, stride=16, progress=True)
result = convscope.attack(net, x, method="bim", eps=2 / 255, steps=2, progress=True)
print(tuple(heat.shape), tuple(result.x_adv.shape))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT.parent)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["[]", "(1, 1, 32, 32) (1, 3, 32, 32)"]
