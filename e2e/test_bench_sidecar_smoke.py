"""The sidecar benchmark's machinery works end to end (not its figures: those are
in docs/benchmarks.md). A second of real load per phase on cases a, b and c."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from a1.bench import sidecar as bench_sidecar

pytestmark = pytest.mark.e2e


def test_missing_load_generator_is_one_clear_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    envoy = shutil.which("envoy")
    assert envoy is not None
    (tmp_path / "envoy").symlink_to(envoy)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bench_sidecar.main(["--cases", "c", "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "not found on PATH" in err[0] and bench_sidecar.INSTALL_HINT in err[0]


# CI installs the load generators (.ci/run), so there a missing tool fails the test.
@pytest.mark.skipif(
    (shutil.which("wrk") is None or shutil.which("h2load") is None) and not os.environ.get("CI"),
    reason=f"needs wrk and h2load ({bench_sidecar.INSTALL_HINT})",
)
def test_three_cases_are_verified_timed_and_compared(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_sidecar.main(["--cases", "a,b,c", "--duration", "1", "--warmup", "0",
                               "--rounds", "1", "--rate", "200", "--connections", "8",
                               "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert set(result["cases"]) == {"a", "b", "c"}
    for key, case in result["cases"].items():
        t, fr = case["throughput"], case["fixed_rate"]
        assert t["rps"] > 50 and t["errors"] == 0, (key, t)
        assert t["p50_ms"] <= t["p99_ms"] <= t["p999_ms"], (key, t)
        assert t["envoy_cpu_us"] > 0, (key, t)
        assert (t["authz_cpu_us"] is None) == (key == "a"), (key, t)  # (a) has no authz process
        assert key == "a" or t["authz_cpu_us"] > 0, (key, t)
        # The paced phase really is paced: about 200 requests in its one second.
        assert 120 <= fr["samples"] <= 260 and fr["errors"] == 0, (key, fr)
    assert result["cases"]["c"]["throughput"]["vs_b"] == pytest.approx(
        result["cases"]["c"]["throughput"]["rps"] / result["cases"]["b"]["throughput"]["rps"])
    verdicts = result["verdicts"]
    assert [v["target"][:3] for v in verdicts] == ["(c)", "(d)", "(c)", "(d)", "(e)"]
    assert verdicts[0]["value"] == result["cases"]["c"]["throughput"]["vs_b"]
    assert verdicts[2]["value"] == pytest.approx(
        result["cases"]["c"]["fixed_rate"]["p99_ms"] - result["cases"]["a"]["fixed_rate"]["p99_ms"])
    assert [verdicts[i]["value"] for i in (1, 3, 4)] == [None] * 3  # d and e were not run
    # Every process it started is gone.
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_ours(int(p))]


def _is_ours(pid: int) -> bool:
    """A process whose parent is this test process (a leaked child)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return int(fields[1]) == os.getpid()
