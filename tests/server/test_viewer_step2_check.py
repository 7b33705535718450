"""Whether a Hocuspocus viewer's sync step 2 holds anything new (server/sync/hocuspocus.py
`_nothing_new`) is decided without applying it to a copy of the doc, which cost a whole
encode and rebuild per frame. This checks the cheap way against the copy, the obvious one,
on seeded random drafts and viewers: synced, ahead with edits and deletes of their own,
behind, and missing deletes another editor made.
"""

from __future__ import annotations

import random

from pycrdt import Doc, Map, Text

from server.sync.hocuspocus import _nothing_new

CASES = 600


def applied_to_a_copy_changes_nothing(doc: Doc, update: bytes) -> bool:
    """The reference: apply `update` to a copy of `doc` and compare the encodings."""
    copy = Doc()
    copy.apply_update(doc.get_update())
    before = copy.get_update()
    try:
        copy.apply_update(update)
    except ValueError:
        return False
    return copy.get_update() == before


def edit(doc: Doc, rnd: random.Random, count: int) -> None:
    """Inserts, deletes of 1-3 characters and `fields` sets, at random places."""
    title, fields = doc.get("title", type=Text), doc.get("fields", type=Map)
    for _ in range(count):
        roll = rnd.random()
        if roll < 0.5 or not len(title):
            title.insert(rnd.randint(0, len(title)), rnd.choice(["a", "bc", "def"]))
        elif roll < 0.8:
            start = rnd.randint(0, len(title) - 1)
            del title[start : min(len(title), start + rnd.randint(1, 3))]
        else:
            fields[rnd.choice("xyz")] = rnd.randint(0, 9)


def a_draft_and_its_viewer(rnd: random.Random) -> tuple[Doc, Doc]:
    draft = Doc()
    edit(draft, rnd, rnd.randint(0, 40))
    viewer = Doc()
    viewer.apply_update(draft.get_update())
    roll = rnd.random()  # below 0.3: the viewer is synced
    if 0.3 <= roll < 0.6:
        edit(viewer, rnd, rnd.randint(1, 5))  # the viewer's own edits, refused
    elif 0.6 <= roll < 0.8:
        edit(draft, rnd, rnd.randint(1, 10))  # the draft moved on
    elif roll >= 0.8:
        other = Doc()
        other.apply_update(draft.get_update())
        edit(other, rnd, 5)
        draft.apply_update(other.get_update())  # deletes the viewer has not seen
        edit(viewer, rnd, rnd.randint(0, 2))
    return draft, viewer


def test_a_viewers_step_2_is_judged_as_applying_it_to_a_copy_would() -> None:
    rnd = random.Random(20261207)
    verdicts = {True: 0, False: 0}
    for _ in range(CASES):
        draft, viewer = a_draft_and_its_viewer(rnd)
        step2 = viewer.get_update(draft.get_state())
        expected = applied_to_a_copy_changes_nothing(draft, step2)
        assert _nothing_new(draft, step2) is expected
        verdicts[expected] += 1
    assert min(verdicts.values()) > CASES // 5  # both answers are exercised


def test_an_empty_step_2_holds_nothing_new() -> None:
    draft = Doc()
    draft.get("title", type=Text).insert(0, "kept")
    assert _nothing_new(draft, b"\x00\x00")


def test_undecodable_bytes_are_not_nothing_new() -> None:
    draft = Doc()
    draft.get("title", type=Text).insert(0, "kept")
    assert not _nothing_new(draft, b"\x05\xff\xff")
