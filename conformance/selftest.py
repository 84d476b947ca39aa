"""``a1 conformance --selftest``: every checker must fail on its deliberately broken stack.

A checker that passes everything proves nothing. Each variant
(``conformance.variants``) breaks one behaviour of one process; the self-test
starts a stack with that process wrapped, plays the scenario that exposes it, and
counts the variant as caught only when the checker of its invariant FAILS (not
skipped, not errored). The product itself passes the same scenarios in the
profile runs, so a catch is the variant's doing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.checkers.base import CheckResult
from conformance.scenarios.catalog import SCENARIOS
from conformance.suite import SuiteOptions, run_scenarios
from conformance.variants import VARIANTS, Variant
from policies.core.errors import UserError


@dataclass(frozen=True)
class Catch:
    variant: Variant
    caught: bool
    result: CheckResult | None  # the catching checker's result
    note: str = ""


def _verdict(variant: Variant, results: Sequence[CheckResult]) -> Catch:
    """Caught: the named checker failed, and for the variant's own problem (its
    ``shows`` words in the detail), not for missing evidence or an unwell stack."""
    mine = [r for r in results if r.invariant == variant.catches]
    for r in mine:
        if r.outcome == "failed" and variant.shows in r.detail \
                and not r.detail.startswith(("missing evidence", "the scenario could not")):
            return Catch(variant, True, r)
    first = mine[0] if mine else None
    why = (first.skipped or first.detail or "the checker passed") if first else "no result"
    return Catch(variant, False, first, why)


def run_variant(variant: Variant, seed: int | None, report: Path | None) -> Catch:
    scenario = next((s for s in SCENARIOS if s.id == variant.scenario), None)
    if scenario is None:
        raise UserError(f"variant {variant.name}: no scenario {variant.scenario!r}", 2)
    opts = SuiteOptions(profile="selftest", report=report / variant.name if report else None,
                        seed=seed, wrap=dict(variant.wrap))
    result = run_scenarios([scenario], opts,
                           lambda line: print(f"  {variant.name}: {line}", file=sys.stderr,
                                              flush=True) if "window" not in line else None)
    return _verdict(variant, result.results)


def run_selftest(only: frozenset[str] | None = None, seed: int | None = None,
                 report: Path | None = None) -> int:
    """Run every variant (or ``only`` those named); 0 when each one was caught."""
    names = sorted(only) if only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"--only {unknown[0]}: no such variant (have {', '.join(VARIANTS)})", 2)
    catches = []
    for name in names:
        print(f"variant {name}: {VARIANTS[name].description}", file=sys.stderr, flush=True)
        catches.append(run_variant(VARIANTS[name], seed, report))
    for c in catches:
        how = (f"{c.result.invariant} failed: {c.result.detail[:150]}" if c.caught and c.result
               else f"NOT CAUGHT: {c.note[:150]}")
        print(f"{c.variant.name:<22} {c.variant.scenario:<28} {how}")
    missed = [c for c in catches if not c.caught]
    print(f"{len(catches) - len(missed)} of {len(catches)} broken variants caught")
    return 1 if missed else 0
