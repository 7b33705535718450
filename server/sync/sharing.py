"""What a role change or a deletion does to a draft's live connections: it applies at once.

    change                     live connections of that user (all users for a deletion)
    role removed               closed 4403 "access revoked" (y-websocket stops reconnecting)
    editor/owner -> viewer     `can_write` off; told at once with auth "read-only"; stays open
    viewer -> editor/owner     `can_write` on
    draft deleted              closed 4404 "draft deleted"

The store is changed first, so a reconnect gets the new answer. A connection whose token
grants a role on the draft keeps at least that role (server/access.py); a Hocuspocus document
whose token is refreshed holds the fresh token's grant from then on (`apply_to`).
"""

from __future__ import annotations

from server import metrics
from server.access import Role, strongest
from server.errors import CloseCode
from server.sync.connection import Connection
from server.sync.registry import RoomRegistry

__all__ = ["apply_role", "apply_to", "close_deleted"]


def apply_role(rooms: RoomRegistry, draft_id: str, user: str, role: Role | None) -> int:
    """Apply `user`'s new role (None: removed) to their live connections; return how many."""
    room = rooms.get(draft_id)
    if room is None:
        return 0
    changed = 0
    for conn in list(room.connections):
        if conn.user != user or not conn.is_open:
            continue
        changed += apply_to(conn, role)
    return changed


def apply_to(conn: Connection, role: Role | None) -> bool:
    """Apply the stronger of the stored `role` and the connection's token grant
    (`conn.granted`) to the open `conn`; return whether anything changed. Also what a
    Hocuspocus document's refreshed token does (server/sync/hocuspocus.py `_refresh`): its
    grant is the fresh token's from then on."""
    effective = strongest(role, conn.granted)
    if effective is None:
        conn.close(CloseCode.FORBIDDEN, "access revoked")
        metrics.LIVE_ACCESS_CHANGES.labels(change="revoked").inc()
    elif conn.can_write != effective.can_write:
        conn.set_can_write(effective.can_write)
        change = "writable" if effective.can_write else "read_only"
        metrics.LIVE_ACCESS_CHANGES.labels(change=change).inc()
    else:
        return False
    return True


def close_deleted(rooms: RoomRegistry, draft_id: str) -> int:
    """Close the deleted draft's live connections 4404; joiners not in its room yet (their
    room loading, their role being read) are refused by `RoomRegistry.join`."""
    rooms.deleted(draft_id)
    room = rooms.get(draft_id)
    if room is None:
        return 0
    closing = [conn for conn in room.connections if conn.is_open]
    for conn in closing:
        conn.close(CloseCode.UNKNOWN_DRAFT, "draft deleted")
        metrics.LIVE_ACCESS_CHANGES.labels(change="deleted").inc()
    return len(closing)
