"""server/errors.py: every error class resolves to a close code and an HTTP status."""

from __future__ import annotations

import server.errors
from crdt.errors import DraftsyncError
from server.errors import (
    BadRequest,
    BodyTooLarge,
    CloseCode,
    Conflict,
    Forbidden,
    NotPermitted,
    UnknownDraft,
    ValidationFailed,
    close_code_for,
    http_status_for,
)


def _subclasses(cls: type[DraftsyncError]) -> set[type[DraftsyncError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_concrete_error_class_is_mapped() -> None:
    assert server.errors  # the server's classes are loaded
    leaves = {cls for cls in _subclasses(DraftsyncError) if not cls.__subclasses__()}
    assert {BadRequest.__subclasses__()[0], NotPermitted} <= leaves
    for cls in leaves:
        error = cls("x")
        assert isinstance(close_code_for(error), CloseCode), cls
        assert 400 <= http_status_for(error) < 600, cls


def test_rest_answers() -> None:
    assert http_status_for(BadRequest("x")) == 400
    assert http_status_for(ValidationFailed("x", [{"loc": "a", "msg": "b"}])) == 422
    assert http_status_for(BodyTooLarge("x")) == 413
    assert http_status_for(Conflict("x")) == 409
    assert http_status_for(NotPermitted("x")) == 403
    # A stranger and a missing draft get the same answer on REST, different ones on WebSocket.
    assert http_status_for(Forbidden("x")) == http_status_for(UnknownDraft("x")) == 404
    assert close_code_for(Forbidden("x")) == CloseCode.FORBIDDEN
    assert close_code_for(UnknownDraft("x")) == CloseCode.UNKNOWN_DRAFT
