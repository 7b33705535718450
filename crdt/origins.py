"""Who made a change: the origin attached to every pycrdt transaction the server runs.

Rules and the journal read it to tell a client's write from the server's own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERVER_USER", "ClientOrigin", "Origin", "ServerOrigin"]

SERVER_USER = "draftsync"
"""The user recorded for changes the server writes itself (rules, REST writes, restores)."""


@dataclass(frozen=True, slots=True)
class ClientOrigin:
    """An update received from a connected editor."""

    user: str
    session: str


@dataclass(frozen=True, slots=True)
class ServerOrigin:
    """A change the server wrote itself (rule resolution, restore); `reason` says which."""

    reason: str


Origin = ClientOrigin | ServerOrigin
