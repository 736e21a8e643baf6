"""``python -m prism_testkit``: the ``prism-testkit`` command, where the script is not on PATH."""

import sys

from prism_testkit.cli import main

sys.exit(main())
