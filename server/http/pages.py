"""The browser editor: its two pages, its static bundle and the schema its form is built from.

    GET /                 the user's drafts (web/dist/index.html; the page calls /api/drafts)
    GET /d/{draft_id}     the editor of one draft (web/dist/editor.html)
    GET /static/{file}    the bundle `web/build.mjs` writes: server/http/static/ in a wheel
                          (setup.py builds it there), else a checkout's web/dist/ (`make web`)
    GET /sw.js            the service worker that keeps the pages, the bundle and the schema
                          for offline use (web/public/sw.js; served from / for its scope)
    GET /api/schema       the draft schema as JSON, for the form (Authorization: Bearer TOKEN),
                          with the server's limits the page checks before sending a change

Mounted under a prefix (a host application's `Mount("/collab", ...)`, or uvicorn's
`--root-path`), the pages are sent with their links under the request's `root_path` and that
root in `<meta name="draftsync-root">`, which the scripts prefix to every path they build
(web/src/root.js): the bundle is the same, wherever it is mounted. The service worker takes its
root from its own address (`/collab/sw.js`).

The pages take the token from `?token=` (what `draftsync serve` prints) and keep it in this
origin's localStorage, so that a link copied from the address bar opens in another tab; nothing
here needs it but `/api/schema`. Pages are sent with `no-referrer`, so
that a token in the address bar never travels in a Referer header, and with a CSP that allows
only this origin's scripts and WebSockets. Without a built bundle the pages answer 503 saying
how to build it.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from crdt.errors import DraftsyncError
from crdt.schema import Field, Schema
from server.access import check_draft_id
from server.errors import RateLimited
from server.http.common import bearer_token

if TYPE_CHECKING:
    from server.service import Service

__all__ = [
    "WEB_DIST",
    "drafts_page",
    "editor_page",
    "routes",
    "schema_endpoint",
    "schema_json",
    "service_worker",
]


def _find_bundle() -> Path:
    """The wheel's bundle when installed from one; a checkout's web/dist/ otherwise (editable
    installs and `python -m server` serve what `make web` last built there)."""
    packaged = Path(__file__).resolve().parent / "static"
    if (packaged / "editor.html").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "web" / "dist"


WEB_DIST = _find_bundle()

_NOT_BUILT = "The editor is not built: run `make web` (npm ci and node build.mjs in web/).\n"
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}


def _page(name: str, request: Request) -> Response:
    path = WEB_DIST / name
    if not path.is_file():
        return PlainTextResponse(_NOT_BUILT, status_code=503)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    if not root:
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)
    return HTMLResponse(_rooted(path.read_text(encoding="utf-8"), root), headers=_PAGE_HEADERS)


def _rooted(page: str, root: str) -> str:
    """`page` with its absolute links (the bundle, the home link) under `root`, and `root` in
    the meta the scripts read."""
    quoted = escape(root, quote=True)
    page = page.replace('="/static/', f'="{quoted}/static/')
    page = page.replace('href="/"', f'href="{quoted}/"')
    meta = f'<meta name="draftsync-root" content="{quoted}">'
    return page.replace("<head>", f"<head>\n  {meta}", 1)


async def drafts_page(request: Request) -> Response:
    return _page("index.html", request)


async def editor_page(request: Request) -> Response:
    try:
        check_draft_id(request.path_params["draft_id"])
    except DraftsyncError as error:
        return PlainTextResponse(f"{error}\n", status_code=404)
    return _page("editor.html", request)


async def schema_endpoint(request: Request) -> Response:
    service: Service = request.app.state.service
    try:
        await service.callers.identify(request, bearer_token(request))
    except RateLimited as error:  # an address with too many failed sign-ins
        return JSONResponse(
            {"error": "rate_limited", "detail": str(error)},
            status_code=429,
            headers={"Retry-After": str(error.retry_after)},
        )
    except DraftsyncError as error:
        return JSONResponse(
            {"error": "unauthorized", "detail": str(error)},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    # The page refuses a change bigger than the server takes (1009) before sending it.
    limits = {"maxMessageBytes": service.settings.max_message_bytes}
    return JSONResponse({**schema_json(service.settings.schema), "limits": limits})


async def service_worker(request: Request) -> Response:
    """The service worker, at the root so that its scope covers `/` and `/d/...`; never cached
    by HTTP (the browser checks it for updates on each visit)."""
    path = WEB_DIST / "sw.js"
    if not path.is_file():
        return PlainTextResponse(_NOT_BUILT, status_code=503)
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type="text/javascript; charset=utf-8", headers=headers)


def schema_json(schema: Schema) -> dict[str, Any]:
    """`{"fields": [{name, kind, type, rule, initial, transitions, precedence, filled}, ...]}`,
    in the schema's order; the last five are null/empty for text and richtext fields."""
    return {"fields": [_field_json(f) for f in schema.fields.values()]}


def _field_json(field: Field) -> dict[str, Any]:
    return {
        "name": field.name,
        "kind": field.kind.value,
        "type": field.type.value if field.type else None,
        "rule": field.rule.value if field.rule else None,
        "initial": field.initial,
        "transitions": {str(k): list(v) for k, v in field.transitions.items()},
        "precedence": list(field.precedence),
        "filled": None if field.type is None else _filled_json(field.filled),
    }


class _Bundle:
    """StaticFiles over web/dist/, answering 503 (not a 500) while the bundle is not built."""

    def __init__(self) -> None:
        self._files = StaticFiles(directory=WEB_DIST, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not WEB_DIST.is_dir():
            response: Response = PlainTextResponse(_NOT_BUILT, status_code=503)
            await response(scope, receive, send)
            return

        async def send_no_cache(message: Any) -> None:
            if message["type"] == "http.response.start":
                # revalidate each time (ETag): a rebuilt bundle is picked up on reload
                message["headers"] = [*message["headers"], (b"cache-control", b"no-cache")]
            await send(message)

        await self._files(scope, receive, send_no_cache)


routes: list[BaseRoute] = [
    Route("/", drafts_page),
    Route("/d/{draft_id}", editor_page),
    Route("/api/schema", schema_endpoint),
    Route("/sw.js", service_worker),
    Mount("/static", app=_Bundle(), name="static"),
]


def _filled_json(filled: str | tuple[Any, ...]) -> str | list[Any]:
    return list(filled) if isinstance(filled, tuple) else filled
