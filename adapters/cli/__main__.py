"""`python -m adapters.cli` runs the `eventlog` command."""

import sys

from adapters.cli.app import main

sys.exit(main())
