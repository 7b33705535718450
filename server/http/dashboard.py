"""`GET /api/dashboard?limit=&cursor=`: the drafts the caller can reach, each as a summary.

    {"items": [{"id", "role", "owner", "version", "createdAt", "lastModified", "lastUser",
                "title", "status", "wordCount", "completion", "filledFields", "totalFields",
                "openConflicts", "sync", "contributors"}],
     "next": cursor or null}

What the drafts page shows a line of (server/sync/summaries.py); paged by id like
`GET /api/drafts`, and the change feed (`GET /api/drafts/feed`) sends the same items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from server.http.answers import Answer, respond
from server.http.common import decode_cursor, encode_cursor, endpoint, iso, read_query
from server.http.drafts import Page, RoleName
from server.sync.summaries import Summary

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["DashboardPage", "SummaryItem", "SummaryList", "get_dashboard", "summary_item"]


class DashboardPage(Page):
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | SkipJsonSchema[None] = Field(
        default=None, description="The `next` of the previous page."
    )


class SummaryItem(Answer):
    """One draft as the dashboard shows it: no content but its title and status."""

    id: str
    role: RoleName = Field(description="The caller's role on the draft.")
    owner: str
    version: int = Field(description="The number of updates stored for it.")
    created_at: str = Field(description="ISO 8601, UTC.")
    last_modified: str = Field(description="ISO 8601, UTC: its last stored update.")
    last_user: str | None = Field(description="Who stored its last update (null: none yet).")
    title: str = Field(description="Its title, at most 200 characters.")
    status: str | None = Field(description="Its `status` field's value, if a text.")
    word_count: int
    completion: float = Field(description="Percent of the schema's fields filled, 0-100.")
    filled_fields: int
    total_fields: int
    open_conflicts: int
    sync: Literal["synced", "pending"]
    contributors: list[str] = Field(description="Users who stored an update.")


class SummaryList(Answer):
    items: list[SummaryItem]
    next: str | None = Field(description="Pass as `cursor=` for the next page; null: the last.")


def summary_item(summary: Summary, role: str) -> SummaryItem:
    return SummaryItem(
        id=summary.id,
        role=role,  # type: ignore[arg-type]
        owner=summary.owner,
        version=summary.version,
        created_at=iso(summary.created_at) or "",
        last_modified=iso(summary.last_modified) or "",
        last_user=summary.last_user,
        title=summary.title,
        status=summary.status,
        word_count=summary.word_count,
        completion=summary.completion,
        filled_fields=summary.filled_fields,
        total_fields=summary.total_fields,
        open_conflicts=summary.open_conflicts,
        sync="synced" if summary.synced else "pending",
        contributors=summary.contributors,
    )


@endpoint
async def get_dashboard(request: Request, service: Service, user: str) -> Response:
    page = read_query(request, DashboardPage)
    after = decode_cursor(page.cursor) if page.cursor else ""
    rows = await service.store.reachable_drafts(user, after=after, limit=page.limit + 1)
    items = [
        summary_item(await service.summaries.of_row(row), row.role) for row in rows[: page.limit]
    ]
    more = len(rows) > page.limit
    return respond(SummaryList(items=items, next=encode_cursor(items[-1].id) if more else None))
