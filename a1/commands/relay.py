"""``a1 control relay``: the local xDS relay an Envoy boots through (docs/relay.md).

Registered by the ``a1 control`` group (``relay.register(control_sub)``); the same
command runs without ``a1`` as ``python -m control.relay``.
"""

from __future__ import annotations

import argparse

from control.relay.cli import add_arguments, run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "relay", help="proxy one Envoy's ADS stream to the control plane and serve its "
                      "last ACKed config while the control plane is down")
    add_arguments(parser)
    parser.set_defaults(func=run)
