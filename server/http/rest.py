"""The REST API under `/api` (design.md, "REST"): one module a resource, shared parts in
`common`. `routes` is what `server.app` mounts."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from server.http import conflicts, drafts, history, sharing, stats, tokens, webhooks

__all__ = ["routes"]

routes: list[BaseRoute] = [
    Route("/api/drafts", drafts.create_draft, methods=["POST"]),
    Route("/api/drafts", drafts.list_drafts, methods=["GET"]),
    Route("/api/drafts/{draft_id}", drafts.get_draft, methods=["GET"]),
    Route("/api/drafts/{draft_id}", drafts.delete_draft, methods=["DELETE"]),
    Route("/api/drafts/{draft_id}/access", sharing.put_access, methods=["PUT"]),
    Route("/api/drafts/{draft_id}/events", history.list_events, methods=["GET"]),
    Route("/api/drafts/{draft_id}/versions/{version}", history.get_version, methods=["GET"]),
    Route("/api/drafts/{draft_id}/restore", history.restore_version, methods=["POST"]),
    Route("/api/drafts/{draft_id}/webhooks", webhooks.list_deliveries, methods=["GET"]),
    Route(
        "/api/drafts/{draft_id}/conflicts/{conflict_id}/resolve",
        conflicts.resolve_conflict,
        methods=["POST"],
    ),
    Route("/api/stats", stats.get_stats, methods=["GET"]),
    Route("/api/token/renew", tokens.renew_token, methods=["POST"]),
]
