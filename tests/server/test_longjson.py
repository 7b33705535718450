"""Long texts in an answer are escaped a slice at a time (server/http/longjson.py), so a worker
thread encoding a 5 MB version holds the GIL briefly at a time: the bytes must be exactly what
Starlette's `JSONResponse` sends, whatever the slices cut through."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from server.http.longjson import SLICE, encode

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_values = st.recursive(
    _scalars | _texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_texts, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_short_values_are_encoded_as_starlette_encodes_them(value: object) -> None:
    assert encode(value) == JSONResponse(value).body


def test_a_text_longer_than_a_slice_joins_into_one_json_string() -> None:
    # Every character JSON escapes, and some it does not, on both sides of each slice's edge.
    tricky = '"\\\n\t\x00\x1f\u2028é\U0001f600a'
    text = (tricky * (3 * SLICE // len(tricky) + 7))[: 3 * SLICE + 5]
    answer = {"state": {"texts": {"title": text}}, "items": [text, 1.5, None], "n": 2**70}
    assert encode(answer) == JSONResponse(answer).body
