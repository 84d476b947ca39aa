"""A topology transition waits for the clients that were there, and is retried.

Real ControlPlane, real ADS clients. A cell-table change is three phases; between
them the publisher waits for every stream subscribed when it began. A client
that does not ACK in time (or leaves) stops the transition where it is; the plane
retries it from that phase until the ACKs come.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import control.plane.serve as serve
from control.plane.serve import ControlPlane, PlaneOptions
from policies.bundle import generate_signing_key
from policies.core.xds.client import AdsClient, Node
from policies.core.xds.types import CELL_TABLE
from tests.test_control_plane import EXAMPLE, set_overrides
from tests.waiting import wait_until


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlane]:
    monkeypatch.setattr(serve, "RETRY_INTERVAL", 0.3)
    config = tmp_path / "platform"
    shutil.copytree(EXAMPLE, config)
    key = tmp_path / "bundle-signing.key"
    generate_signing_key(key)
    p = ControlPlane(PlaneOptions(config=config, signing_key=key, xds_port=0, status_port=0,
                                  ack_timeout=1.0, drain=0.0, rollout_interval=0.1))
    p.start()
    try:
        yield p
    finally:
        p.stop()


class Cell:
    """A cell-like ADS client whose ACKs can be held back (its callback blocks)."""

    def __init__(self, plane: ControlPlane, name: str) -> None:
        self.release = threading.Event()
        self.release.set()
        self.client = AdsClient(f"127.0.0.1:{plane.xds_port}", Node(name, "a1-cell"),
                                {CELL_TABLE: None}, self._update,
                                backoff_initial=0.05, backoff_max=0.2)
        self.client.start()
        assert self.client.wait_synced(20)

    def _update(self, type_url: str, resources: dict[str, bytes], removed: list[str]) -> None:
        self.release.wait(30)

    def stop(self) -> None:
        self.release.set()
        self.client.stop()


def last(plane: ControlPlane) -> dict[str, object]:
    return plane.status()["last_transition"] or {}


def moved(plane: ControlPlane) -> None:
    set_overrides(plane.options.config, "{acme: cell-1, globex: cell-2}")


def test_a_client_that_does_not_ack_stops_the_transition_which_is_retried(
        plane: ControlPlane) -> None:
    cell = Cell(plane, "slow-cell")
    try:
        cell.release.clear()  # from now on it holds its ACKs
        digest = plane.spec_digest
        moved(plane)
        stopped = wait_until(lambda: last(plane).get("error") and last(plane),
                             "the transition to stop on the missing ACK")
        assert "not ACKed" in str(stopped["error"]) and "slow-cell" in str(stopped["error"])
        assert stopped["done"] == 1 and not stopped["nacked"]
        cell.release.set()  # the ACKs come: the plane's retry finishes the transition
        wait_until(lambda: last(plane).get("done") == 3 and not last(plane).get("error"),
                   "the retried transition to finish", timeout=20)
        assert plane.spec_digest != digest
    finally:
        cell.stop()


def test_a_client_that_leaves_mid_transition_stops_it_rather_than_being_skipped(
        plane: ControlPlane) -> None:
    first, second = Cell(plane, "cell-a"), Cell(plane, "cell-b")
    try:
        second.release.clear()
        moved(plane)
        wait_until(lambda: "CellTable" in str(plane.status().get("transition")),
                   "phase 1 waiting for the cell tables")
        second.stop()  # it leaves before ACKing: one fewer than were there at the start
        stopped = wait_until(lambda: last(plane).get("error") and last(plane),
                             "the transition to stop")
        assert stopped["done"] == 1, stopped
        replacement = Cell(plane, "cell-b2")  # back to two: the retry can finish
        try:
            wait_until(lambda: last(plane).get("done") == 3 and not last(plane).get("error"),
                       "the retried transition to finish", timeout=20)
        finally:
            replacement.stop()
    finally:
        first.stop()
        second.stop()
