"""``python -m lob_platform ...`` is the ``lob`` command."""

import sys

from lob_platform.cli import main

sys.exit(main())
