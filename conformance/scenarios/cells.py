"""I-9's fault: a cell added to the running platform (and removed again as the repair).

The new cell is a real cell process on a free port, started before the spec names
it (a route must never point at a cell that is not up); the spec is edited the
way an operator does (``control.spec.edit.add_cell``, what ``a1 cells add`` runs)
and the control plane's make-before-break transition publishes it. The tables
before and after are recorded for the checker, which derives who moved.
"""

from __future__ import annotations

from conformance.harness.stacks import published, quiet_ports
from conformance.harness.waiting import poll
from conformance.load import groups_for
from conformance.nemesis.base import Fault
from conformance.runner import Run
from control.spec.edit import add_cell as edit_add_cell
from control.spec.edit import remove_cell as edit_remove_cell

PUBLISH_TIMEOUT = 90.0  # seconds: three phases, each ACKed and drained
SAMPLE = 2000  # tenant names the checker's binomial test draws on


def add_cell(run: Run) -> Fault:
    target = run.target
    taken = set(target.cell_table().cells)
    name = next(f"cell-{i}" for i in range(len(taken) + 1, 1000) if f"cell-{i}" not in taken)
    port = quiet_ports(1)[0]
    spec, endpoint = target.added_cell(name, port)
    scenario = run.load.scenario

    def inject() -> None:
        run.observe(scenario, "sample_tenants", [f"sample-{i}" for i in range(SAMPLE)])
        target.launcher.start(spec)
        target.launcher.wait_ready([name], timeout=30)
        run.observe(scenario, "table_before", target.cell_table().to_dict())
        edit_add_cell(target.spec_dir, name, [endpoint])
        poll(lambda: published(target), timeout=PUBLISH_TIMEOUT, interval=0.2,
             what=f"{name} added and published")
        after = target.cell_table()
        run.observe(scenario, "table_after", after.to_dict())
        # The new table's tenants per cell: the new cell's are movers by definition, so
        # the routing check always sees a moved tenant.
        run.load.switch(groups=groups_for(after))

    def repair() -> None:
        try:
            if name in target.cell_table().cells:
                edit_remove_cell(target.spec_dir, name)
                poll(lambda: published(target), timeout=PUBLISH_TIMEOUT, interval=0.2,
                     what=f"{name} removed and published")
        finally:
            if name in target.launcher.names():
                target.launcher.stop(name)

    return Fault(f"add-cell:{name}", inject, repair,
                 "about 1/(N+1) of tenants move, all to the new cell; no request fails")
