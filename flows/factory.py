"""The one flow factory: every source's Prefect flow is built from its declaration.

``source_flow(SOURCE, __name__)`` returns a Prefect flow whose signature is the
source's parameters model (so the Prefect UI and ``prefect deploy`` see each
parameter with its type, default and description), whose body checks the parameters,
resolves the instance, partition, database and URLs (``headwater.batch.declared_run``)
and runs the batch through the shared pipeline: an export source downloads its
META.json and files, an API source calls its ``fetch``.
"""

from __future__ import annotations

import inspect
from typing import Any

from prefect import Flow, flow

from blocks.ledger import open_ledger
from blocks.secrets import secret_value
from headwater.batch import declared_run
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S
from headwater.settings import get_settings
from headwater.spec import ApiCall, ApiSource, DeclaredSource, ExportSource
from tasks.download import download_manifest, download_resources
from tasks.fetch import run_api_batch
from tasks.pipeline import run_batch


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
    )(body)


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
