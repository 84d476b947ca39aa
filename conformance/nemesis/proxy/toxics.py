"""Toxics: what a fault does to the bytes of one direction of one proxied connection.

The kinds and their attributes are Toxiproxy's, so a scenario reads the same as a
Toxiproxy one: ``latency`` (latency ms, jitter ms), ``bandwidth`` (rate KB/s, KB =
1000 bytes), ``timeout`` (hold all data, close after timeout ms; 0 = hold until the
toxic is removed), ``reset_peer`` (drop data, reset with RST after timeout ms),
``slicer`` (average_size, size_variation bytes, delay us), ``limit_data`` (close
after N bytes), plus ``blackhole`` (drop data silently, keep the connection open).

Two deliberate differences from Toxiproxy: ``reset_peer`` counts its timeout from
the moment the toxic applies to a connection rather than from the next data, so an
idle stream (an xDS stream waiting for a push) is reset too; and ``toxicity`` is
drawn once per connection and toxic (a connection is either poisoned or not), from
the proxy's seedable RNG, so a run with a seed draws the same sequence.

A chunk passes through the toxics of its direction in the order they were added;
each stage hands its output (possibly split, delayed, truncated or dropped) to the
next, and the last stage writes. Waits end early when the toxic is removed or
updated, so switching a toxic at run time acts on connections already open.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from policies.core.errors import one_line

DIRECTIONS = ("upstream", "downstream")  # upstream: client -> server; downstream: back
FIELDS = ("name", "kind", "direction", "toxicity", "attributes")
UPDATABLE = ("toxicity", "attributes")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_MS = 3_600_000  # an hour: longer than any scenario's fault window


class ToxicError(ValueError):
    """A toxic document that is refused; the message names the field."""


@dataclass(frozen=True)
class Attr:
    """One attribute of a kind: integer in [low, high]; ``default`` None means required."""

    default: int | None
    low: int
    high: int
    unit: str


KINDS: dict[str, dict[str, Attr]] = {
    "latency": {"latency": Attr(None, 0, MAX_MS, "ms"), "jitter": Attr(0, 0, MAX_MS, "ms")},
    "bandwidth": {"rate": Attr(None, 1, 10_000_000, "KB/s")},
    "timeout": {"timeout": Attr(0, 0, MAX_MS, "ms")},
    "blackhole": {},
    "reset_peer": {"timeout": Attr(0, 0, MAX_MS, "ms")},
    "slicer": {"average_size": Attr(None, 1, 1 << 20, "bytes"),
               "size_variation": Attr(0, 0, 1 << 20, "bytes"),
               "delay": Attr(0, 0, MAX_MS * 1000, "us")},
    "limit_data": {"bytes": Attr(None, 0, 1 << 50, "bytes")},
}


@dataclass(frozen=True)
class Toxic:
    """One installed toxic. ``serial`` is new on every add and update: a connection's
    toxicity draw and a toxic's timers belong to one serial."""

    name: str
    kind: str
    direction: str
    toxicity: float
    attributes: Mapping[str, int]
    serial: int = field(default=0, compare=False)

    def attr(self, key: str) -> int:
        return self.attributes[key]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "direction": self.direction,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _unknown(where: str, doc: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in doc:
        if key not in known:
            raise ToxicError(f"{where}.{one_line(key, 64)}: unknown field "
                             f"(expected {', '.join(known) or 'none'})")


def _int(where: str, value: Any, spec: Attr) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)  # 100.0 is 100; 1.5 is not a millisecond count
        else:
            raise ToxicError(f"{where}: must be an integer ({spec.unit}), "
                             f"got {_type_name(value)}")
    if not spec.low <= value <= spec.high:
        raise ToxicError(f"{where}: must be between {spec.low} and {spec.high} {spec.unit}, "
                         f"got {value}")
    return value


