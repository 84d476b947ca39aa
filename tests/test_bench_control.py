"""``a1 bench control`` at tiny sizes: 1 real Envoy, 20 simulated clients, 3 rounds.

Checks the machinery and the report's shape, and that every client ACKed every
round (a round that is not ACKed by all fails the run). No timing is asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from a1.bench import control as bench

ROUNDS = 3
CLIENTS = 20


def _check_row(row: dict, split: bool) -> None:
    assert row["rounds"] == ROUNDS
    assert len(row["samples"]) == ROUNDS
    keys = ("total_s", "pipeline_s", "detect_s", "build_s", "push_ack_s") if split else (
        "push_ack_s",)
    for key in keys:
        q = row[key]
        assert 0 <= q["p50"] <= q["p99"] <= q["max"], (key, q)
    for sample in row["samples"]:
        assert sample["push_ack_s"] >= 0
        if split:  # the parts add up to the whole, on one clock
            assert sample["total_s"] == pytest.approx(sample["pipeline_s"] + sample["push_ack_s"])
            assert sample["pipeline_s"] == pytest.approx(sample["detect_s"] + sample["build_s"])
    assert row["server_rss_kib"] > 0


@pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy is not on PATH")
def test_smoke_json_every_client_acked(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "a1.bench.control", "--envoys", "1", "--clients",
            str(CLIENTS), "--rounds", str(ROUNDS), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["command"] == (f"a1 bench control --envoys 1 --clients {CLIENTS} "
                                 f"--rounds {ROUNDS}")
    (envoys,) = result["envoys"]
    assert envoys["clients"] == 1 and envoys["kind"] == "envoy"
    _check_row(envoys, split=True)
    assert envoys["envoy_rss_kib_mean"] > 0
    fan = result["fanout"]
    assert fan["clients"] == CLIENTS
    _check_row(fan["ours"], split=True)
    _check_row(fan["floor"], split=False)
    assert result["verdicts"] == []  # targets are judged at 20 Envoys and 1,000 clients
    text = bench.report(result)
    assert "| 1 Envoy |" in text and f"| {CLIENTS} simulated |" in text
    assert "ratios ours/floor" in text


def test_counts_and_command_line() -> None:
    import argparse

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    s = bench.settings_from(p.parse_args(["--envoys", "20,1,5,5", "--clients", "0"]))
    assert s.envoys == (1, 5, 20) and s.clients == 0
    assert bench.command_line(s) == "a1 bench control --clients 0"
    assert bench.settings_from(p.parse_args(["--envoys", "0"])).envoys == ()
    for bad in ("x", "1,-2", "500"):
        with pytest.raises(SystemExit):
            p.parse_args(["--envoys", bad])
    assert bench.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert bench.percentile([float(i) for i in range(1, 21)], 99) == 20.0
