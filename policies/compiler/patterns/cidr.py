"""CIDR networks for ``net.cidr_contains``, parsed as the ``ipnet`` crate parses them."""

from __future__ import annotations

import struct

from policies.compiler.patterns.constants import BLOB_VERSION, CIDR_MAGIC
from policies.compiler.patterns.errors import invalid
from policies.core.ipaddr import read_ipnet


def compile_cidr(cidr: str) -> bytes:
    """Compile the network of ``net.cidr_contains(cidr, x)``: family, prefix, masked address
    (16 bytes, an IPv4 network in the first four)."""
    parsed = read_ipnet(cidr)
    if parsed is None:
        raise invalid(f"invalid CIDR {cidr!r}", 0)
    family, value, prefix = parsed
    width = 32 if family == 4 else 128
    mask = ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1)
    network = (value & mask) << (128 - width)
    return struct.pack("<4I", CIDR_MAGIC, BLOB_VERSION, family, prefix) + network.to_bytes(
        16, "big"
    )
