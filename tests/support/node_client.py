"""Drive real Yjs editors from pytest.

draftsync must work with the stock JavaScript clients, not only with a Python re-implementation of
the protocol, so the interop tests run real `yjs` + `y-websocket` `WebsocketProvider`s under Node
(`tests/interop/client.mjs`, one process per editor) and steer them from here over JSON lines:
commands on the process's stdin, replies and events (status, synced, close, permission-denied, ...)
on its stdout.

`tests/interop/node_modules` must be installed first: `npm ci` in `tests/interop`.
"""

# Every wait takes a `timeout` with a default, so that a test can never hang on a client:

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

INTEROP_DIR = Path(__file__).resolve().parent.parent / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "client.mjs"
_LINE_LIMIT = 64 * 1024 * 1024  # a stdout line can hold a whole document as base64
_STDERR_LINES = 200


class NodeClientError(Exception):
    """A command failed, a wait timed out, or the Node process is gone."""


class NodeClient:
    """One Node process holding one Y.Doc and one WebsocketProvider."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.name = name
        self._proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._exited = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        self._stdout_reader = asyncio.create_task(self._read_stdout())

    @classmethod
    async def start(
        cls,
        url: str,
        room: str,
        token: str,
        *,
        name: str | None = None,
        connect: bool = True,
        timeout: float = 10,
    ) -> NodeClient:
        """Spawn `node client.mjs` and wait until it reports `ready`."""
        if not (INTEROP_DIR / "node_modules").is_dir():
            raise NodeClientError(f"{INTEROP_DIR}/node_modules is missing: run `npm ci` there")
        node = os.environ.get("NODE") or shutil.which("node")
        if node is None:
            raise NodeClientError("node not found (set NODE or put node on PATH)")
        # --opt=value: a draft id may start with "-", which parseArgs would take for an option
        args = [node, str(CLIENT_SCRIPT), f"--url={url}", f"--room={room}", f"--token={token}"]
        if name is not None:
            args += ["--name", name]
        if not connect:
            args.append("--no-connect")
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=INTEROP_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        client = cls(proc, name or f"node-{proc.pid}")
        try:
            await client.wait_event("ready", timeout=timeout)
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def stderr(self) -> str:
        """The last lines the process wrote to stderr."""
        return "\n".join(self._stderr)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events received and not yet consumed by `wait_event`, oldest first."""
        return list(self._events)

    async def call(self, op: str, timeout: float = 10, **args: Any) -> Any:
        """Run one command and return its result; NodeClientError if it fails or times out."""
        if self._exited:
            raise self._error(f"cannot {op}: process has exited")
        command_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            line = json.dumps({"id": command_id, "op": op, **args}) + "\n"
            assert self._proc.stdin is not None
            self._proc.stdin.write(line.encode())
            await self._proc.stdin.drain()
            return await asyncio.wait_for(future, timeout)
        except ConnectionError as exc:  # the pipe broke: the process is gone
            raise self._error(f"cannot {op}: {exc}") from exc
        except TimeoutError:
            raise self._error(f"{op} got no reply within {timeout} s") from None
        finally:
            self._pending.pop(command_id, None)

    async def wait_event(
        self,
        event: str,
        timeout: float = 10,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Consume the oldest matching event, already buffered or yet to come, within `timeout`."""

        def take() -> dict[str, Any] | None:
            for index, message in enumerate(self._events):
                if message["event"] == event and (predicate is None or predicate(message)):
                    return self._events.pop(index)
            return None

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while (found := take()) is None:
                        if self._exited:
                            raise self._error(f"process exited before event {event!r}")
                        await self._changed.wait()
            except TimeoutError:
                raise self._error(f"no event {event!r} within {timeout} s") from None
        return found

    async def state(
        self, *, texts: Sequence[str] = (), lists: Sequence[str] = ()
    ) -> dict[str, Any]:
        """texts, fields, lists, conflicts, synced, wsconnected, clientID and stateVector."""
        result: dict[str, Any] = await self.call("state", texts=list(texts), lists=list(lists))
        return result

    async def text(self, field: str) -> str:
        """The content of root Y.Text `field`."""
        state = await self.state(texts=[field])
        return str(state["texts"][field])

    async def fields(self) -> dict[str, Any]:
        """The root Y.Map `fields` as JSON."""
        state = await self.state()
        return dict(state["fields"])

    async def close(self, timeout: float = 5) -> None:
        """Ask the process to leave and exit; kill it if it does not within `timeout`."""
        if self._proc.returncode is None and not self._exited:
            with contextlib.suppress(NodeClientError):
                await self.call("exit", timeout=timeout)
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        await asyncio.gather(self._stdout_reader, self._stderr_reader, return_exceptions=True)

    async def kill(self) -> None:
        """Drop the process at once (SIGKILL): its sockets end with no goodbye from it."""
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()
        await asyncio.gather(self._stdout_reader, self._stderr_reader, return_exceptions=True)

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _error(self, message: str) -> NodeClientError:
        stderr = self.stderr
        detail = f"\n--- stderr of {self.name} ---\n{stderr}" if stderr else ""
        return NodeClientError(f"{self.name}: {message}{detail}")

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        try:
            async for raw in self._proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    self._stderr.append(f"[stdout] {line}")
                    continue
                if "event" in message:
                    async with self._changed:
                        self._events.append(message)
                        self._changed.notify_all()
                    continue
                future = self._pending.get(message.get("id"))
                if future is None or future.done():
                    continue
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(self._error(str(message.get("error"))))
        finally:
            await self._proc.wait()
            # let the error below carry the last stderr lines
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stderr_reader), 1)
            self._exited = True
            error = self._error(f"process exited with code {self._proc.returncode}")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            async with self._changed:
                self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for raw in self._proc.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip("\n"))


async def edit_all_at_once(clients: Sequence[NodeClient], rounds: int = 5) -> None:
    """Every client, all at once and `rounds` times: insert "[i.round]" at the start of
    `title` (i: its index) and set its own `fields` key "k{i}" to the round."""
    edits = []
    for round_ in range(rounds):
        for i, client in enumerate(clients):
            edits.append(client.call("insert", field="title", index=0, text=f"[{i}.{round_}]"))
            edits.append(client.call("set", key=f"k{i}", value=round_))
    await asyncio.gather(*edits)
