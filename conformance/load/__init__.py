"""Load for the conformance suite: the Jepsen client (``client``: one request, one
``Op``) and generator (``generator``: which op next and when, closed or open loop).

Typical use by a runner::

    ops = OpClient(stack.http_url, stack.token, clock,
                   cell_urls={n: stack.cell_url(n) for n in stack.cell_names})
    load = Load(ops, recorder, {"victim": {...}, "bystander": {...}},
                schedule=Schedule.open(rate=100), mix=Mix(), seed=seed)
    with load:
        load.switch("I-3")           # ops are labelled with the scenario
        load.authorized = False      # while the decision point is down
        load.stats()                 # live progress per group
    load.readback()                  # after the run: one readback op per tenant
"""

from conformance.load.client import PROBE_KINDS, OpClient
from conformance.load.generator import OVERLOAD, Groups, Load, Mix, Planned, Planner, Schedule
from conformance.load.stats import GroupStats, unexpected
from conformance.load.tokens import TokenCache

__all__ = ["OVERLOAD", "PROBE_KINDS", "GroupStats", "Groups", "Load", "Mix", "OpClient",
           "Planned", "Planner", "Schedule", "TokenCache", "unexpected"]
