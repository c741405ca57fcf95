"""``python -m lifelong``: the ``lifelong`` command."""

import sys

from lifelong.cli import main

sys.exit(main())