def parse_toxic(doc: Any, where: str = "toxic") -> Toxic:
    """A toxic from its JSON document, or ToxicError naming the first bad field."""
    if not isinstance(doc, dict):
        raise ToxicError(f"{where}: must be an object, got {_type_name(doc)}")
    _unknown(where, doc, FIELDS)
    kind = doc.get("kind")
    if not isinstance(kind, str):
        raise ToxicError(f"{where}.kind: required, a string (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise ToxicError(f"{where}.kind: unknown toxic kind {one_line(repr(kind), 80)} "
                         f"(one of {', '.join(KINDS)})")
    direction = doc.get("direction", "downstream")
    if direction not in DIRECTIONS:
        raise ToxicError(f"{where}.direction: must be upstream or downstream, got "
                         f"{one_line(repr(direction), 80)}")
    name = doc.get("name", f"{kind}_{direction}")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ToxicError(f"{where}.name: must be 1-64 characters of A-Z a-z 0-9 _ . - "
                         f"starting with a letter or digit, got {one_line(repr(name), 80)}")
    toxicity = doc.get("toxicity", 1.0)
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)):
        raise ToxicError(f"{where}.toxicity: must be a number, got {_type_name(toxicity)}")
    if not (math.isfinite(toxicity) and 0.0 <= toxicity <= 1.0):
        raise ToxicError(f"{where}.toxicity: must be between 0 and 1, got {toxicity}")
    raw = doc.get("attributes", {})
    if not isinstance(raw, dict):
        raise ToxicError(f"{where}.attributes: must be an object, got {_type_name(raw)}")
    specs = KINDS[kind]
    _unknown(f"{where}.attributes", raw, tuple(specs))
    attributes: dict[str, int] = {}
    for key, spec in specs.items():
        if key in raw:
            attributes[key] = _int(f"{where}.attributes.{key}", raw[key], spec)
        elif spec.default is None:
            raise ToxicError(f"{where}.attributes.{key}: required for {kind} ({spec.unit})")
        else:
            attributes[key] = spec.default
    if kind == "slicer" and attributes["size_variation"] >= attributes["average_size"]:
        raise ToxicError(f"{where}.attributes.size_variation: must be less than average_size "
                         f"({attributes['average_size']}), got {attributes['size_variation']}")
    return Toxic(name, kind, direction, float(toxicity), attributes)


def updated(old: Toxic, doc: Any, where: str = "toxic") -> Toxic:
    """``old`` with ``doc``'s toxicity and attributes (merged); its name, kind and
    direction stay (remove the toxic and add it again to change those)."""
    if not isinstance(doc, dict):
        raise ToxicError(f"{where}: must be an object, got {_type_name(doc)}")
    for key in ("name", "kind", "direction"):
        if key in doc and doc[key] != old.to_dict()[key]:
            raise ToxicError(f"{where}.{key}: cannot be changed by an update; remove the toxic "
                             "and add it again")
    _unknown(where, doc, FIELDS)
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ToxicError(f"{where}.attributes: must be an object, got "
                         f"{_type_name(attributes)}")
    merged = old.to_dict()
    merged["attributes"] = {**old.attributes, **attributes}
    if "toxicity" in doc:
        merged["toxicity"] = doc["toxicity"]
    return parse_toxic(merged, where)


def deadline(toxic: Toxic) -> tuple[float, bool] | None:
    """``(seconds after the toxic applies, reset?)`` at which it closes the connection."""
    if toxic.kind == "timeout" and toxic.attr("timeout") > 0:
        return toxic.attr("timeout") / 1000, False
    if toxic.kind == "reset_peer":
        return toxic.attr("timeout") / 1000, True
    return None


# -- the per-chunk transform ----------------------------------------------------------


class Link(Protocol):
    """One proxied connection as its toxics see it (``server.Connection``)."""

    rng: random.Random
    closed: bool

    def active(self, toxic: Toxic) -> bool:
        """Still installed, and drawn to apply to this connection."""
        ...

    async def wait(self, until: float | None, toxic: Toxic) -> bool:
        """Sleep until monotonic ``until`` (None: forever): True when it came, False as
        soon as ``toxic`` stops being active or the connection closes."""
        ...

    def state(self, toxic: Toxic) -> dict[str, Any]:
        """Per connection and toxic name: survives an update of the toxic."""
        ...

    def close(self, reset: bool) -> None:
        ...


