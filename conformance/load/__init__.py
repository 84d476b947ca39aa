"""Load for the conformance suite: the Jepsen client (``client``: one request, one
``Op``) and generator (``generator``: which op next and when, closed or open loop).

Typical use by a runner::

    load = Load.for_stack(stack, recorder, schedule=Schedule.open(rate=100), mix=Mix(),
                          seed=seed)   # or Load(OpClient(...), recorder, groups, ...)
    with load:
        load.switch("I-5", groups=groups_for(stack.cell_table(), victim="cell-2"))
        load.authorized = False      # while the decision point is down
        load.live()                  # progress: per group ops/s and error rate
    load.readback()                  # after the run: one readback op per tenant
"""

from conformance.load.client import PROBE_KINDS, OpClient, RunClock
from conformance.load.generator import (
    OVERLOAD,
    Groups,
    Load,
    Mix,
    Planned,
    Planner,
    Schedule,
    groups_for,
)
from conformance.load.stats import GroupStats, unexpected
from conformance.load.tokens import TokenCache

__all__ = ["OVERLOAD", "PROBE_KINDS", "GroupStats", "Groups", "Load", "Mix", "OpClient",
           "Planned", "Planner", "RunClock", "Schedule", "TokenCache", "groups_for",
           "unexpected"]
