"""What every REST endpoint shares: the caller, validated JSON bodies, error answers, paging.

An endpoint is `async def handler(request, service, user) -> Response` wrapped by `endpoint`,
which reads the caller from `Authorization: Bearer TOKEN` (or, without one, from an embedding
host's `authenticate`: server/identity/caller.py) and answers every `DraftsyncError` as

    {"error": "not_found", "detail": "draft not found"}    status: http_status_for(error)
    {"error": "validation_failed", "detail": "...",
     "errors": [{"loc": "fields.tags", "msg": "..."}]}

Anything else is logged with its traceback and answered 500, never with its text. Each answer
is counted in `draftsync_http_requests{method,route,status}` (the route's template, no ids); an
error answer is logged, 4xx at info and 5xx at warning, with the path, user and reason.

A caller with a valid token is then admitted (server/admission/quotas.py): over their rate
429 and over the server's requests under way 503, both with Retry-After (a `CapReached`,
logged at debug only: a flood of them is counted in `draftsync_admission_refused_total`).

Bodies are parsed with `json` (not JSON: 400) and then validated by a pydantic model (wrong
shape: 422, each problem with its place). Before parsing, a body must be UTF-8 (RFC 8259) and
nest at most `MAX_JSON_DEPTH` arrays and objects: its depth is read from its brackets in one
linear pass, so a depth bomb is a 400 without the parser recursing into it. NaN, Infinity and
numbers too large for a float (`1e999`) are not JSON values and are refused (400).

A body (one byte or more) must be declared JSON: `Content-Type: application/json` or
`application/*+json`, parameters allowed. Any other type, or none, is 415 before the body is
read; so is a charset other than UTF-8 (`utf-8` or another of its labels, any case, quoted or
not): JSON is UTF-8, and a body declared Latin-1 would otherwise be read as UTF-8, not as its
sender meant. A 415 names what is
taken in `Accept-Post` (to a POST) or `Accept-Patch` (to a PATCH): `application/json`.

A browser sends `text/plain`, `application/x-www-form-urlencoded` and `multipart/form-data`
cross-site without a CORS preflight, with the user's cookies (which an embedding host's
`authenticate` may read): refusing them keeps a foreign page's form or `fetch(no-cors)` from
writing as the signed-in user. A missing type is refused too (`curl -d`
sends form-urlencoded anyway). An empty body, taken as `{}`, needs no type.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import itertools
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crdt.errors import DraftsyncError, RuleError
from server import metrics
from server.access import Role, check_draft_id, strongest
from server.errors import (
    BadRequest,
    BodyTooLarge,
    CapReached,
    InvalidToken,
    NotPermitted,
    StoreError,
    UnknownDraft,
    UnsupportedMediaType,
    ValidationFailed,
    http_status_for,
)
from server.http.answers import ErrorAnswer, Problem
from server.sync.gate import GateClosed

if TYPE_CHECKING:
    from server.service import Service
    from server.sync.room import Room

__all__ = [
    "COMMIT_WAIT_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "Handler",
    "bearer_token",
    "committed",
    "declares_json",
    "decode_cursor",
    "encode_cursor",
    "endpoint",
    "finite",
    "http_error",
    "iso",
    "reach",
    "read_json",
    "read_query",
    "require_owner",
]

logger = logging.getLogger("draftsync.api")

MAX_BODY_BYTES = 1024 * 1024
# No body of ours nests more than 3 levels; 64 leaves room and keeps pydantic's work flat.
MAX_JSON_DEPTH = 64

M = TypeVar("M", bound=BaseModel)

# The roles the caller's token grants on drafts (server/access.py), for `reach`: set by
# `endpoint` for the request it runs, so that every handler keeps its `(request, service,
# user)` signature and the grant cannot leak to another request (each runs in its own task).
_GRANTS: ContextVar[Mapping[str, Role]] = ContextVar(
    "draftsync_grants", default=MappingProxyType({})
)
Handler = Callable[[Request, "Service", str], Awaitable[Response]]

_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


def _loggable_reason(error: DraftsyncError) -> str:
    """The reason a log line gives for a refused request: the client is told everything, with
    the values it sent; the log names only where the body was wrong (values are typed text)."""
    if isinstance(error, ValidationFailed):
        places = sorted({problem["loc"] for problem in error.errors})
        return f"invalid body at {', '.join(places) or 'body'} (values not logged)"
    if isinstance(error, RuleError):
        return "a value the rules refuse (values not logged)"
    return str(error)


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        service: Service = request.app.state.service
        user: str | None = None
        granting = None
        admitted = False
        try:
            claims = await service.callers.identify(request, bearer_token(request))
            user = claims.user
            granting = _GRANTS.set(claims.grants)
            service.requests.admit(user)  # 429 over the user's rate, 503 over the server's cap
            admitted = True
            response = await handler(request, service, user)
        except DraftsyncError as error:
            response = _error_response(error)
            level = logging.WARNING if response.status_code >= 500 else logging.INFO
            if isinstance(error, CapReached):  # a flood would flood the log: counted instead
                level = logging.DEBUG  # draftsync_admission_refused_total{cap}
            logger.log(
                level,
                "rest error method=%s path=%s user=%s status=%d reason=%s",
                request.method,
                request.url.path,
                user,
                response.status_code,
                _loggable_reason(error),
            )
        except Exception:
            logger.exception(
                "rest failure method=%s path=%s user=%s", request.method, request.url.path, user
            )
            body = ErrorAnswer(error="internal", detail="internal server error")
            response = JSONResponse(body.model_dump(), status_code=500)
        finally:
            if granting is not None:
                _GRANTS.reset(granting)
            if admitted:
                service.requests.done()
        route = request.scope.get("route")
        metrics.HTTP_REQUESTS.labels(
            method=request.method,
            route=getattr(route, "path", "unmatched"),
            status=str(response.status_code),
        ).inc()
        return response

    return run


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _error_response(error: DraftsyncError) -> JSONResponse:
    status = http_status_for(error)
    problems = None
    if isinstance(error, ValidationFailed):
        problems = [Problem.model_validate(problem) for problem in error.errors]
    body = ErrorAnswer(error=_ERROR_NAMES.get(status, "error"), detail=str(error), errors=problems)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, InvalidToken) else None
    if isinstance(error, CapReached):
        headers = {"Retry-After": str(error.retry_after)}
    if isinstance(error, UnsupportedMediaType):
        headers = error.headers
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route 404, wrong method 405) in the same JSON form."""
    assert isinstance(exc, HTTPException)
    body = ErrorAnswer(error=_ERROR_NAMES.get(exc.status_code, "error"), detail=exc.detail)
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)


