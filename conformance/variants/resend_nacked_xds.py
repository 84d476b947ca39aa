"""Variant ``resend-nacked-xds``: an xDS server that sends a NACKed version again.

The product's per-stream state machine (``control.xds.stream.ProtocolStream``)
remembers the version a client NACKed and never sends it on that stream again
until the snapshot's version of the type changes. This variant forgets: a NACK is
answered at once with the same version, which the client NACKs again, and so on
(until the server's request-rate limit closes the stream and the client
reconnects). Caught by I-8: the ``xds_nacks`` observation counts more than one NACK
of the rejected version per subscriber.

``python -m conformance.variants.resend_nacked_xds control serve <arguments>``
"""

from __future__ import annotations

from typing import Any

from conformance.variants.wrapper import Entry, run


def patch() -> None:
    from control.xds.stream import ProtocolStream

    def never_blocked(self: ProtocolStream, st: Any, snapshot: Any) -> bool:
        return False

    ProtocolStream.blocked = never_blocked  # type: ignore[method-assign]


def entry() -> Entry:
    from a1.cli import main

    return main


if __name__ == "__main__":
    run(patch, entry)
