"""``python -m a1``: the ``a1`` command, for launchers that run the interpreter directly."""

import sys

from a1.cli import main

sys.exit(main())
