"""The dashboard's "last by" as the summarizer keeps it from commits (server/sync/summaries.py):
a writer committing again reuses the heading it made; a different writer replaces it."""

from __future__ import annotations

from typing import Any, cast

from server.sync.summaries import Summarizer


def _summarizer() -> Summarizer:
    # `committed` touches none of the store, the rooms or the tracker.
    none = cast(Any, None)
    return Summarizer(none, none, none)


def _last_user(summarizer: Summarizer, draft_id: str) -> str | None:
    return summarizer._headings[draft_id].last_user


def test_the_last_writer_is_kept_through_repeats_and_changes() -> None:
    summarizer = _summarizer()
    summarizer.committed("d1", 1, "ana")
    first = summarizer._headings["d1"]
    summarizer.committed("d1", 2, "ana")
    assert summarizer._headings["d1"] is first  # the same writer again: no new heading
    summarizer.committed("d1", 3, "bo")
    assert _last_user(summarizer, "d1") == "bo"
    summarizer.committed("d1", 4, "ana")
    assert _last_user(summarizer, "d1") == "ana"


def test_a_repeated_writer_still_counts_as_recent() -> None:
    summarizer = _summarizer()
    summarizer.committed("d1", 1, "ana")
    summarizer.committed("d2", 1, "bo")
    summarizer.committed("d1", 2, "ana")  # reused, and moved to the most recent end
    assert list(summarizer._headings) == ["d2", "d1"]
