"""Who may open which draft: draft id syntax, roles, and creation on first connect."""

from __future__ import annotations

import re
from enum import Enum

from server.errors import Forbidden, InvalidDraftId, QuotaExceeded, UnknownDraft
from server.store.api import Store

__all__ = ["Role", "check_draft_id", "check_draft_quota", "resolve_role"]

_DRAFT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class Role(Enum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER


def check_draft_id(draft_id: str) -> str:
    if not _DRAFT_ID.fullmatch(draft_id):
        raise InvalidDraftId("draft id must match [A-Za-z0-9_-]{1,128}")
    return draft_id


async def check_draft_quota(store: Store, user: str, max_owned: int | None) -> None:
    """Raise `QuotaExceeded` if `user` owns `max_owned` live drafts already (None: no quota).
    Two creations racing may both pass: the quota may be passed by the few under way."""
    if max_owned is not None and await store.drafts_owned(user) >= max_owned:
        raise QuotaExceeded(
            f"draft quota reached: a user may own {max_owned} drafts (--max-drafts-per-user); "
            "delete some to create more"
        )


async def resolve_role(
    store: Store, draft_id: str, user: str, *, now: float, max_owned: int | None = None
) -> Role:
    """The user's role on the draft; an unknown draft is created, owned by this user, unless
    they own `max_owned` drafts already (`QuotaExceeded`).

    A deleted draft (a tombstone, which has no access rows left) is `UnknownDraft` to everyone.
    """
    role = await store.role_of(draft_id, user)
    if role is None:
        record = await store.draft_record(draft_id)
        if record is not None and record.deleted_at is not None:
            raise UnknownDraft("draft was deleted")
        if record is None:
            await check_draft_quota(store, user, max_owned)
            await store.create_draft(draft_id, user, now=now)
        # Read again either way: a connection of the same user may have created it meanwhile.
        role = await store.role_of(draft_id, user)  # None if another user created it first
    if role is None:
        raise Forbidden("no access to this draft")
    return Role(role)
