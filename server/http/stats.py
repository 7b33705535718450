"""`GET /api/stats`: figures over the drafts the caller can reach.

    totalDrafts        drafts the caller has a role on
    completedDrafts    drafts whose every schema field is filled
    averageCompletion  mean completion, 0-100 (0 with no drafts)
    totalWordCount     words over the text fields of all of them
    syncedDrafts       drafts with no accepted update waiting for its commit
    conflictedDrafts   drafts with at least one open conflict

A loaded draft is counted from its room's doc (cached by version), any other from its saved
figures (`server.sync.metadata`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.http.common import endpoint
from server.sync.room import RoomState

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["get_stats"]


@endpoint
async def get_stats(request: Request, service: Service, user: str) -> Response:
    tracker = service.metadata
    total = completed = words = synced = conflicted = 0
    completion = 0.0
    for draft in await service.store.reachable_drafts(user):
        room = service.rooms.get(draft.id)
        if room is not None and room.state is RoomState.OPEN:
            meta = tracker.live_meta(room)
            is_synced = room.is_drained
        else:
            meta = await tracker.stored_meta(draft.id, draft.version, draft.meta)
            is_synced = True
        total += 1
        completed += meta.complete
        completion += meta.completion
        words += meta.word_count
        synced += is_synced
        conflicted += meta.open_conflicts > 0
    return JSONResponse(
        {
            "totalDrafts": total,
            "completedDrafts": completed,
            "averageCompletion": round(completion / total, 1) if total else 0.0,
            "totalWordCount": words,
            "syncedDrafts": synced,
            "conflictedDrafts": conflicted,
        }
    )