Send = Callable[[bytes], Awaitable[None]]
Stage = Callable[[Toxic, bytes, float, Link, Send], Awaitable[None]]


async def transform(chain: Sequence[Toxic], data: bytes, arrival: float, link: Link,
                    send: Send) -> None:
    """Pass one chunk (read at monotonic ``arrival``) through ``chain``, then ``send``."""
    await _stage(chain, 0, data, arrival, link, send)


async def _stage(chain: Sequence[Toxic], i: int, data: bytes, arrival: float, link: Link,
                 send: Send) -> None:
    if link.closed or not data:
        return
    if i == len(chain):
        await send(data)
        return

    async def nxt(piece: bytes) -> None:
        await _stage(chain, i + 1, piece, arrival, link, send)

    toxic = chain[i]
    if link.active(toxic):
        await STAGES[toxic.kind](toxic, data, arrival, link, nxt)
    else:
        await nxt(data)


async def _latency(t: Toxic, data: bytes, arrival: float, link: Link, nxt: Send) -> None:
    jitter = t.attr("jitter")
    delay = t.attr("latency") + (link.rng.uniform(-jitter, jitter) if jitter else 0.0)
    await link.wait(arrival + max(0.0, delay) / 1000, t)
    await nxt(data)


async def _bandwidth(t: Toxic, data: bytes, arrival: float, link: Link, nxt: Send) -> None:
    rate = t.attr("rate") * 1000  # bytes per second
    step = max(1, rate // 10)  # at most a tenth of a second's worth at once
    state = link.state(t)
    for off in range(0, len(data), step):
        if not await link.wait(state.get("next", 0.0), t):
            await nxt(data[off:])  # removed meanwhile: the rest goes unpaced, not lost
            return
        piece = data[off:off + step]
        state["next"] = max(time.monotonic(), state.get("next", 0.0)) + len(piece) / rate
        await nxt(piece)


def slices(size: int, average: int, variation: int, rng: random.Random) -> list[tuple[int, int]]:
    """Toxiproxy's slicing: halve (give or take ``variation``) until a piece is within
    ``variation`` of ``average``; iterative, left to right."""
    out: list[tuple[int, int]] = []
    todo = [(0, size)]
    while todo:
        start, end = todo.pop()
        if (end - start) - average <= variation:
            out.append((start, end))
            continue
        mid = start + (end - start) // 2 + (rng.randint(-variation, variation) if variation
                                            else 0)
        mid = min(max(mid, start + 1), end - 1)
        todo.append((mid, end))
        todo.append((start, mid))
    return out


async def _slicer(t: Toxic, data: bytes, arrival: float, link: Link, nxt: Send) -> None:
    delay = t.attr("delay") / 1e6
    bounds = slices(len(data), t.attr("average_size"), t.attr("size_variation"), link.rng)
    for k, (a, b) in enumerate(bounds):
        await nxt(data[a:b])
        if k + 1 < len(bounds) and delay > 0 and not await link.wait(
                time.monotonic() + delay, t):
            await nxt(data[b:])
            return


async def _limit_data(t: Toxic, data: bytes, arrival: float, link: Link, nxt: Send) -> None:
    state = link.state(t)
    sent = state.get("sent", 0)
    piece = data[:max(0, t.attr("bytes") - sent)]
    state["sent"] = sent + len(piece)
    await nxt(piece)
    if state["sent"] >= t.attr("bytes"):
        link.close(reset=False)


async def _drop(t: Toxic, data: bytes, arrival: float, link: Link, nxt: Send) -> None:
    """blackhole, and reset_peer until its reset: the data goes nowhere."""


async def _hold(t: Toxic, data: bytes, arrival: float, link: Link, nxt: Send) -> None:
    """timeout: nothing passes while the toxic is on (the connection's supervisor closes
    it when the timeout comes); once removed, the held data goes on."""
    await link.wait(None, t)
    await nxt(data)


STAGES: dict[str, Stage] = {
    "latency": _latency, "bandwidth": _bandwidth, "timeout": _hold, "blackhole": _drop,
    "reset_peer": _drop, "slicer": _slicer, "limit_data": _limit_data,
}
