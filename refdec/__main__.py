"""Non-normative: `python -m refdec` runs the command-line tool."""

import sys

from .cli import main

sys.exit(main())
