"""Server-side errors and the one table that maps every error to a close code and HTTP status.

The tree continues the one in `crdt.errors`::

    DraftsyncError
      ProtocolError (crdt)        -> 4400 / 400
        InvalidDraftId
        BadRequest                -> 4400 / 400 (REST: a body that is not JSON, a bad cursor)
          ValidationFailed        -> 4400 / 422 (REST: JSON of the wrong shape or values)
          BodyTooLarge            -> 4400 / 413
          UnsupportedMediaType    -> 4400 / 415 (REST: a body not declared `application/json`)
          Conflict                -> 4400 / 409 (REST: an id taken, no owner left)
        AwarenessLimitExceeded    -> 4400 (more awareness ids or bytes than one connection may hold)
      AccessError
        InvalidToken              -> 4401 / 401
        Forbidden                 -> 4403 / 404 (REST never tells a stranger a draft exists)
        NotPermitted              -> 4403 / 403 (REST: the role reaches the draft, not this act)
        CrossSiteRequest          -> 4403 / 403 (another site's page, on the host's session)
        UnknownDraft              -> 4404 / 404
          UnknownVersion, UnknownConflict
      StoreError                  -> 1013 / 503
        DiskFull                  (writes refused until space is freed; reads go on)
      CapReached                  -> 1013 / 503 + Retry-After (server/admission: a cap reached)
        RateLimited               -> 1013 / 429 + Retry-After (a user's requests or joins a second)
      QuotaExceeded               -> 4403 / 403 (a user owns as many drafts as allowed)
      RuleError (crdt)            -> 4400 / 422
      SchemaError (crdt)          -> 1013 / 500 (raised at start only)

The close code is resolved by walking the exception's MRO, so a new subclass inherits the
answer of its parent and nothing falls through to a generic code.
"""

from __future__ import annotations

from enum import IntEnum

from crdt.errors import DraftsyncError, ProtocolError, RuleError, SchemaError

__all__ = [
    "AccessError",
    "AwarenessLimitExceeded",
    "BadRequest",
    "BodyTooLarge",
    "CapReached",
    "CloseCode",
    "Conflict",
    "CrossSiteRequest",
    "DiskFull",
    "Forbidden",
    "InvalidDraftId",
    "InvalidToken",
    "KeysUnreachable",
    "NotPermitted",
    "QuotaExceeded",
    "RateLimited",
    "StoreError",
    "UnknownConflict",
    "UnknownDraft",
    "UnknownVersion",
    "UnsupportedMediaType",
    "ValidationFailed",
    "close_code_for",
    "http_status_for",
]


class CloseCode(IntEnum):
    """WebSocket close codes, as named in design.md; clients and tests rely on the numbers."""

    GOING_AWAY = 1001  # server shutting down, after flushing queued messages
    MESSAGE_TOO_BIG = 1009  # frame over --max-message-bytes (sent by uvicorn's protocol layer)
    INTERNAL_ERROR = 1011  # a server bug: logged with its traceback; reconnect and resend
    TRY_AGAIN_LATER = 1013  # the store failed, the draft is reloading, a cap reached: retry later
    MALFORMED = 4400  # framing, unknown message type, text frame, undecodable update, bad draft id
    UNAUTHORIZED = 4401  # token missing, invalid or expired
    FORBIDDEN = 4403  # the user has no access to this draft
    UNKNOWN_DRAFT = 4404  # the draft does not exist (or was deleted) and may not be created
    TOO_SLOW = 4408  # the send queue overflowed: the client fell too far behind


class InvalidDraftId(ProtocolError):
    """A draft id outside `[A-Za-z0-9_-]{1,128}`."""


class BadRequest(ProtocolError):
    """A REST request we cannot read: a body that is not JSON, a malformed cursor."""


class ValidationFailed(BadRequest):
    """A JSON body or query of the wrong shape; `errors` lists each problem with its place."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class BodyTooLarge(BadRequest):
    """A request body over the REST limit."""


class UnsupportedMediaType(BadRequest):
    """A REST body whose Content-Type is not JSON (`application/json`, `application/*+json`)
    or is missing: what a cross-site form or `fetch(no-cors)` could send without a preflight;
    or JSON declared in a charset other than UTF-8. `headers` go with the REST answer
    (`Accept-Post` naming the type taken)."""

    headers: dict[str, str] | None = None


class Conflict(BadRequest):
    """A request the draft's current state forbids: an id already taken, no owner left."""


