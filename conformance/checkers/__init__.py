"""Checkers: one per invariant (I-1 .. I-11), each a pure function of a recorded history.

Run one with ``conformance.checkers.registry.check(history, scenario, invariant)``;
``registry.CHECKERS`` lists them with their statistic and bounds. Shared pieces:
``stats`` (counts, percentiles, the latency test, convergence), ``evidence`` (what
a checker reads, and the rule that missing evidence fails) and ``steady`` (the
steady-state judgement most invariants share). docs/conformance-checkers.md says
what each checks and why its bounds are what they are.
"""
