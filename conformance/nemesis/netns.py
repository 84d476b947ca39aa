"""Network partitions with real Linux network namespaces (root only).

A :class:`Netns` is a namespace (``a1c-<6 hex>``) joined to the host by a veth pair
on a private /30 from 10.203.0.0/16 (the host end gets ``.1``, the inside end
``.2``). A process started through :meth:`Netns.wrap` lives inside and is reached
at :attr:`Netns.address`; it reaches host services at :attr:`Netns.host_address`
(so those must listen there or on 0.0.0.0, not on 127.0.0.1, which inside is the
namespace's own loopback).

How a partition cuts traffic: a ``blackhole`` root qdisc on the egress of BOTH veth
ends. Every packet each way (ARP included) is dropped silently while the sender's
stack is told it was sent: no RST, no ICMP, no local error, the routes and the
links stay up. So established TCP connections stall (they retransmit with
exponential backoff) rather than reset, and new connects hang in SYN_SENT; that
is a real partition as a peer sees it, not a crash. :meth:`Netns.heal` deletes
the qdiscs; connections resume at their next retransmission (after a long
partition that can be seconds later: TCP's backoff, part of what is measured).
Link-down was not chosen because it removes routes (local sends fail at once with
ENETUNREACH), netem because this kernel (and many CI kernels) lacks it; the
blackhole qdisc is part of the core of the kernel's traffic control.

Unix-domain sockets are NOT affected: a network namespace isolates network
interfaces, not the filesystem, so a process inside can still connect to a Unix
socket on the shared filesystem (the sidecar's ext_authz socket, say). Only TCP/UDP
over the veth is partitioned; a link meant to be cut must be TCP.

Cleanup: :meth:`Netns.close` (also on ``with`` exit and at interpreter exit)
removes the veth and the namespace. A run that crashed leaves them behind:
:func:`cleanup_stale` removes every namespace and veth under a prefix whose
creating process is gone (each records its owner, pid and start time, under
``/run/a1-netns``), never one a live run still uses.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from conformance.nemesis.base import Fault, Target
from policies.core.errors import UserError, one_line

PREFIX = "a1c-"
POOL = ipaddress.IPv4Network("10.203.0.0/16")  # carved into /30s, one per namespace
OWNER_DIR = Path("/run/a1-netns")  # <name>: "pid starttime" of the creating process
_PREFIX_RE = re.compile(r"[a-z][a-z0-9-]{0,6}")  # + 6 hex + "-h" fits IFNAMSIZ (15)
_TIMEOUT = 15.0  # seconds for one ip/tc command


class NetnsError(UserError):
    """An ``ip``/``tc`` command failed: the message names it and its stderr."""


class Netns:
    """A network namespace joined to the host by a veth pair; a context manager."""

    def __init__(self, prefix: str = PREFIX) -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise UserError(f"netns prefix {prefix!r} must match {_PREFIX_RE.pattern}")
        self.name = f"{prefix}{secrets.token_hex(3)}"
        self.host_if = f"{self.name}-h"
        self.inside_if = f"{self.name}-n"
        self._partitioned = False
        self._closed = False
        try:
            OWNER_DIR.mkdir(parents=True, exist_ok=True)
            # Owner first: a crash at any later step leaves something cleanup_stale can judge.
            (OWNER_DIR / self.name).write_text(_owner_record(os.getpid()))
        except OSError as err:
            raise NetnsError(f"{OWNER_DIR}: {one_line(err, 300)}") from None
        atexit.register(self.close)
        try:
            _run("ip", "netns", "add", self.name)
            _run("ip", "link", "add", self.host_if, "type", "veth",
                 "peer", "name", self.inside_if, "netns", self.name)
            with _pool_lock():  # two runs at once must not pick the same /30
                net = _free_subnet()
                host, inside = list(net.hosts())
                _run("ip", "addr", "add", f"{host}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run("ip", "-n", self.name, "addr", "add", f"{inside}/30", "dev", self.inside_if)
            _run("ip", "-n", self.name, "link", "set", self.inside_if, "up")
            _run("ip", "-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self.close()
            raise
        self.subnet = net
        self.host_address = str(host)
        self.address = str(inside)  # where the host reaches a server inside

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def partition(self) -> None:
        """Drop every packet both ways over the veth (see the module doc for why a
        blackhole qdisc: TCP stalls, never resets). Idempotent."""
        self._partitioned = True
        for ns, dev in self._ends():
            _run("tc", *ns, "qdisc", "replace", "dev", dev, "root", "blackhole")

    def heal(self) -> None:
        """Remove the partition's qdiscs; a no-op where none is. Idempotent."""
        for ns, dev in self._ends():
            shown = _run("tc", *ns, "qdisc", "show", "dev", dev, "root")
            if "blackhole" in shown:
                _run("tc", *ns, "qdisc", "del", "dev", dev, "root")
        self._partitioned = False

    def _ends(self) -> list[tuple[list[str], str]]:
        return [([], self.host_if), (["-n", self.name], self.inside_if)]

    def close(self) -> None:
        """Remove the veth pair, the namespace and the owner record. Idempotent.

        Stop the processes inside first: a namespace a process still runs in is
        unlinked here (gone from ``ip netns list``) but lives on, link-less, until
        that process exits."""
        if self._closed:
            return
        self._closed = True
        _remove(self.name)
        atexit.unregister(self.close)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = getattr(self, "address", "?")
        return f"Netns({self.name}, inside {where}, partitioned={self._partitioned})"


