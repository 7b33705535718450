"""Stored roles the SQLite store read lately, answered from memory.

Every WebSocket connect asks the store for the caller's role on the draft (server/access.py).
On SQLite that was one query and a hop to the store's thread per connect, a fifth of the
event loop's time in a connect storm (`bench relay` N3000, docs/performance-notes.md). A
reconnect storm asks the same few (draft, user) pairs again and again.

Exact, not a cache with an age: a SQLite database is written through one `SqliteStore`, that
of the one process serving it (several instances need PostgreSQL, which keeps no memo; a second
process or store writing the same file would not be heard), and every statement that changes
the `access` table forgets what it changes before it runs, under the store's lock, while a read
fills the memo under that same lock. So a role is remembered only as it stands in the
database, and a change is never answered from memory once it has begun. A cold join's opening
read (`SqliteStore.read_opening`) reads on the event loop without the lock, but only while no
one holds it, and remembers what it read before anything else runs: the same guarantee. Only
roles that exist are kept: "no role" goes to the database each time (it creates drafts, or
refuses).
"""

from __future__ import annotations

__all__ = ["MAX_REMEMBERED_ROLES", "RoleMemo"]

# (draft, user) pairs remembered at most: ~150 bytes each, so a few MB at most; past it the
# oldest go first. A connect storm on one draft needs as many as it has users.
MAX_REMEMBERED_ROLES = 16_384


class RoleMemo:
    """(draft id, user) -> stored role, for the store that owns it (module docstring)."""

    __slots__ = ("_limit", "_roles")

    def __init__(self, limit: int = MAX_REMEMBERED_ROLES) -> None:
        self._roles: dict[tuple[str, str], str] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._roles)

    def get(self, draft_id: str, user: str) -> str | None:
        return self._roles.get((draft_id, user))

    def remember(self, draft_id: str, user: str, role: str) -> None:
        """Call under the store's lock, with what the database said just now."""
        roles = self._roles
        if len(roles) >= self._limit and (draft_id, user) not in roles:
            del roles[next(iter(roles))]  # the oldest remembered
        roles[(draft_id, user)] = role

    def forget(self, draft_id: str, user: str) -> None:
        """Before a statement that changes this user's role on the draft."""
        self._roles.pop((draft_id, user), None)

    def forget_draft(self, draft_id: str) -> None:
        """Before a statement that changes the draft's access for everyone (deletion)."""
        for key in [key for key in self._roles if key[0] == draft_id]:
            del self._roles[key]