# -- the caller and the draft -----------------------------------------------------------------


async def reach(service: Service, draft_id: str, user: str) -> Role:
    """The caller's role on the draft: the stronger of the stored one and what the caller's
    token grants; a draft they cannot reach is 404, as one that is not there (existence is
    not leaked). A deleted draft has no access rows left, and a grant does not revive it."""
    check_draft_id(draft_id)
    stored = await service.store.role_of(draft_id, user)
    granted = _GRANTS.get().get(draft_id)
    if stored is None and granted is not None:
        record = await service.store.draft_record(draft_id)
        if record is None or record.deleted_at is not None:
            granted = None
    role = strongest(Role(stored) if stored is not None else None, granted)
    if role is None:
        raise UnknownDraft("draft not found")
    return role


def require_owner(role: Role, action: str) -> None:
    if role is not Role.OWNER:
        raise NotPermitted(f"only an owner of the draft may {action}")


# -- bodies and queries -----------------------------------------------------------------------


async def read_json(request: Request, model: type[M], *, context: Any = None) -> M:
    """The body as `model`; an empty body (no byte) is `{}`, one of whitespace is not JSON.
    A body must be declared JSON (415 otherwise): see the module's docstring."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
    refusal = _type_refusal(request.headers.get("content-type"), request.method)
    if refusal is not None and declared is not None and declared.isdigit() and int(declared) > 0:
        raise refusal  # refused unread
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
    if not raw:
        return _validated(model, {}, context, where="body")
    if refusal is not None:  # a body sent without a Content-Length (chunked)
        raise refusal
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: not UTF-8 ({exc.reason})") from None
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"request body is nested too deeply: over {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an int of over 4300 digits
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw) and _holds_lone_surrogate(data):
        raise BadRequest("request body is not valid JSON: a string holds a lone surrogate")
    return _validated(model, data, context, where="body")


# RFC 9110, 8.3.1: `type "/" subtype *( OWS ";" OWS parameter )`, case-insensitive.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*(?:;.*)?", re.DOTALL)


def declares_json(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON: `application/json` or `application/*+json`, with any
    parameters (`; charset=utf-8`). None (no header) is not."""
    if content_type is None:
        return False
    match = _MEDIA_TYPE.fullmatch(content_type)
    if match is None:
        return False
    kind, subtype = match.group(1).lower(), match.group(2).lower()
    return kind == "application" and (
        subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5)
    )


