"""`python -m crawlhub` is the `crawlhub` command."""

import sys

from crawlhub.cli.main import main

sys.exit(main())
