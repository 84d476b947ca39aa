"""The sidecar's default bounds, in one place: the config parser and the modules that
enforce them read the same numbers (docs/security.md lists them). Imports nothing."""

from __future__ import annotations

MiB = 1024 * 1024

CACHE_ENTRIES = 100_000  # per decision-cache layer
CACHE_BYTES = 64 * MiB  # both layers together (each gets half)
CLAIMS_ENTRIES = 4096  # per claims carrier
CLAIMS_BYTES = 8 * MiB  # per claims carrier
LOG_QUEUE_ENTRIES = 10_000
LOG_QUEUE_BYTES = 16 * MiB
MAX_PATH = 8192  # bytes of :path, query included; longer is a 414
