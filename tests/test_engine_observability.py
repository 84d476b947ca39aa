"""Metrics exposition and the asynchronous decision log."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ext_proc.decision_log import DecisionLog
from ext_proc.engine import Engine
from ext_proc.metrics import make_registry
from ext_proc.policy import load_policy
from tests.test_engine import ALICE, CELLS, ENTRY, compile_authz, compile_rego


@pytest.fixture(scope="module")
def authz() -> Any:
    return load_policy(compile_authz(), ENTRY, "authz.wasm")


def scrape(eng: Engine) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = generate_latest(make_registry(eng)).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_count_decisions_from_every_thread(authz: Any) -> None:
    eng = Engine()
    eng.apply(authz, CELLS)
    cell = CELLS.lookup("acme")

    def work() -> None:
        for _ in range(50):
            eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
            eng.decide("GET", "/t/other/a", "", None, ALICE, "k")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = scrape(eng)
    assert m["a1_decisions_total"][(("cell", cell), ("result", "allow"))] == 200
    assert m["a1_decisions_total"][(("cell", CELLS.lookup("other")), ("result", "deny"))] == 200
    assert m["a1_decision_latency_seconds_count"][()] == 400
    assert m["a1_decision_latency_seconds_bucket"][(("le", "+Inf"),)] == 400
    # Each thread misses at most twice (two distinct requests); the rest are hits.
    assert 392 <= m["a1_cache_hits_total"][()] <= 398
    assert m["a1_policy_eval_errors_total"][()] == 0
    info = m["a1_policy_version_info"]
    assert list(info) == [(("cells_version", CELLS.version), ("version", authz.version))]
    assert m["a1_decision_log_dropped_total"][()] == 0
    assert m["a1_policy_load_failures_total"][()] == 0


def test_eval_errors_and_load_failures_are_exposed() -> None:
    eng = Engine()
    eng.apply(
        load_policy(compile_rego('decision := {"allow": input.method + 1}'), ENTRY, "t"), CELLS
    )
    eng.decide("GET", "/t/acme/a")
    eng.stats.add_load_failure()
    m = scrape(eng)
    assert m["a1_policy_eval_errors_total"][()] == 1
    assert m["a1_policy_load_failures_total"][()] == 1
    assert m["a1_decisions_total"][(("cell", ""), ("result", "error"))] == 1


def test_errors_on_the_request_path_do_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    eng = Engine()
    eng.apply(
        load_policy(compile_rego('decision := {"allow": input.method + 1}'), ENTRY, "t"), CELLS
    )
    with caplog.at_level(logging.WARNING, logger="ext_proc.engine"):
        for _ in range(200):
            assert not eng.decide("GET", "/t/acme/a").allow
    lines = [r.getMessage() for r in caplog.records if r.name == "ext_proc.engine"]
    assert 1 <= len(lines) <= 3  # one per second at most
    assert "policy evaluation error (deny): evaluation error: type error" in lines[0]
    assert all("\n" not in line for line in lines)
    assert eng.stats.snapshot()["eval_errors"] == 200  # every one is still counted


def test_decision_log_writes_json_lines(authz: Any, tmp_path: Path) -> None:
    dl = DecisionLog(tmp_path / "d.jsonl", queue_size=100, interval=0.01)
    dl.start()
    eng = Engine(decision_log=dl)
    eng.apply(authz, CELLS)
    eng.decide("GET", "/t/acme/a?q=1", "", None, ALICE, "k")
    eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
    eng.decide("POST", "/t/acme/a", "", None, ALICE, "k")
    dl.stop()
    recs = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [(r["method"], r["path"], r["allow"], r["cached"]) for r in recs] == [
        ("GET", "/t/acme/a", True, False),
        ("GET", "/t/acme/a", True, True),
        ("POST", "/t/acme/a", False, False),
    ]
    assert recs[0]["sub"] == "alice" and recs[0]["tenant"] == "acme"
    assert recs[0]["cell"] == CELLS.lookup("acme") and recs[0]["policy_version"] == authz.version
    assert recs[2]["reason"] == "no role permits this method" and recs[2]["status"] == 403


def test_decision_log_lines_are_json_for_any_strings() -> None:
    from ext_proc.decision_log import FIELDS, format_entry

    odd = 'a"b\\c\n\u2028é\x00'
    e = (1.5, "GET", odd, None, odd, "c", False, 403, odd, "v", True, 1234)
    rec = json.loads(format_entry(e))
    assert list(rec) == list(FIELDS)
    assert rec["path"] == rec["sub"] == rec["reason"] == odd
    assert rec["tenant"] is None and rec["allow"] is False and rec["latency_us"] == 1.2


def test_full_decision_log_drops_and_counts_without_blocking(authz: Any, tmp_path: Path) -> None:
    dl = DecisionLog(tmp_path / "d.jsonl", queue_size=3)  # writer not started: the queue fills
    eng = Engine(decision_log=dl)
    eng.apply(authz, CELLS)
    for _ in range(10):
        assert eng.decide("GET", "/t/acme/a", "", None, ALICE, "k").allow
    assert dl.dropped == 7
    assert scrape(eng)["a1_decision_log_dropped_total"][()] == 7
    dl.stop()  # flushes what was queued
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 3
