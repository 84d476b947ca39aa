"""The layout's import rules, read from the source.

The product never imports its tests; the planes never import each other or the
tooling; the shared core (``policies.core``) imports nothing of A1's but itself.
"""

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


# package (or sub-package) -> top-level A1 packages it must never import
FORBIDDEN = {
    "ext_proc": {"a1", "control", "conformance"},
    "control": {"a1", "ext_proc", "conformance"},
    "policies": {"a1", "ext_proc", "control", "conformance"},
}


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_planes_never_import_each_other_or_the_tooling(package: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: imports {', '.join(sorted(bad))}"
        for path in _files(package)
        if (bad := imported_tops(path) & FORBIDDEN[package])
    }
    assert not offenders, "\n".join(sorted(offenders))


def test_the_shared_core_imports_only_itself() -> None:
    """``policies.core`` is what every plane stands on, so it stands on nothing of A1's."""
    offenders = set()
    for path in _files("policies/core"):
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                name = node.module
            elif isinstance(node, ast.Import):
                name = node.names[0].name
            else:
                continue
            top = name.split(".")[0]
            if top in (*PRODUCT, *TEST_SUITES) and not name.startswith("policies.core"):
                offenders.add(f"{path.relative_to(ROOT)}: imports {name}")
    assert not offenders, "\n".join(sorted(offenders))


def test_the_rule_sees_an_offender(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from e2e import conftest\n")
    assert "e2e" in imported_tops(module)
