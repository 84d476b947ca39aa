import sys

from control.relay.cli import main

sys.exit(main())
