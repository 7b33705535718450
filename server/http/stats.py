"""`GET /api/stats`: figures over the drafts the caller can reach.

    totalDrafts        drafts the caller has a role on
    completedDrafts    drafts whose every schema field is filled
    averageCompletion  mean completion, 0-100 (0 with no drafts)
    totalWordCount     words over the text fields of all of them
    syncedDrafts       drafts with no accepted update waiting for its commit
    conflictedDrafts   drafts with at least one open conflict
    conflictsByField   conflicts ever opened per field, over those drafts (journal events)

A loaded draft is counted from its room's doc (cached by version) once no write waits there for
its review turn, any other (or one whose room reloaded meanwhile) from its saved figures
(`server.sync.metadata`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from server.http.answers import Answer, respond
from server.http.common import endpoint

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["Stats", "get_stats"]


class Stats(Answer):
    """Figures over the drafts the caller can reach."""

    total_drafts: int
    completed_drafts: int = Field(description="Drafts whose every schema field is filled.")
    average_completion: float = Field(description="Mean completion, 0-100 (0 with no drafts).")
    total_word_count: int
    synced_drafts: int = Field(description="Drafts with no update waiting for its commit.")
    conflicted_drafts: int = Field(description="Drafts with at least one open conflict.")
    conflicts_by_field: dict[str, int] = Field(
        description="How often each field had a conflict (opened, ever), over these drafts."
    )


@endpoint
async def get_stats(request: Request, service: Service, user: str) -> Response:
    tracker = service.metadata
    total = completed = words = synced = conflicted = 0
    completion = 0.0
    for draft in await service.store.reachable_drafts(user):
        room = service.rooms.get(draft.id)
        if tracker.shows_live(room):
            meta = tracker.live_meta(room)
            is_synced = room.is_drained
        else:
            meta = await tracker.stored_meta(draft.id, draft.version, draft.meta)
            is_synced = room is None or room.is_drained
        total += 1
        completed += meta.complete
        completion += meta.completion
        words += meta.word_count
        synced += is_synced
        conflicted += meta.open_conflicts > 0
    # One trip for all of them, not one a draft; over the same drafts (live, with a role).
    by_field = await service.store.reachable_conflict_fields(user)
    return respond(
        Stats(
            total_drafts=total,
            completed_drafts=completed,
            average_completion=round(completion / total, 1) if total else 0.0,
            total_word_count=words,
            synced_drafts=synced,
            conflicted_drafts=conflicted,
            conflicts_by_field=dict(sorted(by_field.items())),
        )
    )
