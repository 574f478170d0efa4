"""``python -m emocaliber_rl.cli``: the ``emocaliber`` console script."""

import sys

from emocaliber_rl.cli import main

sys.exit(main())
