"""``python -m lesionlens.cli``: the same as the ``lesionlens`` command."""

import sys

from lesionlens.cli import main

sys.exit(main())
