"""JSON text for journal rows that cannot fail, whatever a client managed to store.

A journal row is written inside the commit of the update it describes: a `json.dumps` that
raises there (a pycrdt `Map` as a `fields` value raised TypeError) broke the commit and
stalled the server. Values are JSON here by the time they are journaled (the review refuses
shared types under `fields`), but a row must not depend on that: anything else becomes a
small marker such as `{"$type": "Map"}`, and NaN/Infinity (which PostgreSQL's jsonb refuses,
and which the REST answers show as null anyway) become null.
"""

from __future__ import annotations

import json
import math
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

__all__ = ["MAX_DEPTH", "dumps", "json_safe"]

MAX_DEPTH = 300
"""Deeper than this, a value is replaced by a marker (update values nest at most 256)."""


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with every part that is not JSON replaced by a marker `{"$type": name}`."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return {"$type": "TooDeep"}
    if isinstance(value, dict):
        return {str(key): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$type": "Binary", "bytes": len(value)}
    return {"$type": type(value).__name__}


# One encoder, not one per call: `json.dumps` with options builds an encoder each time, which
# cost more than encoding a journal event's data (S5: one FIELD_UPDATED row per `fields` write).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# ... and `JSONEncoder.encode` itself still builds its C encoder per call (~1.7 us of 2.5), so
# flat dicts go to one built once, with `_ENCODER`'s settings (ASCII, compact, no NaN). It
# skips the check for circular references, which a flat dict of plain values cannot hold.
_FLAT = (
    c_make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)
_PLAIN = frozenset({str, int, bool, type(None)})  # JSON as they are (not float: NaN)
_KEYS = frozenset({str})


def dumps(value: Any) -> str:
    """Compact JSON text of `value` made safe; never raises."""
    try:
        if (
            type(value) is dict
            and _KEYS.issuperset(map(type, value))
            and _PLAIN.issuperset(map(type, value.values()))
        ):
            # flat and plain: `json_safe` would copy it as is
            return "".join(_FLAT(value, 0)) if _FLAT is not None else _ENCODER.encode(value)
        return _ENCODER.encode(json_safe(value))
    except (TypeError, ValueError, RecursionError):  # e.g. an int too long for str()
        return json.dumps({"$type": "Unserializable"})
