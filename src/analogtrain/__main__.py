"""``python -m analogtrain``: the command line (the same as the ``analogtrain`` command)."""

import sys

from .cli import main

sys.exit(main())
