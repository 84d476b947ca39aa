"""``a1 images``: build the offline images (``build``) and show their state (``list``).

docs/images.md says what is in each image and why.
"""

from __future__ import annotations

import argparse
import time

from policies.core.errors import UserError

# The builder (docker SDK, packaging) is imported when a subcommand runs: `a1` itself
# starts inside the images, where neither is installed.
CACHE_HELP = "rootfs tarball and wheel cache (default $A1_IMAGE_CACHE or ~/.cache/a1/images)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("images", help="build and list A1's offline container images")
    isub = p.add_subparsers(dest="images_cmd", metavar="{build,list}")
    b = isub.add_parser("build", help="build a1-base and the component images (idempotent)")
    b.add_argument(
        "--force",
        action="store_true",
        help="rebuild every image (and the rootfs) even when up to date",
    )
    _cache_flag(b)
    b.set_defaults(func=_build)
    ls = isub.add_parser("list", aliases=["status"], help="each image's size and state")
    _cache_flag(ls)
    ls.set_defaults(func=_list)
    p.set_defaults(func=_usage(p))


def _cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)


def _usage(p: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        raise UserError("a1 images: say which: a1 images build | a1 images list", code=2)

    return run


def _say(line: str) -> None:
    print(line, flush=True)


def _build(args: argparse.Namespace) -> int:
    from a1.containers.images import build
    from a1.containers.images.sizes import mb, table

    cache = build.cache_dir(args.cache_dir)
    client = build.connect()
    start = time.monotonic()
    _say(f"a1 images: cache {cache}")
    the_plan, outcomes = build.build_all(client, cache, force=args.force, say=_say)
    rows, total = build.size_rows(client, the_plan.images)
    _say(table(rows))
    built = sum(1 for _ref, outcome in outcomes if outcome == "built")
    _say(
        f"unique disk: {mb(total)}; {built} built, {len(rows) - built} up to date "
        f"in {time.monotonic() - start:.1f} s"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    """Never downloads: with an empty wheel cache the component images' state is unknown."""
    from a1.containers import names
    from a1.containers.images import build, wheels
    from a1.containers.images.sizes import mb, table

    cache = build.cache_dir(args.cache_dir)
    client = build.connect()
    try:
        with build.locked(cache):
            images = build.plan(cache, say=lambda _line: None, download=False).images
    except wheels.NotCached:
        rows, _total = build.size_rows(client, list(build.fixed_images()))
        for name in (names.IMAGE_SIDECAR, names.IMAGE_CONTROL, names.IMAGE_CELL):
            found = build.current(client, names.image_ref(name))
            size = mb(int(found.attrs.get("Size") or 0)) if found is not None else "-"
            state = "missing" if found is None else "unknown (no wheel cache: a1 images build)"
            rows.append((names.image_ref(name), size, state))
        _say(table(rows))
        return 0
    rows, total = build.size_rows(client, images)
    _say(table(rows))
    _say(f"unique disk: {mb(total)}")
    return 0
