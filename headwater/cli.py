"""The command-line contract every flow module shares.

Exit 0 when the batch was loaded or was unchanged; exit 2 with a one-line
``error: <reason>`` on stderr when a parameter or setting is wrong (nothing was
fetched); exit 1 with a one-line reason when the run failed, was skipped (circuit
open), was superseded, or loaded only part of the batch (``partial``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from prefect.exceptions import ParameterTypeError

from headwater.errors import ConfigurationError
from headwater.ledger import SUCCESSES
from headwater.outcome import BatchOutcome, RunResult

EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


def report_error(error: BaseException | str, code: int = EXIT_FAILED) -> int:
    """Print ``error: <reason>`` as one line on stderr and return the exit code.

    An exception's code is 2 for a configuration error (a bad parameter or setting),
    else ``code``.
    """
    if isinstance(error, ConfigurationError | ParameterTypeError):
        code = EXIT_CONFIGURATION
    print(f"error: {' '.join(str(error).splitlines())}", file=sys.stderr)
    return code


def run_flow_cli(call: Callable[[], RunResult]) -> int:
    """Run a flow call and turn its outcome into the exit code and the one-line report."""
    try:
        outcome = call()
    except Exception as error:  # the one-line reason is the contract; the traceback is in the logs
        return report_error(error)
    if not isinstance(outcome, BatchOutcome):  # a deployment run superseded by a newer one
        return report_error(str(outcome.message))
    summary = f"{outcome.instance} {outcome.partition_key}: {outcome.status} {outcome.rows_by_table}"
    if outcome.status in SUCCESSES and not outcome.error:
        print(summary)
        return 0
    if outcome.rows_by_table:  # a partial batch: what did load
        print(summary)
    return report_error(outcome.error or summary)
