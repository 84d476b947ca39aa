"""``python -m ext_proc --config FILE.yaml``: the A1 data-plane sidecar."""

from __future__ import annotations

import sys

from ext_proc.app import main

if __name__ == "__main__":
    sys.exit(main())
