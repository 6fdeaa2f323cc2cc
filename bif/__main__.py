"""`python -m bif`: the command-line interface (bif.cli)."""

import sys

from bif.cli import main

sys.exit(main())
