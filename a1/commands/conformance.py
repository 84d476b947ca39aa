"""``a1 conformance``: prove the planes stay isolated under injected faults.

Runs a profile's scenarios against a real stack (the embedded defaults, or the
user's platform spec with ``--config``), prints progress while it runs (scenario,
fault window, live error rate), a verdict per invariant at the end, and writes the
report with ``--report DIR``. Exit 0 when every invariant that ran passed, 1 when
any failed, 2 on bad usage. ``--check HISTORY`` re-judges a saved history offline;
``--selftest`` runs the deliberately broken variants and passes only when every
one is caught.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from policies.core.errors import UserError

PROFILES = ("quick", "full", "docker-ci")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conformance", help="run the conformance suite: invariants I-1..I-11 under faults",
        description="Prove the planes stay isolated under injected faults: start the real "
                    "stack, play each scenario (control window, fault, recovery) under "
                    "steady load, and judge invariants I-1..I-11 (docs/conformance.md).")
    p.add_argument("--profile", choices=PROFILES, default="quick",
                   help="quick: one scenario per invariant (CI); full: every fault variant; "
                        "docker-ci: a kill, a pause, a network cut, a proxy toxic and a "
                        "killed sidecar (CI's docker job)")
    p.add_argument("--only", metavar="I-3,I-5", type=_only,
                   help="only these invariants or scenario ids (with --selftest: variants)")
    p.add_argument("--config", metavar="SPEC_DIR", type=Path,
                   help="run against this platform spec (cells, table, policy, rollout)")
    p.add_argument("--report", metavar="DIR", type=Path,
                   help="write report.yaml, junit.xml, report.html and history.jsonl here")
    p.add_argument("--seed", type=int, help="seed the load and the faults (default: random)")
    p.add_argument("--rate", type=_rate, metavar="OPS",
                   help="open-loop load at OPS requests/s (default: closed loop, 6 workers "
                        "spread over the tenant groups)")
    p.add_argument("--keep", action="store_true", help="keep the run directory and its logs")
    p.add_argument("--runtime", choices=("process", "docker"), default="process",
                   help="process: every component a host process; docker: every component, "
                        "the sink and the fault proxies in containers (images from `a1 images "
                        "build`), with container nemeses (docs/conformance.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="HISTORY", type=Path,
                      help="judge a saved history.jsonl offline instead of running")
    mode.add_argument("--selftest", action="store_true",
                      help="run the broken variants; pass only if every one is caught")
    p.set_defaults(func=run)


def _only(text: str) -> frozenset[str]:
    items = frozenset(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise argparse.ArgumentTypeError("name at least one invariant, e.g. I-3,I-5")
    return items


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < rate <= 10_000:
        raise argparse.ArgumentTypeError("must be in (0, 10000] requests/s")
    return rate


class _Progress:
    """One status line: rewritten in place on a terminal, throttled lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:160])
            sys.stderr.flush()
        elif now - self.last >= 2.0 or "window" not in line:
            print(line, file=sys.stderr, flush=True)
            self.last = now

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")


def run(args: argparse.Namespace) -> int:
    from conformance import suite

    if args.check is not None:
        return _check(args)
    if args.selftest:
        from conformance.selftest import run_selftest

        if args.runtime != "process":
            raise UserError("--selftest: the broken variants run on the process runtime; "
                            "drop --runtime docker", 2)
        return run_selftest(only=args.only, seed=args.seed, report=args.report)
    if args.config is not None and not (args.config / "platform.yaml").is_file():
        raise UserError(f"--config {args.config}: no platform.yaml in this directory", 2)
    from conformance.checkers.registry import CHECKERS
    from conformance.scenarios.catalog import SCENARIOS, select

    known = set(CHECKERS) | {s.id for s in SCENARIOS}
    for item in sorted(args.only or ()):
        if item not in known:
            raise UserError(f"--only {item}: no such invariant or scenario (invariants "
                            f"{', '.join(CHECKERS)}; scenarios are I-N/fault)", 2)
    scenarios = select(args.profile, set(args.only or ()))
    if not scenarios:
        raise UserError(f"--only {','.join(sorted(args.only or ()))}: no scenario of the "
                        f"{args.profile} profile plays it (I-6 and I-11 are judged over "
                        f"the scenarios a run plays: name those too, e.g. I-5,I-11)", 2)
    progress = _Progress()
    opts = suite.SuiteOptions(profile=args.profile,
                              user_spec=args.config, report=args.report, seed=args.seed,
                              keep=args.keep, rate=args.rate,
                              runtime=args.runtime,
                              netns_cell=(suite.netns_cell(args.config)
                                          if args.runtime == "process" else None))
    try:
        result = suite.run_scenarios(scenarios, opts, progress)
    finally:
        progress.done()
    print(suite.summary(result.results))
    print(f"runtime {args.runtime}, seed {result.seed}, {result.duration_s:.0f} s"
          + (f", report in {args.report}" if args.report else "")
          + (f", run directory {result.run_dir}" if args.keep else ""))
    return 0 if result.ok else 1


def _check(args: argparse.Namespace) -> int:
    from conformance import suite

    result = suite.rejudge(args.check, args.report)
    print(suite.summary(result))
    return 0 if suite.all_passed(result) else 1
