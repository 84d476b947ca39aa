"""``a1 images``: being built (issue 10); this seam only registers the command."""

from __future__ import annotations

import argparse

from policies.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("images", help="(being built)")
    p.set_defaults(func=_todo)


def _todo(args: argparse.Namespace) -> int:
    raise UserError("a1 images: not built yet")
