"""`python -m crawlhub` is the `crawlhub` command."""

import sys

from crawlhub.cli import main

sys.exit(main())