def _declared_charset(content_type: str) -> str | None:
    """The `charset` parameter of a Content-Type, unquoted (RFC 9110, 5.6.6); None if absent."""
    for parameter in content_type.split(";")[1:]:
        name, equals, value = parameter.partition("=")
        if equals and name.strip().lower() == "charset":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            return value
    return None


# The header that names the types a method's body may have: RFC 5789 3.2 (PATCH), and the
# W3C LDP's `Accept-Post` (registered with IANA). PUT has none.
_ACCEPT_HEADERS = {"POST": "Accept-Post", "PATCH": "Accept-Patch"}


# The labels of UTF-8 in the WHATWG Encoding Standard (what browsers and most clients write);
# `us-ascii` is not one of them there (browsers read it as windows-1252).
_UTF8_LABELS = frozenset({"utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8"})


def _type_refusal(content_type: str | None, method: str) -> UnsupportedMediaType | None:
    """Why a body of `content_type` is refused (415), or None if it is JSON in UTF-8."""
    if not declares_json(content_type):
        why = "a request body must be JSON: send it with `Content-Type: application/json`"
    else:
        assert content_type is not None
        charset = _declared_charset(content_type)
        if charset is None or charset.lower() in _UTF8_LABELS:
            return None
        why = (
            f"a JSON body is UTF-8 (RFC 8259), not {charset[:32]!r}: send it as UTF-8, with "
            "`Content-Type: application/json` or `application/json; charset=utf-8`"
        )
    refusal = UnsupportedMediaType(why)
    header = _ACCEPT_HEADERS.get(method)
    if header is not None:
        refusal.headers = {header: "application/json"}
    return refusal


# A surrogate reaches a decoded string only through a `\uD800`-`\uDFFF` escape (UTF-8 cannot
# carry one): the bodies without such an escape, nearly all, skip the check below.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _holds_lone_surrogate(data: Any) -> bool:
    """Whether a key or string of `data` holds a surrogate that no pair joined: valid JSON
    syntax (RFC 8259, 8.2), but no Unicode text, which pycrdt and SQLite refuse to encode."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [0] * 256
for _open, _close in (b"[]", b"{}"):
    _BRACKET_STEP[_open], _BRACKET_STEP[_close] = 1, -1


def _json_depth(raw: bytes) -> int:
    """How deep the arrays and objects of a UTF-8 JSON text nest, from its brackets outside
    strings (it has no others): strings cut out and the rest summed, all in C loops."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def read_query(request: Request, model: type[M]) -> M:
    """The query as `model`. An integer parameter is ASCII digits, a minus sign at most:
    pydantic's lax mode (a query is strings) would also read " 1", "+1", "1_0" and "1.0"."""
    query = dict(request.query_params)
    for name in _integer_parameters(model):
        value = query.get(name)
        if value is not None and not _INTEGER.fullmatch(value):
            problem = {"loc": name, "msg": "Input should be an integer, in ASCII digits"}
            raise ValidationFailed(f"invalid query: {name}: {problem['msg']}", [problem])
    return _validated(model, query, None, where="query")


_INTEGER = re.compile(r"-?[0-9]+")


@functools.cache
def _integer_parameters(model: type[BaseModel]) -> tuple[str, ...]:
    """The query names (aliases first) of `model`'s fields that take an int (or int | None)."""
    return tuple(
        field.alias or name
        for name, field in model.model_fields.items()
        if field.annotation is int or field.annotation == int | None
    )


def _validated(model: type[M], data: Any, context: Any, *, where: str) -> M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(part) for part in e["loc"]) or where, "msg": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
        raise ValidationFailed(f"invalid {where}: {summary}", errors) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:32]} is too large for a number")
    return value


# -- answers ----------------------------------------------------------------------------------


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (`2025-01-31T12:00:00.123Z`)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def finite(value: Any) -> Any:
    """`value` with NaN and infinities (which a Yjs client may store) as null: JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return check_draft_id(after)
    except (binascii.Error, UnicodeDecodeError, DraftsyncError, ValueError):
        raise BadRequest("invalid cursor: pass back the `next` of the previous page") from None


COMMIT_WAIT_SECONDS = 10.0


async def committed(room: Room) -> None:
    """Return once everything `room` has accepted so far is committed: this draft's backlog
    only, never the whole pipeline's (another room's flood does not hold a REST call up).
    A room that fails first, or a store that stays too slow, answers 503 (retry)."""
    try:
        async with asyncio.timeout(COMMIT_WAIT_SECONDS):
            await room.gate.until_committed()
    except GateClosed:
        raise StoreError("the draft's updates could not be committed, retry") from None
    except TimeoutError:
        raise StoreError("the draft's updates are not committed yet, retry") from None
