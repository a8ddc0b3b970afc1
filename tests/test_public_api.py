"""Every public module says what it exports (``__all__``), and every name it lists exists."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "convscope"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if not (p.name.startswith("_") and p.name != "__init__.py"))


def _bound(tree: ast.Module) -> set[str]:
    """Names bound at the module's top level (definitions, assignments, imports, also under if/try)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node in tree.body:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_public_module_defines_all(path):
    tree = ast.parse(path.read_text())
    exported = None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            exported = ast.literal_eval(node.value)
    public = [
        n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")
    ]
    if exported is None:
        assert not public, f"{path.name} defines {public[:5]} but no __all__"
        return
    missing = set(exported) - _bound(tree)
    assert not missing, f"__all__ of {path.name} lists names it does not define: {sorted(missing)}"
    assert len(exported) == len(set(exported))
