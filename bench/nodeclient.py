"""The bench's Node client process (`bench/node/client.mjs`) and the events it prints.

Why a module of its own: every scenario that drives real Yjs clients (relay, capacity,
connections, join storms, the crash test) starts the same process and reads the same JSON event
lines from its stdout; they share this one copy instead of importing each other.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench.servers import NODE_DIR

__all__ = ["QUICK_WARM_UP_EDITS", "ClientFailed", "next_event", "node_client"]

_LINE_LIMIT = 1 << 28  # the result line carries every send and receipt time
# The client's warm-up (client.mjs: 3,000 edits on each of 4 editors before the clock starts) is
# there for the figures of a full run; a --quick run (the smoke tests, whose figures nobody
# reads) passes this many as `warmUpEdits`: the same warm-up code, seconds shorter.
QUICK_WARM_UP_EDITS = 100


class ClientFailed(RuntimeError):
    """The client reported an error, or exited before the event a scenario waits for."""


async def node_client(config: dict[str, object], log: Path) -> asyncio.subprocess.Process:
    """Start one client process with `config` (JSON); its stderr goes to `log`."""
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "client.mjs"),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            limit=_LINE_LIMIT,
        )


async def next_event(process: asyncio.subprocess.Process, until: str) -> dict[str, Any]:
    """The next event named `until` on the client's stdout; its errors raise ClientFailed."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        if not line.startswith(b"{"):
            continue
        event = json.loads(line)
        if event.get("event") == "error":
            raise ClientFailed(str(event.get("error")))
        if event.get("event") == until:
            return event  # type: ignore[no-any-return]
    raise ClientFailed(f"the client exited ({await process.wait()}) before {until!r}")
