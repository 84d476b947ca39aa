"""The sweeper that outlives ``a1``: removes a run's containers and networks when the
``a1`` that made them ends without removing them (SIGKILL, the OOM killer).

Docker has no parent-death signal: containers are the engine's children, not
``a1``'s, so the process runtime's ``PR_SET_PDEATHSIG`` has no counterpart. The
container launcher therefore starts this process with a pipe on its stdin and keeps
the only write end: however ``a1`` ends, the kernel closes it, and end-of-file wakes
the sweeper. It then removes what carries the run's label *and* ``a1``'s owner token,
exactly what ``ContainerLauncher.close`` removes, so after a clean exit it finds
nothing and exits at once. Its own session keeps a terminal's Ctrl-C away from it.
The next ``a1 up`` of the state directory still clears what a dead sweeper left
(a host crash): ``engine.clear_leftovers``.

    python -m a1.containers.reaper --run RUN --owner HOST/PID/START  (stdin: the pipe)
"""

from __future__ import annotations

import argparse
import signal
import sys

from a1.containers import engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.containers.reaper")
    parser.add_argument("--run", required=True)
    parser.add_argument("--owner", required=True)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only end-of-file ends the wait
    while sys.stdin.buffer.read(4096):
        pass
    try:
        containers, networks = engine.remove_owned(engine.connect("a1 reaper"), args.run,
                                                   args.owner)
    except Exception as err:  # the engine is gone too: nothing to sweep from here
        print(f"a1 reaper: run {args.run}: {err}".splitlines()[0], file=sys.stderr)
        return 1
    if containers or networks:
        print(f"a1 reaper: run {args.run}: its a1 ended without cleaning up; removed "
              f"{containers} container(s) and {networks} network(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
