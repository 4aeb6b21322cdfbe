"""The one flow factory: every source's Prefect flow is built from its declaration.

``source_flow(SOURCE, __name__)`` returns a Prefect flow whose signature is the
source's parameters model (so the Prefect UI and ``prefect deploy`` see each
parameter with its type, default and description), whose body checks the parameters,
resolves the instance, partition, database and URLs (``headwater.batch.declared_run``)
and runs the batch through the shared pipeline: an export source downloads its
META.json and files, an API source calls its ``fetch``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Flow, flow
from prefect.flow_engine import FlowRunTimeoutError
from prefect.states import Failed

from blocks.ledger import open_ledger
from blocks.secrets import secret_value
from headwater.batch import declared_run
from headwater.errors import HeadwaterError
from headwater.logs import run_logger
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S
from headwater.settings import get_settings
from headwater.spec import ApiCall, ApiSource, DeclaredSource, ExportSource
from tasks.download import download_manifest, download_resources
from tasks.fetch import run_api_batch
from tasks.pipeline import run_batch

P = ParamSpec("P")
R = TypeVar("R")


def failure_reason(error: BaseException) -> str:
    """A failure's one-line reason: a Headwater error's text, else the exception's type and text."""
    text = " ".join(str(error).split())
    if isinstance(error, HeadwaterError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def fails_with_reason(body: Callable[P, R]) -> Callable[P, R]:
    """A flow body whose failure ends the run Failed with its one-line reason as the state's message.

    Prefect words an exception's Failed state ``Flow run encountered an exception:
    <Type>: <text>``; the UI, the flow-run alert and ``prefect flow-run inspect`` show
    that message. Here the body returns ``Failed(message=<reason>, data=<exception>)``
    instead, which Prefect records as it is; a Python caller of the flow (and a parent
    flow) still gets the exception raised, whose ``str()`` is the reason for every
    Headwater error. The traceback goes to the run's log. Prefect's own timeout is
    left to Prefect (its state is ``TimedOut``).
    """

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return body(*args, **kwargs)
        except FlowRunTimeoutError:
            raise
        except Exception as error:
            reason = failure_reason(error)
            run_logger().error("%s", reason, exc_info=error)
            return cast(R, Failed(message=reason, data=error))

    # Prefect validates parameters against the signature, resolving string annotations in the
    # wrapper's module: give it the body's signature with its annotations already resolved.
    run.__signature__ = inspect.signature(body, eval_str=True)  # type: ignore[attr-defined]
    return run


def source_flow(source: DeclaredSource[Any], module: str) -> Flow[..., RunResult]:
    """The Prefect flow of a declared source, as defined in ``module`` (the deployment's entrypoint)."""
    signature = flow_signature(source)

    def body(*args: Any, **kwargs: Any) -> RunResult:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return run_source(source, bound.arguments)

    body.__signature__ = signature  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = source.flow_name.replace("-", "_")
    body.__module__ = module
    body.__doc__ = flow_docstring(source)
    return flow(
        name=source.flow_name,
        flow_run_name=source.run_name,
        description=source.summary,
        timeout_seconds=FLOW_TIMEOUT_S,
    )(fails_with_reason(body))


def run_source(source: DeclaredSource[Any], raw: dict[str, Any]) -> RunResult:
    """Check the parameters (ConfigurationError before any request), then run the batch."""
    settings = get_settings()
    run = declared_run(source, raw, settings)
    request = run.request
    if isinstance(source, ExportSource):
        return run_batch(request, download_manifest, download_resources)
    if not isinstance(source, ApiSource):
        raise TypeError(f"{source.name}: no flow for a {type(source).__name__}")
    state: dict[str, str] = {}
    if source.stateful:
        with open_ledger() as ledger:
            state = ledger.all_state(request.instance)
    api_key = secret_value(getattr(settings, source.api_key_block)) if source.api_key_block else None
    call = ApiCall(
        label=request.label, instance=request.instance, params=run.params, urls=run.urls, state=state, api_key=api_key
    )
    return run_api_batch(request, lambda: source.fetch(call))


def flow_signature(source: DeclaredSource[Any]) -> inspect.Signature:
    """The flow's signature: one keyword-or-positional parameter per field, required ones first."""
    fields = source.params.model_fields
    ordered = sorted(fields.items(), key=lambda item: not item[1].is_required())
    return inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if info.is_required() else info.get_default(call_default_factory=True),
                annotation=info.annotation,
            )
            for name, info in ordered
        ],
        return_annotation=RunResult,
    )


def flow_docstring(source: DeclaredSource[Any]) -> str:
    """The summary, the parameters model's docstring and an ``Args:`` section (the UI's parameter descriptions)."""
    lines = [source.summary, "", inspect.cleandoc(source.params.__doc__ or ""), "", "Args:"]
    lines += [f"    {name}: {info.description or ''}" for name, info in source.params.model_fields.items()]
    return "\n".join(lines)
