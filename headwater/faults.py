"""Named crash points for the fault-injection suite (``tests/test_faults.py``).

``checkpoint("published")`` kills this process with SIGKILL when the failpoint setting
(``HEADWATER_FAILPOINT``) names that point, so a test can stop a real run exactly
between two steps and check what the next run sees. Unset (always, in production),
a checkpoint does nothing.
"""

from __future__ import annotations

import os
import signal

from headwater.settings import get_settings

POINTS = frozenset({"downloaded", "table-staged", "staged", "mid-publish", "published", "ledger-write"})
"""In a run's order, roughly: tables are staged while the others download, so ``table-staged``
(the first table staged) and ``downloaded`` (every file downloaded and verified, some tables
staged, the warehouse lock held) can come in either order; then ``staged`` (every table),
``mid-publish`` (between two tables' swaps), ``published``, ``ledger-write``."""


def checkpoint(point: str) -> None:
    """Die here (kill -9) when the failpoint setting names ``point``."""
    if point not in POINTS:
        raise ValueError(f"unknown failpoint {point!r}")
    if get_settings().failpoint == point:
        os.kill(os.getpid(), signal.SIGKILL)
