"""The suite's own plumbing, without a stack: which window holds an op, judging a cut-short
history, the self-test's verdict, the user's spec copied safely, and the CLI's refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from a1.cli import main as a1_main
from conformance.checkers.base import CheckResult
from conformance.harness.target import MAX_SPEC_FILES, _copy_spec_files
from conformance.history import History, Meta, Op, Window
from conformance.runner import judge
from conformance.selftest import _verdict
from conformance.variants import VARIANTS
from policies.core.errors import UserError


def op(invoke: float, complete: float, status: int | None = 200) -> Op:
    return Op("s", "read", "t", "g", invoke, complete, status)


def test_a_control_window_holds_only_what_completed_in_it() -> None:
    control, fault = Window("s", "control", 0.0, 5.0), Window("s", "fault", 5.0, 10.0)
    straddling = op(4.9, 6.0, None)  # in flight when the fault went in
    assert not control.holds(straddling)
    assert fault.holds(straddling)  # judged by the fault, never by no window
    assert control.holds(op(1.0, 1.1)) and not fault.holds(op(1.0, 1.1))
    assert fault.holds(op(9.9, 12.0)) and not fault.holds(op(10.0, 10.1))
    recovery = Window("s", "recovery", 10.0, 12.0)
    assert recovery.holds(op(10.0, 10.1)) and not recovery.holds(op(9.9, 10.1))


def test_a_history_cut_short_fails_the_scenarios_it_never_played() -> None:
    meta = Meta("r", 1, "quick", "a1", "0", "2026-01-01T00:00:00+00:00",
                extra={"scenarios": ["I-1/kill-control", "I-5/kill-cell"]})
    results = judge(History([meta]))
    unplayed = {r.scenario: r for r in results if r.statistic == "not run"}
    assert set(unplayed) == {"I-1/kill-control", "I-5/kill-cell"}
    assert all(not r.passed and "never played" in r.detail for r in unplayed.values())


@pytest.mark.parametrize("detail", [
    "missing evidence: observation 'resync_s' not recorded",
    "the scenario could not be played: RuntimeError: boom",
    "control window unhealthy, so it is no baseline: 1 failed ops",
])
def test_the_selftest_does_not_count_an_unwell_stack_as_a_catch(detail: str) -> None:
    v = VARIANTS["foreign-tenant-cell"]
    assert not _verdict(v, [CheckResult(v.catches, v.scenario, False, "s", detail=detail)]).caught


def test_the_selftest_counts_the_variants_own_problem() -> None:
    v = VARIANTS["foreign-tenant-cell"]
    r = CheckResult(v.catches, v.scenario, False, "s",
                    detail="3 misroute ops not answered 421: misroute tenant t ...")
    assert _verdict(v, [r]).caught
    assert not _verdict(v, [CheckResult("I-6", v.scenario, False, "s", detail=r.detail)]).caught


def test_a_users_spec_is_copied_without_links_devices_or_fifos(tmp_path: Path) -> None:
    src, dest = tmp_path / "spec", tmp_path / "run"
    (src / "policy" / "deep").mkdir(parents=True)
    dest.mkdir()
    (src / "platform.yaml").write_text("skipped: the suite writes its own\n")
    (src / "policy" / "authz.rego").write_text("package a1.authz\n")
    (src / "policy" / "deep" / "data.json").write_text("{}")
    (src / "root").symlink_to("/")  # would copy the filesystem
    (src / "policy" / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(src / "pipe")  # would hang a reader
    (src / "tls").mkdir()
    (src / "tls" / "key.pem").write_text("the suite's own")
    _copy_spec_files(src, dest, skip=("platform.yaml", "jwks.json", "tls"))
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert got == ["policy", "policy/authz.rego", "policy/deep", "policy/deep/data.json"]


def test_a_huge_spec_directory_is_one_error(tmp_path: Path) -> None:
    src = tmp_path / "spec"
    src.mkdir()
    for i in range(MAX_SPEC_FILES + 1):
        (src / f"f{i}").touch()
    with pytest.raises(UserError, match="more than 10000 files"):
        _copy_spec_files(src, tmp_path, skip=())


@pytest.mark.parametrize(("argv", "message"), [
    (["--only", "I-5,I-55"], "--only I-55: no such invariant or scenario"),
    (["--only", "I-11"], "I-6 and I-11 are judged over the scenarios a run plays"),
    (["--rate", "-1"], "must be in (0, 10000]"),
    (["--profile", "huge"], "invalid choice"),
])
def test_the_cli_refuses_bad_flags_in_one_line(argv: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = a1_main(["conformance", *argv])
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_every_scenario_is_well_formed_and_quick_covers_every_scenario_invariant() -> None:
    import re

    from conformance.checkers.registry import CHECKERS
    from conformance.scenarios.catalog import SCENARIOS, select

    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))
    for s in SCENARIOS:
        assert re.fullmatch(r"I-\d+/[a-z0-9-]+", s.id), s.id
        # Each scenario proves its own invariant; I-6 also has one (judged over all).
        assert s.invariant in CHECKERS
        assert not CHECKERS[s.invariant].whole_history or s.invariant == "I-6"
        assert callable(s.fault) and s.title and not s.title.startswith("I-"), s.id
        assert set(s.profiles) <= {"quick", "full"} and "full" in s.profiles, s.id
    quick = {s.invariant for s in select("quick")}
    assert quick == {f"I-{n}" for n in range(1, 11)}  # I-11 judges them all
