"""`python -m bench ...`: the same command line as `draftsync bench ...`."""

import sys

from bench.cli import main

sys.exit(main())
