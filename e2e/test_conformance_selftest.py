"""The self-test: every deliberately broken variant is caught by its invariant's checker.

Each variant (``conformance.variants``) starts its own stack with one process
wrapped to break one behaviour, plays the scenario that exposes it, and must make
the named checker FAIL: a checker that passes a broken stack proves nothing.
"""

from __future__ import annotations

import pytest

from conformance.selftest import run_variant
from conformance.variants import VARIANTS

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_broken_variant_is_caught(name: str) -> None:
    variant = VARIANTS[name]
    catch = run_variant(variant, seed=5, report=None)
    assert catch.caught, (f"{name} ({variant.description}) was not caught by "
                          f"{variant.catches} in {variant.scenario}: {catch.note}")
    assert catch.result is not None and catch.result.invariant == variant.catches
