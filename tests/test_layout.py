"""The tests' own layout: shared code lives in tests/fixtures (or tests/fakes), and no test module
imports from a conftest or from another test module."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_nothing_is_imported_from_a_conftest_or_a_test_module() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for module in _imported_modules(path):
            last = module.rsplit(".", 1)[-1]
            if module.startswith("tests") and (last == "conftest" or last.startswith("test_")):
                offenders.append(f"{path.relative_to(TESTS)} imports {module}")
    assert not offenders, "import shared code from tests.fixtures instead:\n" + "\n".join(offenders)


def test_test_packages_mirror_the_source_packages() -> None:
    source = TESTS.parent / "src" / "torale"
    packages = {p.name for p in source.iterdir() if (p / "__init__.py").exists()}
    # Tests that cross packages, and the shared code the tests use.
    cross_cutting = {"e2e", "hardening", "drills", "fakes", "fixtures"}
    test_packages = {p.name for p in TESTS.iterdir() if (p / "__init__.py").exists()}
    assert test_packages - packages <= cross_cutting, test_packages - packages - cross_cutting
