"""Image sizes: each image's own size and the disk they take together (layers the
images share, the base and the python install layers, count once)."""

from __future__ import annotations

from typing import Any


def mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def unique_total(client: Any, refs: list[str]) -> int:
    """Sum of the distinct layers under ``refs`` (a layer's history id names it)."""
    seen: dict[object, int] = {}
    for ref in refs:
        for entry in client.api.history(ref):
            key = entry.get("Id")
            if not key or key == "<missing>":
                key = (entry.get("Created"), entry.get("CreatedBy"), entry.get("Size"))
            seen[key] = int(entry.get("Size") or 0)
    return sum(seen.values())


def table(rows: list[tuple[str, str, str]]) -> str:
    """``image  size  status`` rows, aligned."""
    head = ("IMAGE", "SIZE", "STATUS")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]
    return "\n".join(lines)
