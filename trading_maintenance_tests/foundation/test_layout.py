"""The code's shape: pure logic in core/ depends on nothing Dagster-facing."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "trading_maintenance"
OUTSIDE_CORE = ("trading_maintenance.resources", "trading_maintenance.defs", "trading_maintenance.cli", "trading_maintenance.definitions")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_core_imports_nothing_from_resources_defs_or_the_cli():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted((PACKAGE / "core").rglob("*.py"))
        for name in _imports(path)
        if name.startswith(OUTSIDE_CORE)
    ]
    assert offenders == []


def test_core_is_split_by_domain():
    flat = [p.name for p in (PACKAGE / "core").glob("*.py") if p.name != "__init__.py"]
    assert flat == []


def test_every_dependency_is_pinned_in_the_lock():
    import re
    import tomllib

    root = PACKAGE.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    names = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].strip().lower().replace("_", "-") for dep in wanted}
    pinned = {
        line.split("==", 1)[0].strip().lower().replace("_", "-")
        for line in (root / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert sorted(names - pinned) == []
