"""The command-line contract every flow module shares.

Exit 0 when the batch was loaded or was unchanged; exit 1 with a one-line
``error: <reason>`` on stderr when it failed or was skipped (circuit open).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from headwater.pipeline import BatchOutcome, RunResult


def run_flow_cli(call: Callable[[], RunResult]) -> int:
    """Run a flow call and turn its outcome into the exit code and the one-line report."""
    try:
        outcome = call()
    except Exception as error:  # the one-line reason is the contract; the traceback is in the logs
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not isinstance(outcome, BatchOutcome):  # a deployment run superseded by a newer one
        print(f"error: {outcome.message}", file=sys.stderr)
        return 1
    if outcome.error:
        print(f"error: {outcome.error}", file=sys.stderr)
        return 1
    print(f"{outcome.instance} {outcome.partition_key}: {outcome.status} {outcome.rows_by_table}")
    return 0
