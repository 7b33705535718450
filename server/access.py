"""Who may open which draft: draft id syntax, roles, and creation on first connect.

A token may grant roles on drafts itself (the app's `--jwt-roles-claim`, server/identity/): a
grant holds for that token only, and adds to the stored role, never takes from it (`strongest`):
it opens a draft the user has no access row for, and an owner stays owner whatever a token
says. A grant does not bring back a deleted draft, and a draft that does not exist yet is
created on first connect as for anyone (owned by that user).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from server.errors import Forbidden, InvalidDraftId, QuotaExceeded, UnknownDraft
from server.store.api import Store

__all__ = [
    "MAX_GRANTS",
    "Role",
    "check_draft_id",
    "check_draft_quota",
    "grants_from",
    "resolve_role",
    "strongest",
]

_DRAFT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Drafts one token may grant roles on.
MAX_GRANTS = 1000


class Role(Enum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER


_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}
# A stored role's string to its `Role`: what `Role(value)` answers, without the enum's call
# machinery (a few microseconds a connect).
_ROLE_OF = {role.value: role for role in Role}


def strongest(*roles: Role | None) -> Role | None:
    """The role that allows the most among `roles` (None: no role)."""
    if len(roles) == 2 and roles[1] is None:  # a connect without a grant: the stored role
        return roles[0]
    present = [role for role in roles if role is not None]
    return max(present, key=_RANK.__getitem__) if present else None


def grants_from(value: Any) -> dict[str, Role]:
    """A token's grants, `{"DRAFT_ID": "owner" | "editor" | "viewer"}`; ValueError if malformed
    (the whole token is refused then: a half-read grant would be a silent surprise)."""
    if not isinstance(value, Mapping):
        raise ValueError('must be an object {"DRAFT_ID": "owner" | "editor" | "viewer"}')
    if len(value) > MAX_GRANTS:
        raise ValueError(f"grants roles on more than {MAX_GRANTS} drafts")
    grants: dict[str, Role] = {}
    for draft_id, role in value.items():
        if not isinstance(draft_id, str) or not _DRAFT_ID.fullmatch(draft_id):
            raise ValueError("draft ids must match [A-Za-z0-9_-]{1,128}")
        if role not in ("owner", "editor", "viewer"):
            raise ValueError("roles must be owner, editor or viewer")
        grants[draft_id] = Role(role)
    return grants


def check_draft_id(draft_id: str) -> str:
    if not _DRAFT_ID.fullmatch(draft_id):
        raise InvalidDraftId("draft id must match [A-Za-z0-9_-]{1,128}")
    return draft_id


async def check_draft_quota(store: Store, user: str, max_owned: int | None) -> None:
    """Raise `QuotaExceeded` if `user` owns `max_owned` live drafts already (None: no quota).

    An early answer, before the work of building a draft; the store counts again inside the
    creating transaction (`create_draft(..., max_owned=)`), where creations racing in take
    turns, so the quota is never passed."""
    if max_owned is not None and await store.drafts_owned(user) >= max_owned:
        raise QuotaExceeded.of_drafts(max_owned)


async def resolve_role(
    store: Store,
    draft_id: str,
    user: str,
    *,
    now: float,
    granted: Role | None = None,
    max_owned: int | None = None,
) -> Role:
    """The user's role on the draft (the stronger of the stored one and what the token
    `granted`); an unknown draft is created, owned by this user, unless they own `max_owned`
    drafts already (`QuotaExceeded`).

    A deleted draft (a tombstone, which has no access rows left) is `UnknownDraft` to everyone.
    """
    role = await store.role_of(draft_id, user)
    if role is None:
        record = await store.draft_record(draft_id)
        if record is not None and record.deleted_at is not None:
            raise UnknownDraft("draft was deleted")
        if record is None:
            # The store counts the user's drafts in the creating transaction: nothing to
            # build before it, so no early count (`check_draft_quota` is REST's).
            await store.create_draft(draft_id, user, now=now, max_owned=max_owned)
        # Read again either way: a connection of the same user may have created it meanwhile.
        role = await store.role_of(draft_id, user)  # None if another user created it first
    stored = None if role is None else (_ROLE_OF.get(role) or Role(role))
    effective = strongest(stored, granted)
    if effective is None:
        raise Forbidden("no access to this draft")
    return effective
