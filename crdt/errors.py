"""Exceptions raised by ``crdt``.

::

    DraftsyncError(Exception)
      ProtocolError
        MalformedMessage
        UnknownMessageType
        UndecodableUpdate
        ListTooLong           a list field past its bound (--max-body-elements)
        NonJsonValue          a `fields` value that is not JSON (a shared type, binary...)
        UpdateTooLarge          an update that would cost the doc more than a limit allows
      RuleError               a value the field's type or rule refuses (REST: 422)
      SchemaError             a schema file that breaks the schema rules (at start)

``server/errors.py`` extends the tree and maps each class to a WebSocket close code.
"""

__all__ = [
    "DraftsyncError",
    "ListTooLong",
    "MalformedMessage",
    "NonJsonValue",
    "ProtocolError",
    "RuleError",
    "SchemaError",
    "UndecodableUpdate",
    "UnknownMessageType",
    "UpdateTooLarge",
]


class DraftsyncError(Exception):
    """Base class of every error draftsync raises on purpose."""


class ProtocolError(DraftsyncError):
    """A client sent something we cannot accept."""


class MalformedMessage(ProtocolError):
    """Bad framing: truncated varUint, length past the end, leftover bytes, invalid UTF-8."""


class UnknownMessageType(ProtocolError):
    """A message type or sync subtype this server does not speak."""


class UndecodableUpdate(ProtocolError):
    """A Yjs update that pycrdt or our decoder cannot read."""


class ListTooLong(ProtocolError):
    """A list field that a write would take past its bound: the rules read every element in
    Python, so the bound is what keeps one write's review to a few milliseconds."""


class NonJsonValue(ProtocolError):
    """A value of the `fields` map that is not JSON: the server reads, journals and answers
    `fields` as JSON, so a shared type, binary or subdocument there is refused."""


class UpdateTooLarge(ProtocolError):
    """A Yjs update (or run of them) past a limit of `crdt.limits`, refused before the doc
    applies it: yrs's cost in memory or time would grow past what one message may take."""


class RuleError(DraftsyncError):
    """A change that breaks a semantic rule."""


class SchemaError(DraftsyncError):
    """A schema that names an unknown kind, type or rule, or breaks a rule's needs."""
