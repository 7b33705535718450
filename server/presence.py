"""A room's awareness table (cursors, names): who is here, as y-protocols' `Awareness` keeps it.

The server relays awareness frames as they come and keeps the latest state per Yjs client id,
so that a client joining later, or asking with query-awareness, gets everyone's state, and so
that a connection's states can be announced as removed (`null`) when it goes away.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.errors import MalformedMessage

__all__ = ["Presence"]


class Presence:
    def __init__(self) -> None:
        self._states: dict[int, AwarenessEntry] = {}

    def __len__(self) -> int:
        return len(self._states)

    def apply(self, payload: bytes) -> list[AwarenessEntry]:
        """Take the entries of an awareness update that are newer than what we hold.

        Follows y-protocols `applyAwarenessUpdate`: a higher clock wins; at an equal clock only
        a removal wins. States must be JSON, since every other client will parse them.
        """
        entries = decode_awareness_update(payload)
        accepted = []
        for entry in entries:
            if not entry.removed:
                try:
                    json.loads(entry.state_json)
                except ValueError as exc:
                    raise MalformedMessage(
                        f"awareness state of client {entry.client_id} is not JSON"
                    ) from exc
            held = self._states.get(entry.client_id)
            if (
                held is None
                or held.clock < entry.clock
                or (held.clock == entry.clock and entry.removed and not held.removed)
            ):
                accepted.append(entry)
                if entry.removed:
                    self._states.pop(entry.client_id, None)
                else:
                    self._states[entry.client_id] = entry
        return accepted

    def full_update(self) -> bytes | None:
        """Every state we hold as one awareness update, or None when nobody is here."""
        if not self._states:
            return None
        return encode_awareness_update(self._states.values())

    def remove(self, client_ids: Iterable[int]) -> bytes | None:
        """Drop these clients; return the update that tells the others they left."""
        gone = []
        for client_id in client_ids:
            held = self._states.pop(client_id, None)
            if held is not None:
                gone.append(AwarenessEntry(client_id, held.clock + 1, "null"))
        return encode_awareness_update(gone) if gone else None
