"""The layout's import rules, read from the source: the product never imports its tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("a1", "ext_proc", "policies", "control", "conformance")
TEST_SUITES = ("e2e", "tests")


def imported_tops(path: Path) -> set[str]:
    """Top-level package names that ``path`` imports (absolute imports only)."""
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_never_imports_its_test_suites(package: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: imports {', '.join(sorted(bad))}"
        for path in (ROOT / package).rglob("*.py")
        if (bad := imported_tops(path) & set(TEST_SUITES))
    }
    assert not offenders, "\n".join(sorted(offenders))


def test_the_rule_sees_an_offender(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from e2e import conftest\n")
    assert "e2e" in imported_tops(module)
