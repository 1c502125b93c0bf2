"""``python -m sing_backend.executor``: the same as ``sing executor``."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
