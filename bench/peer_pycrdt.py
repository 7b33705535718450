"""The peer in `bench relay` and `bench durability`: pycrdt-websocket as its README runs it.

    python -m bench.peer_pycrdt --port PORT --db FILE

`WebsocketServer` + `ASGIServer` under uvicorn (uvloop, as draftsync), each room persisted in a
`SQLiteYStore` at FILE (the room name is the URL path) and loaded from it when the room opens,
as jupyter-collaboration does. No auth: clients connect to ws://HOST:PORT/ROOM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

import uvicorn
from pycrdt.store import SQLiteYStore, YDocNotFound
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom

from bench.runtime import run


def _server(db: str) -> WebsocketServer:
    class Store(SQLiteYStore):
        db_path = db

    class Server(WebsocketServer):
        loading: dict[str, asyncio.Event]

        async def get_room(self, name: str) -> YRoom:
            # Two clients of a new room connect at once: the second waits for the first's load
            # (starting a room twice raises "YRoom already running").
            loading = self.__dict__.setdefault("loading", {})
            if name not in self.rooms:
                store = Store(path=name)
                room = YRoom(ready=False, ystore=store, log=self.log)
                self.rooms[name] = room
                loading[name] = loaded = asyncio.Event()
                await self.start_room(room)  # starts the store too
                await store.started.wait()
                with contextlib.suppress(YDocNotFound):
                    await store.apply_updates(room.ydoc)
                room.ready = True
                loaded.set()
            await loading[name].wait()
            return self.rooms[name]

    return Server(auto_clean_rooms=False, log=logging.getLogger("pycrdt-websocket"))


async def _serve(port: int, db: str) -> None:
    websocket_server = _server(db)
    config = uvicorn.Config(
        ASGIServer(websocket_server),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        ws_max_size=16 * 1024 * 1024,
    )
    async with websocket_server:
        await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run(_serve(args.port, args.db))


if __name__ == "__main__":
    main()
