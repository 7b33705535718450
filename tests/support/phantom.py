"""A gap in a doc's clocks that no update reports (fuzz seed 3, crdt/gaps.py).

`PHANTOM` is client 119's clock 4 (clocks 0-3 never sent): an "o" whose origin is client 11's
clock 3. yrs holds it until that origin comes, then integrates it after a Skip, and the
transaction's update does not report it: the room discards its doc.
"""

from __future__ import annotations

from pycrdt import Doc, Text

__all__ = ["PHANTOM", "client_11_typing"]

PHANTOM = bytes.fromhex("01017704840b03016f00")


def client_11_typing() -> tuple[bytes, bytes]:
    """Client 11 types "Hel" into `title` (clocks 0-2), then "l" (clock 3, PHANTOM's origin)."""
    doc: Doc = Doc(client_id=11)
    title = doc.get("title", type=Text)
    before = doc.get_state()
    title.insert(0, "Hel")
    hel = doc.get_update(before)
    before = doc.get_state()
    title.insert(3, "l")
    return hel, doc.get_update(before)
