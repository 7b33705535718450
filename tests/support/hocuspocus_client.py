"""Drive real Hocuspocus providers (`tests/interop/hocuspocus_client.mjs`) from pytest.

The same JSON-line protocol as `NodeClient` (tests/support/node_client.py); one process holds
any number of documents, each opened with `open(handle, name, token)` and named by its handle in
later commands and in events. With `shared=True` they all go over one
`HocuspocusProviderWebsocket`; otherwise each `HocuspocusProvider` is built from url, name and
token only and has its own socket.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

from tests.support.node_client import INTEROP_DIR, NodeClient, NodeClientError

__all__ = ["HocuspocusClient"]

SCRIPT = INTEROP_DIR / "hocuspocus_client.mjs"
_LINE_LIMIT = 64 * 1024 * 1024


class HocuspocusClient(NodeClient):
    @classmethod
    async def launch(
        cls, url: str, *, shared: bool = False, name: str = "hocuspocus", timeout: float = 10
    ) -> HocuspocusClient:
        if not (INTEROP_DIR / "node_modules" / "@hocuspocus" / "provider").is_dir():
            raise NodeClientError(f"{INTEROP_DIR}/node_modules is missing: run `npm ci` there")
        node = os.environ.get("NODE") or shutil.which("node")
        if node is None:
            raise NodeClientError("node not found (set NODE or put node on PATH)")
        args = [node, str(SCRIPT), f"--url={url}"]
        if shared:
            args.append("--shared")
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=INTEROP_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        client = cls(proc, f"{name}-{proc.pid}")
        try:
            await client.wait_event("ready", timeout=timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def open(self, doc: str, name: str, token: str, **options: Any) -> None:
        await self.call("open", doc=doc, name=name, token=token, **options)

    async def doc_state(self, doc: str, *texts: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("state", doc=doc, texts=list(texts))
        return result

    async def doc_text(self, doc: str, field: str) -> str:
        return str((await self.doc_state(doc, field))["texts"][field])

    async def wait_doc_event(
        self, doc: str, event: str, timeout: float = 10, **match: Any
    ) -> dict[str, Any]:
        def matches(message: dict[str, Any]) -> bool:
            if message.get("doc") != doc:
                return False
            return all(message.get(key) == value for key, value in match.items())

        return await self.wait_event(event, timeout=timeout, predicate=matches)
