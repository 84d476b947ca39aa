"""``a1 conformance``: start the target, play a profile's scenarios, judge, report.

One run = one temporary directory, one stack on free ports, one steady load that
runs through every scenario, one history file. Teardown (every process stopped,
paused ones resumed, namespaces removed) happens whatever fails. The verdict
comes only from the checkers reading the history, so ``a1 conformance --check``
re-judges a saved history offline with the same code.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

from conformance.checkers.base import CheckResult
from conformance.harness.target import Target, TargetOptions
from conformance.history import History, Meta, Recorder
from conformance.load import Load, Schedule
from conformance.runner import READBACK, Run, judge
from conformance.scenarios.base import Scenario

Progress = Callable[[str], None]


def a1_version() -> str:
    try:
        return dist_version("a1")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class SuiteOptions:
    profile: str = "quick"
    user_spec: Path | None = None
    report: Path | None = None
    seed: int | None = None
    keep: bool = False  # keep the run directory (logs, state) after the run
    wrap: dict[str, str] = field(default_factory=dict)  # broken variant (self-test)
    env: dict[str, str] = field(default_factory=dict)
    netns_cell: str | None = None
    rate: float | None = None  # open loop at this many ops/s; None: closed loop
    runtime: str = "process"  # "process" or "docker" (every process a container)


@dataclass
class SuiteResult:
    results: list[CheckResult]
    history: History
    run_dir: Path
    seed: int
    duration_s: float

    @property
    def ok(self) -> bool:
        return all_passed(self.results)


@contextmanager
def session(options: SuiteOptions, scenario_ids: Sequence[str],
            progress: Progress = lambda _: None) -> Iterator[Run]:
    """A started target under steady load, recording into ``<report or run dir>/history.jsonl``.

    On exit, even after a failure: the load stops, every write is read back, every
    process stops (paused ones resumed first), and the history file is closed.
    """
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 31)
    run_dir = Path(tempfile.mkdtemp(prefix="a1-conformance-"))
    out = options.report or run_dir
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(out / "history.jsonl")
    recorder.record(Meta(run_id=uuid.uuid4().hex[:12], seed=seed, profile=options.profile,
                         implementation="a1", version=a1_version(), runtime=options.runtime,
                         started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                         extra={"scenarios": list(scenario_ids),
                                "spec": str(options.user_spec or "embedded defaults")}))
    try:
        progress(f"starting the stack ({options.runtime} runtime) in {run_dir}")
        target = make_target(options.runtime, TargetOptions(
            root=run_dir / "stack", user_spec=options.user_spec, netns_cell=options.netns_cell,
            wrap=options.wrap, env=options.env, seed=seed))
        with target:
            schedule = Schedule.open(options.rate) if options.rate else Schedule.closed()
            # Started by the first scenario, with its tenant groups (Run.play).
            load = Load.for_stack(target, recorder, seed=seed, schedule=schedule)
            try:
                try:
                    yield Run(target, recorder, load, progress=progress, seed=seed,
                              run_dir=run_dir)
                finally:
                    load.stop()
            finally:
                progress("reading every acknowledged write back")
                load.readback(scenario=READBACK)
    finally:
        recorder.close()
        if not options.keep:  # the report directory, if any, keeps the history
            shutil.rmtree(run_dir, ignore_errors=True)


RUNTIMES = ("process", "docker")


def make_target(runtime: str, options: TargetOptions) -> Target:
    """The target on ``runtime``: host processes, or one container per process."""
    if runtime == "docker":
        from conformance.harness.docker_target import DockerTarget

        return DockerTarget(options)
    return Target(options)


def finish(run: Run, options: SuiteOptions, started: float) -> SuiteResult:
    """Judge the run's history and write its report (``options.report``)."""
    results = judge(run.recorder.history)
    duration = time.monotonic() - started
    result = SuiteResult(results, run.recorder.history, run.run_dir, run.seed, duration)
    if options.report is not None:
        from conformance.report import write_report

        write_report(options.report, run.recorder.history, results,
                     profile=options.profile, version=a1_version(), runtime=options.runtime,
                     duration_s=duration)
    return result


def run_scenarios(scenarios: Sequence[Scenario], options: SuiteOptions,
                  progress: Progress = lambda _: None) -> SuiteResult:
    """Play ``scenarios`` in order on one target, then judge and report."""
    started = time.monotonic()
    with session(options, [s.id for s in scenarios], progress) as run:
        for scenario in scenarios:
            run.play(scenario)
    return finish(run, options, started)


def netns_cell(user_spec: Path | None) -> str | None:
    """The cell a run isolates in a network namespace (root only, for the partition
    scenario; every profile partitions when it can), else None: the scenario is then
    skipped with the reason."""
    from conformance.nemesis.netns import unavailable

    if unavailable() is not None:
        return None
    if user_spec is not None:
        from control.spec import load_spec

        return load_spec(user_spec).cell_names[-1]
    return "cell-3"


def rejudge(history_path: Path, report: Path | None = None) -> list[CheckResult]:
    """Judge a saved history offline (and write its report when ``report`` is given)."""
    history = History.load(history_path)
    results = judge(history)
    if report is not None:
        from conformance.report import write_report

        meta = history.meta
        write_report(report, history, results, profile=meta.profile if meta else "unknown",
                     version=meta.version if meta else a1_version(),
                     runtime=meta.runtime if meta else "process", duration_s=0.0)
    return results


def all_passed(results: Sequence[CheckResult]) -> bool:
    """Every invariant that ran passed, and at least one ran."""
    ran = [r for r in results if not r.skipped]
    return bool(ran) and all(r.passed for r in ran)


def summary(results: Sequence[CheckResult]) -> str:
    """The verdict table printed at the end of a run."""
    rows = [f"{'invariant':<10} {'scenario':<28} {'result':<8} measured"]
    for r in results:
        shown = r.skipped or r.detail if not r.passed else ", ".join(
            f"{k}={v}" for k, v in list(r.measured.items())[:4])
        rows.append(f"{r.invariant:<10} {r.scenario:<28} {r.outcome:<8} {shown}"[:200])
    failed = sum(1 for r in results if r.outcome == "failed")
    skipped = sum(1 for r in results if r.outcome == "skipped")
    rows.append(f"{len(results) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return "\n".join(rows)
