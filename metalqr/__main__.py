"""``python -m metalqr``: the command-line interface (:func:`metalqr.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
