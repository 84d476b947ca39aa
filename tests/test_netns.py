"""Network-namespace partitions, for real: a TCP server inside a namespace, the host
reaching it over the veth, a partition stalling it both ways, a heal restoring it.

Skipped, with the reason ``unavailable()`` gives, where namespaces cannot be made
(not root, no iproute2). Every namespace is removed even when a test fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from a1.launcher import Launcher, ProcessSpec, free_ports, tcp_probe
from conformance.nemesis import netns
from conformance.nemesis.netns import Netns, cleanup_stale, partition, unavailable
from policies.core.errors import UserError
from tests.waiting import wait_until

ROOT = Path(__file__).parent.parent
TEST_PREFIX = "a1t-"  # not the suite's own prefix: these tests never touch a real run's

# An echo server, one thread per connection, so a stalled connection blocks no other.
ECHO = textwrap.dedent("""
    import socket, sys, threading
    def serve(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)
    s = socket.create_server((sys.argv[1], int(sys.argv[2])))
    while True:
        threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
""")


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


@pytest.fixture(scope="module")
def available() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def ns(available: None) -> Iterator[Netns]:
    with Netns(TEST_PREFIX) as space:
        yield space


@dataclass
class Echo:
    ns: Netns
    port: int
    launcher: Launcher
    opened: list[socket.socket] = field(default_factory=list)

    def connect(self, timeout: float) -> socket.socket:
        conn = socket.create_connection((self.ns.address, self.port), timeout=timeout)
        self.opened.append(conn)
        return conn


@pytest.fixture
def echo(ns: Netns, tmp_path: Path) -> Iterator[Echo]:
    """The echo server, started inside ``ns`` through a Launcher (``Netns.wrap``)."""
    port = free_ports(1)[0]
    with Launcher() as launcher:
        launcher.start(ProcessSpec("cell-1", ns.wrap([sys.executable, "-c", ECHO, ns.address,
                                                      str(port)]), tmp_path / "echo.log",
                                   ready=tcp_probe(ns.address, port)))
        launcher.wait_ready(timeout=20)
        server = Echo(ns, port, launcher)
        try:
            yield server
        finally:
            for conn in server.opened:
                conn.close()
            ns.heal()  # a failed test must not leave the server's stop waiting on a stall


def roundtrip(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    return conn.recv(len(data))


def connects(server: Echo) -> bool:
    try:
        server.connect(0.5)
        return True
    except OSError:
        return False


def test_server_inside_is_reached_at_the_inside_address(echo: Echo) -> None:
    assert echo.ns.address != echo.ns.host_address
    assert {echo.ns.address, echo.ns.host_address} <= {str(h) for h in echo.ns.subnet.hosts()}
    assert roundtrip(echo.connect(5), b"ping") == b"ping"
    # The server really is inside: the host has no listener on that port.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", echo.port), timeout=1).close()


def test_partition_stalls_both_ways_and_heal_resumes(echo: Echo) -> None:
    conn = echo.connect(5)
    assert roundtrip(conn, b"a") == b"a"
    echo.ns.partition()
    assert echo.ns.partitioned
    conn.settimeout(0.5)
    conn.sendall(b"b")
    with pytest.raises(TimeoutError):  # stalls: not reset, not refused
        conn.recv(1)
    with pytest.raises(TimeoutError):  # a new connect hangs in SYN_SENT
        echo.connect(0.5)
    echo.ns.heal()
    assert not echo.ns.partitioned
    conn.settimeout(30)  # the established connection resumes at its next retransmission
    assert conn.recv(1) == b"b"
    assert roundtrip(conn, b"c") == b"c"
    wait_until(lambda: connects(echo), "a new connection after the heal")


def test_partition_also_cuts_inside_to_host(ns: Netns) -> None:
    """The other direction: a process inside connecting to a host listener."""
    with socket.create_server((ns.host_address, 0)) as listener:
        port = listener.getsockname()[1]
        probe = ns.wrap([sys.executable, "-c", textwrap.dedent(f"""
            import socket
            try:
                socket.create_connection(({ns.host_address!r}, {port}), timeout=0.5).close()
                print("connected")
            except TimeoutError:
                print("timeout")
        """)])

        def attempt() -> str:
            return subprocess.run(probe, capture_output=True, text=True, timeout=30).stdout

        assert attempt().strip() == "connected"
        ns.partition()
        try:
            assert attempt().strip() == "timeout"
        finally:
            ns.heal()
        assert attempt().strip() == "connected"


def test_heal_and_partition_are_idempotent(ns: Netns) -> None:
    ns.heal()
    ns.partition()
    ns.partition()
    ns.heal()
    ns.heal()
    assert not ns.partitioned


def test_close_leaves_no_namespace_no_veth_no_record(available: None) -> None:
    space = Netns(TEST_PREFIX)
    assert space.name in namespaces() and space.host_if in links()
    space.partition()
    space.close()
    space.close()  # idempotent
    assert space.name not in namespaces()
    assert space.host_if not in links() and space.inside_if not in links()
    assert not (netns.OWNER_DIR / space.name).exists()


def test_two_namespaces_get_distinct_subnets(available: None) -> None:
    with Netns(TEST_PREFIX) as a, Netns(TEST_PREFIX) as b:
        assert a.name != b.name and not a.subnet.overlaps(b.subnet)


def test_cleanup_stale_removes_a_crashed_runs_leftovers_only(available: None) -> None:
    crashed = subprocess.run(
        [sys.executable, "-c", "import os; from conformance.nemesis.netns import Netns; "
                               f"print(Netns({TEST_PREFIX!r}).name, flush=True); os._exit(0)"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert crashed.returncode == 0, crashed.stderr
    dead = crashed.stdout.strip()
    half = f"{TEST_PREFIX}dead00"  # a crash between `ip netns add` and the veth
    subprocess.run(["ip", "netns", "add", half], check=True)
    try:
        assert dead in namespaces() and f"{dead}-h" in links()
        with Netns(TEST_PREFIX) as live:
            removed = cleanup_stale(TEST_PREFIX)
            assert dead in removed and half in removed and live.name not in removed
            assert live.name in namespaces() and live.host_if in links()
        assert dead not in namespaces() and f"{dead}-h" not in links() and half not in namespaces()
        assert not (netns.OWNER_DIR / dead).exists()
    finally:
        cleanup_stale(TEST_PREFIX)


def test_cleanup_stale_never_touches_names_it_did_not_make(available: None) -> None:
    foreign = f"{TEST_PREFIX}mine"  # the prefix, but not <prefix><6 hex>: someone else's
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        assert foreign not in cleanup_stale(TEST_PREFIX) and foreign in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=True)


@pytest.mark.parametrize("prefix", ["Bad_Prefix", "much-too-long-", "", "-a", "a1c/../"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(UserError, match="prefix"):
        Netns(prefix)
    with pytest.raises(UserError, match="prefix"):
        cleanup_stale(prefix)


@dataclass
class StubTarget:
    spaces: dict[str, Netns]
    launcher: Any = None
    state_dir: Path = Path(".")
    spec_dir: Path = Path(".")

    def proxy(self, link: str) -> Any:  # pragma: no cover - unused here
        raise NotImplementedError

    def netns(self, link: str) -> Netns | None:
        return self.spaces.get(link)


def test_partition_fault_injects_and_repairs(ns: Netns) -> None:
    fault = partition(StubTarget({"envoy-cell-1": ns}), "envoy-cell-1")
    assert fault.name == "partition:envoy-cell-1" and fault.unavailable is None
    fault.inject()
    assert ns.partitioned
    fault.repair()
    assert not ns.partitioned


def test_partition_fault_on_a_link_without_a_namespace_is_unavailable(available: None) -> None:
    fault = partition(StubTarget({}), "sidecar-xds")
    assert fault.unavailable and "sidecar-xds" in fault.unavailable
    with pytest.raises(UserError, match="sidecar-xds"):
        fault.inject()


def test_not_root_is_unavailable_with_the_reason() -> None:
    """Run as nobody: the reason says root is needed, and the fault carries it."""
    if os.geteuid() != 0:
        assert unavailable() and "root" in str(unavailable())
        return
    code = textwrap.dedent("""
        import os
        from conformance.nemesis.netns import partition, unavailable
        os.setegid(65534); os.seteuid(65534)  # after the imports: the stdlib is root's
        print(unavailable())
        print(partition(None, "envoy-xds").unavailable)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and "need root" in lines[0] and lines[0] == lines[1]
