"""Server-side errors and the one table that maps every error to a close code and HTTP status.

The tree continues the one in `crdt.errors`::

    DraftsyncError
      ProtocolError (crdt)        -> 4400 / 400
      AccessError
        InvalidToken              -> 4401 / 401
        Forbidden                 -> 4403 / 404 (REST never tells a stranger a draft exists)
        UnknownDraft              -> 4404 / 404
      StoreError                  -> 1013 / 503

The close code is resolved by walking the exception's MRO, so a new subclass inherits the
answer of its parent and nothing falls through to a generic code.
"""

from __future__ import annotations

from enum import IntEnum

from crdt.errors import DraftsyncError, ProtocolError

__all__ = [
    "AccessError",
    "CloseCode",
    "Forbidden",
    "InvalidDraftId",
    "InvalidToken",
    "StoreError",
    "UnknownDraft",
    "close_code_for",
    "http_status_for",
]


class CloseCode(IntEnum):
    """WebSocket close codes, as named in design.md; clients and tests rely on the numbers."""

    GOING_AWAY = 1001  # server shutting down, after flushing queued messages
    MESSAGE_TOO_BIG = 1009  # frame over --max-message-bytes (sent by uvicorn's protocol layer)
    TRY_AGAIN_LATER = 1013  # the store failed: the update was not kept, reconnect and resend
    MALFORMED = 4400  # framing, unknown message type, text frame, undecodable update, bad draft id
    UNAUTHORIZED = 4401  # token missing, invalid or expired
    FORBIDDEN = 4403  # the user has no access to this draft
    UNKNOWN_DRAFT = 4404  # the draft does not exist (or was deleted) and may not be created
    TOO_SLOW = 4408  # the send queue overflowed: the client fell too far behind


class InvalidDraftId(ProtocolError):
    """A draft id outside `[A-Za-z0-9_-]{1,128}`."""


class AccessError(DraftsyncError):
    """The caller may not do this."""


class InvalidToken(AccessError):
    """The token is missing, malformed, wrongly signed or expired."""


class Forbidden(AccessError):
    """The user has no role on this draft that allows the request."""


class UnknownDraft(AccessError):
    """No such draft (or it was deleted)."""


class StoreError(DraftsyncError):
    """The store could not read or commit (disk full, database locked, I/O error)."""


_ANSWERS: dict[type[DraftsyncError], tuple[CloseCode, int]] = {
    ProtocolError: (CloseCode.MALFORMED, 400),
    InvalidToken: (CloseCode.UNAUTHORIZED, 401),
    Forbidden: (CloseCode.FORBIDDEN, 404),
    UnknownDraft: (CloseCode.UNKNOWN_DRAFT, 404),
    StoreError: (CloseCode.TRY_AGAIN_LATER, 503),
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
