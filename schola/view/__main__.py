"""`python -m schola.view RUN_OR_SWEEP_DIR [--out FILE.html] [--open]` (the same as `schola view`)."""

from __future__ import annotations

import sys

from schola.view import main

sys.exit(main(sys.argv[1:]))
