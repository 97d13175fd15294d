"""The house's shape, checked: rooms with a docstring, modules of a readable size,
and no module reaching into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROUTER = Path(__file__).parents[2] / "router"
MODULES = sorted(p for p in ROUTER.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_room_says_what_it_does_and_what_it_may_use() -> None:
    rooms = [p for p in ROUTER.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert len(rooms) >= 10
    for room in rooms:
        doc = ast.get_docstring(ast.parse((room / "__init__.py").read_text()))
        assert doc is not None and "may use" in doc.lower(), room.name


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROUTER)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_no_module_imports_another_modules_private_name() -> None:
    reaching = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("router"):
                reaching += [
                    f"{path.relative_to(ROUTER)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and alias.name != "__version__"
                ]
    assert reaching == []
