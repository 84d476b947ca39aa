"""A real stack on free loopback ports, and what checks read from it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from a1.launcher import LaunchError, check_ports_free, free_ports
from a1.stack import Stack, StackOptions, StackPorts
from conformance.harness.client import Client
from policies.core.cells import CellTable
from policies.core.errors import UserError

MAX_TENANT_SEARCH = 1_000_000  # names tried to find every cell's tenants

# Fast health checks so a killed cell is noticed, and a restarted one readmitted, quickly.
HEALTH_INTERVAL_MS = 250


def tenants_by_cell(stack: Stack, per_cell: int = 3,
                    prefix: str = "tenant") -> dict[str, list[str]]:
    """``per_cell`` tenant names for every cell, by the stack's own cell table."""
    return tenants_in_table(stack.cell_table(), per_cell, prefix)


def tenants_in_table(table: CellTable, per_cell: int = 3,
                     prefix: str = "tenant") -> dict[str, list[str]]:
    """``per_cell`` tenant names (``prefix-N``) for every cell of ``table``.

    Bounded: a cell that owns no bucket (or too few to be hit) is a UserError naming
    it, not an endless search.
    """
    out: dict[str, list[str]] = {c: [] for c in table.cells}
    for i in range(MAX_TENANT_SEARCH):
        if all(len(v) >= per_cell for v in out.values()):
            return out
        name = f"{prefix}-{i}"
        cell = table.lookup(name)
        if len(out[cell]) < per_cell:
            out[cell].append(name)
    short = next(c for c, v in out.items() if len(v) < per_cell)
    raise UserError(f"cell table: cell {short!r} owns no tenant among {MAX_TENANT_SEARCH} "
                    f"names; give it buckets", 2)


def metric(stack: Stack, name: str, absent: float | None = 0.0) -> float | None:
    """A sample's value from the sidecar's /metrics; ``absent`` when there is none (a
    counter not yet incremented is 0; evidence a checker needs passes None, so a metric
    renamed or gone is missing evidence, never a reassuring 0)."""
    text = Client(stack.metrics_url.rsplit("/", 1)[0]).get("/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return absent


def make_stack(root: Path, **options: Any) -> Stack:
    cells = options.pop("cells", 3)
    return Stack(StackOptions(state_dir=root, cells=cells, ports=StackPorts.free(cells),
                              health_interval_ms=HEALTH_INTERVAL_MS, **options))


def quiet_ports(count: int) -> list[int]:
    """``count`` consecutive free loopback ports from below the kernel's ephemeral range,
    where busy client sockets (a load's connections, TIME_WAIT after it) never land, and
    chosen in one go, so no two of a stack's listeners can be handed the same port."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        try:
            check_ports_free([("internal", "127.0.0.1", p) for p in range(base, base + count)])
        except LaunchError:
            continue
        return list(range(base, base + count))
    raise LaunchError(f"no free block of {count} loopback ports below 32000")


def port_args() -> list[str]:
    """`a1 up` flags: free ports for every listener and a free internal block (base..base+13)."""
    http, https, admin = free_ports(3)
    base = quiet_ports(14)[0]
    return ["--http-port", str(http), "--https-port", str(https), "--admin-port",
            str(admin), "--internal-port-base", str(base)]


def control_status(stack: Stack) -> dict[str, Any]:
    """The control plane's status document (docs/control-plane.md, ## Status)."""
    return Client(stack.control_url, timeout=5).get("/status").json()  # type: ignore[no-any-return]


def published(stack: Stack) -> bool:
    """The spec directory as it is now is published: every phase of its transition done."""
    from control.spec import load_spec

    digest = load_spec(stack.files.platform).digest
    last = control_status(stack).get("last_transition") or {}
    return (last.get("digest") == digest and not last.get("error")
            and last.get("done") == last.get("phases"))
