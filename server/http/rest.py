"""The REST API under `/api` (design.md, "REST"): one module a resource, shared parts in
`common`. `routes` is what `server.app` mounts; `operations` describes each of them for
`GET /api/openapi.json` (`server.http.openapi`), and a test holds the two to the same list."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.http import (
    conflicts,
    dashboard,
    drafts,
    history,
    sharing,
    stats,
    tokens,
    versions,
    webhooks,
)
from server.http.openapi import Description, Operation, describe

__all__ = ["PATH_PARAMETERS", "by_method", "openapi_json", "operations", "routes"]


async def openapi_json(request: Request) -> Response:
    """The description; public, as `/healthz` is, so that tools can read it without a token."""
    return JSONResponse(_description())


def by_method(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route for all the methods of a path. Starlette answers a wrong method (405) from the
    first route whose path matches, so two routes on one path would each name only their own
    method in `Allow`. `handlers` (by method) stays on the endpoint for the OpenAPI test."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    dispatch.handlers = handlers  # type: ignore[attr-defined]
    return Route(path, dispatch, methods=list(handlers))


routes: list[BaseRoute] = [
    by_method("/api/drafts", POST=drafts.create_draft, GET=drafts.list_drafts),
    by_method("/api/drafts/{draft_id}", GET=drafts.get_draft, DELETE=drafts.delete_draft),
    by_method("/api/drafts/{draft_id}/access", GET=sharing.get_access, PUT=sharing.put_access),
    Route("/api/drafts/{draft_id}/events", history.list_events, methods=["GET"]),
    Route("/api/drafts/{draft_id}/versions/{version}", history.get_version, methods=["GET"]),
    by_method(
        "/api/drafts/{draft_id}/versions",
        GET=versions.list_named_versions,
        POST=versions.name_version,
    ),
    Route("/api/drafts/{draft_id}/diff", versions.diff_versions, methods=["GET"]),
    Route("/api/drafts/{draft_id}/restore", history.restore_version, methods=["POST"]),
    Route("/api/drafts/{draft_id}/webhooks", webhooks.list_deliveries, methods=["GET"]),
    Route(
        "/api/drafts/{draft_id}/conflicts/{conflict_id}/resolve",
        conflicts.resolve_conflict,
        methods=["POST"],
    ),
    Route("/api/stats", stats.get_stats, methods=["GET"]),
    Route("/api/dashboard", dashboard.get_dashboard, methods=["GET"]),
    Route("/api/token/renew", tokens.renew_token, methods=["POST"]),
    Route("/api/openapi.json", openapi_json, methods=["GET"]),
]

PATH_PARAMETERS: dict[str, Any] = {
    "draft_id": Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")],
    "version": Annotated[int, Field(ge=0)],
    "conflict_id": str,
}

_DRAFT = "/api/drafts/{draft_id}"
_READ = (400, 404, 503)  # a bad draft id, a draft the caller cannot reach, the store
_WRITE = (*_READ, 413, 415, 422)  # and a body (declared application/json)

operations: list[Operation] = [
    Operation(
        "POST", "/api/drafts", drafts.create_draft, "Create a draft",
        answers={201: drafts.Draft}, body=drafts.NewDraft,
        errors=(400, 403, 409, 413, 415, 422, 503),
    ),
    Operation(
        "GET", "/api/drafts", drafts.list_drafts, "List the drafts the caller can reach",
        answers={200: drafts.DraftList}, query=drafts.Page, errors=(400, 422, 503),
    ),
    Operation(
        "GET", _DRAFT, drafts.get_draft, "Read a draft",
        answers={200: drafts.Draft}, errors=_READ,
    ),
    Operation(
        "DELETE", _DRAFT, drafts.delete_draft, "Delete a draft (owners)",
        answers={204: None}, errors=(*_READ, 403),
    ),
    Operation(
        "PUT", f"{_DRAFT}/access", sharing.put_access, "Share a draft, change or remove a role",
        answers={200: sharing.AccessChanged}, body=sharing.AccessChange,
        errors=(*_WRITE, 403, 409),
    ),
    Operation(
        "GET", f"{_DRAFT}/access", sharing.get_access,
        "List who has access and their role (owners)",
        answers={200: sharing.AccessList}, errors=(*_READ, 403),
    ),
    Operation(
        "GET", f"{_DRAFT}/events", history.list_events, "Read a draft's journal",
        answers={200: history.EventList}, query=history.EventPage, errors=_READ,
    ),
    Operation(
        "GET", f"{_DRAFT}/versions/{{version}}", history.get_version,
        "Read a draft as it was right after a version",
        answers={200: history.DraftVersion}, errors=_READ,
    ),
    Operation(
        "GET", f"{_DRAFT}/versions", versions.list_named_versions,
        "List the versions people named, newest first",
        answers={200: versions.NamedVersionList}, errors=_READ,
    ),
    Operation(
        "POST", f"{_DRAFT}/versions", versions.name_version,
        "Name the draft's current committed version (editors and owners)",
        answers={201: versions.NamedVersion}, body=versions.NameVersion, errors=(*_WRITE, 403),
    ),
    Operation(
        "GET", f"{_DRAFT}/diff", versions.diff_versions,
        "What changed between two versions (to: default the current), field by field",
        answers={200: versions.DraftDiff}, query=versions.DiffQuery, errors=_READ,
    ),
    Operation(
        "POST", f"{_DRAFT}/restore", history.restore_version,
        "Restore a version, as a new forward change",
        answers={200: history.Restored}, body=history.RestoreBody, errors=(*_WRITE, 403),
    ),
    Operation(
        "GET", f"{_DRAFT}/webhooks", webhooks.list_deliveries,
        "List a draft's webhook deliveries with their attempts (owners)",
        answers={200: webhooks.DeliveryList}, query=webhooks.DeliveryPage,
        errors=(*_READ, 403),
    ),
    Operation(
        "POST", f"{_DRAFT}/conflicts/{{conflict_id}}/resolve", conflicts.resolve_conflict,
        "Resolve a manual conflict with one of its candidates",
        answers={200: conflicts.Resolved}, body=conflicts.Resolution, errors=(*_WRITE, 403),
    ),
    Operation(
        "GET", "/api/stats", stats.get_stats, "Figures over the drafts the caller can reach",
        answers={200: stats.Stats}, errors=(503,),
    ),
    Operation(
        "GET", "/api/dashboard", dashboard.get_dashboard,
        "The drafts the caller can reach, each as a summary for the dashboard",
        answers={200: dashboard.SummaryList}, query=dashboard.DashboardPage,
        errors=(400, 422, 503),
    ),
    Operation(
        "POST", "/api/token/renew", tokens.renew_token,
        "Exchange a valid token for a fresh one of the same user",
        answers={200: tokens.RenewedToken}, body=tokens.TokenRenewal, errors=(*_WRITE, 403),
    ),
    Operation(
        "GET", "/api/openapi.json", openapi_json, "This description (OpenAPI 3.1)",
        answers={200: Description}, public=True, tag="meta",
    ),
]  # fmt: skip


@functools.cache
def _description() -> dict[str, Any]:
    try:
        version = package_version("draftsync")
    except PackageNotFoundError:  # run from a source tree that was never installed
        version = "0.0.0"
    return describe(
        operations,
        path_parameters=PATH_PARAMETERS,
        title="draftsync",
        version=version,
        description='The REST API of draftsync (docs/design.md, "REST"). Every answer is '
        'JSON; every error answer is `{"error", "detail", "errors"?}`. Send '
        "`Authorization: Bearer TOKEN`.",
    )
