"""Staged policy rollout: canary cell, soak, cell-by-cell promotion, automatic rollback.

- ``controller``: ``RolloutController``, the state machine that decides which policy
  version each cell runs (``Assignment``), from operator actions, time and counters;
- ``signals``: decision counters from many sidecars as reset-safe increases and rates;
- ``scrape``: ``Scraper``, which fetches the sidecars' ``/metrics`` off the request path,
  and ``metrics_targets``, which finds (and checks) their URLs in the xDS connections.

docs/rollout.md describes the states, the math and the operations.
"""

from control.rollout.controller import RolloutController, RolloutError, State
from control.rollout.scrape import (
    ScrapeError,
    Scraper,
    check_target,
    metrics_targets,
)
from control.rollout.signals import CounterTracker, Counts, Sample

__all__ = [
    "CounterTracker",
    "Counts",
    "RolloutController",
    "RolloutError",
    "Sample",
    "ScrapeError",
    "Scraper",
    "State",
    "check_target",
    "metrics_targets",
]  # fmt: skip
