"""How a variant's wrapper module runs: break one behaviour, then run the product unchanged.

The target starts a wrapped process as ``python -m <wrapper> <the product's own
arguments>``; the wrapper's ``patch`` replaces exactly one product function, and
the product's entry point then runs as it would have, with the same arguments. So
a variant differs from the product in that one place, and nothing in the product
knows variants exist.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

Entry = Callable[[list[str]], int]  # a product main(argv) -> exit code


def run(patch: Callable[[], None], entry: Callable[[], Entry]) -> NoReturn:
    """Apply ``patch``, then exit with the product entry point's code for ``sys.argv[1:]``.

    ``entry`` is a function returning the entry point, so the product module is
    imported after the patch's own imports and before it runs, never before the patch.
    """
    patch()
    sys.exit(entry()(sys.argv[1:]))


def arg_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), the last one wins."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value