class AwarenessLimitExceeded(ProtocolError):
    """An awareness update that would have its connection own more client ids, or hold more
    bytes of state, than `--awareness-max-states` / `--awareness-max-bytes`
    (server/sync/presence.py)."""


class AccessError(DraftsyncError):
    """The caller may not do this."""


class InvalidToken(AccessError):
    """The token is missing, malformed, wrongly signed or expired."""


class KeysUnreachable(InvalidToken):
    """The token names a key the server could not fetch: the app's JWKS is down. Refused like
    any invalid token, but the caller's fault is not proven, so it spends no failed sign-in of
    its address (server/admission/authfailures.py): an outage must not throttle honest users."""


class Forbidden(AccessError):
    """The user has no role on this draft that allows the request."""


class NotPermitted(AccessError):
    """The user reaches the draft, but its role does not allow this (only owners share)."""


class CrossSiteRequest(AccessError):
    """A request named by the embedding host's `authenticate` (its session cookie) whose Origin
    or Sec-Fetch-Site says a page of another site sent it (server/identity/origin.py)."""


class UnknownDraft(AccessError):
    """No such draft (or it was deleted)."""


class UnknownVersion(UnknownDraft):
    """A version the draft does not have (REST: 404 with the range it has)."""


class UnknownConflict(UnknownDraft):
    """No open conflict with that id (resolved already, or never opened)."""


class StoreError(DraftsyncError):
    """The store could not read or commit (disk full, database locked, I/O error)."""


class DiskFull(StoreError):
    """The disk holding the store is full: writes are refused until space is freed, while
    joins and reads go on (server/store/reserve.py)."""


class CapReached(DraftsyncError):
    """A connection or request over one of the server's caps (server/admission): refused, and
    the client should try again after `retry_after` seconds; nothing open is disturbed."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(CapReached):
    """A user's REST requests, or drafts opened on sockets, over their rate
    (server/admission/quotas.py, server/admission/connects.py)."""


class QuotaExceeded(DraftsyncError):
    """A user who owns `--max-drafts-per-user` drafts may create no more until some are
    deleted: 403, not 429, since waiting does not help (a 429 invites a retry loop)."""

    @classmethod
    def of_drafts(cls, max_owned: int) -> QuotaExceeded:
        return cls(
            f"draft quota reached: a user may own {max_owned} drafts (--max-drafts-per-user); "
            "delete some to create more"
        )


_ANSWERS: dict[type[DraftsyncError], tuple[CloseCode, int]] = {
    ProtocolError: (CloseCode.MALFORMED, 400),
    InvalidToken: (CloseCode.UNAUTHORIZED, 401),
    Forbidden: (CloseCode.FORBIDDEN, 404),
    NotPermitted: (CloseCode.FORBIDDEN, 403),
    CrossSiteRequest: (CloseCode.FORBIDDEN, 403),
    ValidationFailed: (CloseCode.MALFORMED, 422),
    BodyTooLarge: (CloseCode.MALFORMED, 413),
    UnsupportedMediaType: (CloseCode.MALFORMED, 415),
    Conflict: (CloseCode.MALFORMED, 409),
    UnknownDraft: (CloseCode.UNKNOWN_DRAFT, 404),
    StoreError: (CloseCode.TRY_AGAIN_LATER, 503),
    CapReached: (CloseCode.TRY_AGAIN_LATER, 503),
    RateLimited: (CloseCode.TRY_AGAIN_LATER, 429),
    QuotaExceeded: (CloseCode.FORBIDDEN, 403),
    RuleError: (CloseCode.MALFORMED, 422),
    SchemaError: (CloseCode.TRY_AGAIN_LATER, 500),  # only at start: a bad --schema file
}


def _answer(error: DraftsyncError) -> tuple[CloseCode, int]:
    for cls in type(error).__mro__:
        answer = _ANSWERS.get(cls)
        if answer is not None:
            return answer
    raise LookupError(f"no close code mapped for {type(error).__name__}")


def close_code_for(error: DraftsyncError) -> CloseCode:
    return _answer(error)[0]


def http_status_for(error: DraftsyncError) -> int:
    return _answer(error)[1]
