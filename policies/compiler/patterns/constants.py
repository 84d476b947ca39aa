"""Size caps and the blob format constants shared with ``a1rt_match.h``."""

from __future__ import annotations

DFA_CAP = 4096
"""Most DFA states a compiled pattern may have; past it the pattern is rejected."""

NFA_CAP = 50_000
TABLE_CAP = 1 << 18  # transition table cells (4 bytes each): 1 MiB
NEST_CAP = 100
MAX_CP = 0x10FFFF
MAX_BYTE = 0xFF

DFA_MAGIC = 0x46443141  # b"A1DF"
CIDR_MAGIC = 0x49433141  # b"A1CI"
BLOB_VERSION = 1

# Blob flags (header) and state flags; mirrored in a1rt_match.h.
F_FULL = 1  # full match (glob) rather than unanchored search (regex)
F_BYTES = 2  # symbols are bytes rather than Unicode scalar values
F_NUL_ERROR = 4  # a NUL byte in the subject is an evaluation error
S_MATCH = 1  # entering this state means "match", whatever follows
S_EOI = 2  # accept if the subject ends in this state
