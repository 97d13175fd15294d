"""``python -m router`` is the ``router`` command."""

import sys

from router.entry import main

sys.exit(main())
