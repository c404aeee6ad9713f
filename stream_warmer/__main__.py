"""``python -m stream_warmer`` is the same as the ``stream-warmer`` command."""

import sys

from stream_warmer.cli import main

sys.exit(main())
