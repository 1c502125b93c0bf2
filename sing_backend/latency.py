"""Interpreter settings for a process whose event loop must answer within milliseconds."""

from __future__ import annotations

import gc
import sys


def tune_interpreter() -> None:
    # Helper threads (health checks, the Mesos driver, the cluster, database drivers) take the GIL in
    # turns with the event loop; a short switch interval keeps the loop from waiting 5 ms at every hand-back.
    sys.setswitchinterval(0.0005)


def freeze_heap() -> None:
    """Leave the objects alive now (modules, settings, loaded state) out of later garbage collections.

    A full collection walks every tracked object while holding the GIL: 50-60 ms here for a backend with
    history queued, a stall of the event loop each time. What start-up built lives as long as the
    process, so walking it again finds nothing."""
    gc.collect()
    gc.freeze()
