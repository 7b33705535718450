"""JSON for answers that hold long texts, encoded in slices so a worker thread keeps the GIL
only briefly at a time.

A past version or a diff of a 5 MB draft is a 5 MB string in the answer. `json.dumps` escapes a
string in one C call that holds the GIL: 14 ms for 5 MB, during which the event loop (and every
other draft's relays) waited, even with the encode on a worker thread. Here a string longer than
`SLICE` characters is escaped a slice at a time (JSON escapes one character at a time, so the
slices join into exactly what one call makes), and the GIL can change hands between slices.
The bytes are those of Starlette's `JSONResponse`: UTF-8, no ASCII escaping, no spaces, NaN
refused.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from server.http.answers import Answer

__all__ = ["SLICE", "encode", "respond_long"]

SLICE = 64 * 1024  # characters escaped by one call: ~0.2 ms

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def respond_long(answer: Answer, status_code: int = 200) -> Response:
    """`respond(answer)`, its JSON encoded by `encode` (call it on a worker thread)."""
    return Response(encode(answer.model_dump()), status_code, media_type="application/json")


def encode(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON, its long strings escaped a slice at a time."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


def _encode(value: Any, parts: list[str]) -> None:
    if isinstance(value, str):
        if len(value) <= SLICE:
            parts.append(_dumps(value))
            return
        parts.append('"')
        for start in range(0, len(value), SLICE):
            parts.append(_dumps(value[start : start + SLICE])[1:-1])
        parts.append('"')
    elif isinstance(value, dict) and all(isinstance(key, str) for key in value):
        parts.append("{")
        for n, (key, item) in enumerate(value.items()):
            if n:
                parts.append(",")
            parts.append(_dumps(key))
            parts.append(":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for n, item in enumerate(value):
            if n:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:  # a number, a bool, null; a dict with keys json.dumps converts (short, in practice)
        parts.append(_dumps(value))
