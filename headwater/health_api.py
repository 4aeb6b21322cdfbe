"""Data health over HTTP, read-only: the same model as ``python -m flows.health --json``.

    GET /health/status           the overall status (HealthStatus)
    GET /health/sources          the overall status and every instance (HealthReport)
    GET /health/sources/{name}   one instance (SourceHealth); 404 with a JSON detail when unknown

With a token, every ``/health`` route wants ``Authorization: Bearer <token>`` (401
otherwise); the OpenAPI schema (``/openapi.json``, ``/docs``) stays open, it holds no
data. The app computes a fresh report per request through the ``report`` function it is
given, so this module needs neither the ledger's nor the warehouse's block (see
``flows/health.py:serve_health``, which wires them and reads the token from a Prefect
Secret block).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from headwater.health import HealthReport, HealthStatus, SourceHealth

NOT_FOUND: dict[str, Any] = {"description": "No source instance of that name"}
BEARER = HTTPBearer(auto_error=False, description="The token in the Secret block HEADWATER_HEALTH_TOKEN_BLOCK names")
UNAUTHORIZED: dict[str, Any] = {"description": "Missing or wrong bearer token (only when a token is configured)"}


def create_app(report: Callable[[], HealthReport], token: str | None = None) -> FastAPI:
    """The read-only health API over ``report`` (called once per request); ``token`` None: no authentication."""
    app = FastAPI(
        title="Headwater data health",
        description="Freshness, data age and state of every source instance (read-only).",
        version="1",
    )

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        """Refuse a request without the configured bearer token (constant-time comparison)."""
        if token is None:
            return
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="expected a valid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    guarded = [Depends(authorized)]
    errors: dict[int | str, dict[str, Any]] = {401: UNAUTHORIZED}

    @app.get("/health/status", dependencies=guarded, responses=errors)
    def health_status() -> HealthStatus:
        """The overall status: the worst state over the deployed instances, and how many are in each state."""
        return report().status()

    @app.get("/health/sources", dependencies=guarded, responses=errors)
    def health_sources() -> HealthReport:
        """The overall status and every instance, deployed ones first."""
        return report()

    @app.get("/health/sources/{name}", dependencies=guarded, responses={**errors, 404: NOT_FOUND})
    def health_source(name: str) -> SourceHealth:
        """One instance; 404 when no deployed or recorded instance has this name."""
        found = report().find(name)
        if found is None:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no source instance named {name!r}")
        return found

    return app


def health_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` (not started: ``run()`` blocks, ``should_exit = True`` stops it)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)