# -- availability -------------------------------------------------------------------


@functools.cache
def unavailable() -> str | None:
    """Why partitions cannot run here (not root, no ``ip``/``tc``, the kernel refuses a
    namespace or the blackhole qdisc), else None. Probed once per process, by really
    creating, partitioning, healing and removing a namespace."""
    if os.geteuid() != 0:
        return "network-namespace partitions need root (ip netns, veth, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"network-namespace partitions need {tool!r} (iproute2) on PATH"
    try:
        with Netns() as probe:
            probe.partition()
            probe.heal()
    except (UserError, OSError) as err:
        return f"network-namespace partitions unavailable: {one_line(err, 300)}"
    return None


# -- the fault ------------------------------------------------------------------------


class NetnsTarget(Target, Protocol):
    def netns(self, link: str) -> Netns | None:
        """The namespace whose veth carries ``link``, None if nothing runs in one."""
        ...


def partition(target: Target, link: str) -> Fault:
    """Partition ``link`` (the veth of the namespace ``target.netns(link)`` returns) both
    ways; the repair heals it. Unavailable, with the reason, when not root or when the
    target runs nothing on that link in a namespace."""
    reason = unavailable()
    ns: Netns | None = None
    if reason is None:
        lookup = getattr(target, "netns", None)
        ns = lookup(link) if lookup is not None else None
        if ns is None:
            reason = f"link {link!r} does not run through a network namespace in this target"
    name = f"partition:{link}"
    if ns is None:
        refused = reason

        def refuse() -> None:
            raise UserError(f"{name}: {refused}")

        return Fault(name, refuse, lambda: None, expect="", unavailable=reason)
    return Fault(name, ns.partition, ns.heal,
                 expect=f"{link} partitioned both ways (packets dropped silently, TCP stalls); "
                        "the other side keeps serving and converges after the heal")


# -- stale cleanup ------------------------------------------------------------------


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Remove namespaces and veths named ``<prefix><6 hex>`` (what :class:`Netns` names)
    whose creating process is gone (a crashed run); returns their names. Leaves a live
    run's alone, and anything named otherwise (someone else's namespaces)."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise UserError(f"netns prefix {prefix!r} must match {_PREFIX_RE.pattern}")
    ours = re.compile(re.escape(prefix) + r"[0-9a-f]{6}")
    candidates = set(_netns_names()) | {i.removesuffix("-h") for i in _link_names()}
    if OWNER_DIR.is_dir():
        candidates |= {p.name for p in OWNER_DIR.iterdir()}
    removed = []
    for name in sorted(n for n in candidates if ours.fullmatch(n)):
        if not _owner_alive(name):
            _remove(name)
            removed.append(name)
    return removed


def _remove(name: str) -> None:
    """Delete the veth (both ends go with it) and the namespace; missing ones are fine."""
    if f"{name}-h" in _link_names():
        _run("ip", "link", "del", f"{name}-h")
    if name in _netns_names():
        _run("ip", "netns", "del", name)
    with contextlib.suppress(FileNotFoundError):
        (OWNER_DIR / name).unlink()


def _owner_alive(name: str) -> bool:
    try:
        record = (OWNER_DIR / name).read_text()
        return _owner_record(int(record.split()[0])) == record
    except (OSError, ValueError, IndexError):
        return False


def _owner_record(pid: int) -> str:
    """``pid`` and its start time (clock ticks since boot): a reused pid differs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "gone"
    return f"{pid} {start}\n"


# -- ip and tc ------------------------------------------------------------------------


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NetnsError(f"{' '.join(argv)}: {one_line(err, 300)}") from None
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {one_line(done.stderr or done.returncode, 300)}")
    return done.stdout


def _netns_names() -> list[str]:
    out = _run("ip", "-j", "netns", "list").strip()
    return [n["name"] for n in json.loads(out)] if out else []


def _link_names() -> list[str]:
    return [i["ifname"] for i in json.loads(_run("ip", "-j", "link", "show") or "[]")]


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /30 of the pool that overlaps no host address and no route at least
    as narrow as the pool (a broader route, 10/8 say, is fine: a /30 beats it)."""
    taken: list[ipaddress.IPv4Network] = []
    for iface in json.loads(_run("ip", "-j", "-4", "addr", "show") or "[]"):
        for addr in iface.get("addr_info", []):
            taken.append(ipaddress.IPv4Interface(f"{addr['local']}/{addr['prefixlen']}").network)
    for route in json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
            if net.prefixlen >= POOL.prefixlen:
                taken.append(net)
    taken = [t for t in taken if t.overlaps(POOL)]
    for candidate in POOL.subnets(new_prefix=30):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise NetnsError(f"no free /30 left in {POOL}")


@contextlib.contextmanager
def _pool_lock() -> Iterator[None]:
    with open(OWNER_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
