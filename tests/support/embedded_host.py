"""A host application that embeds draftsync, as an app team would: its own Starlette app with
its own sign-in (a cookie session), draftsync mounted under `/collab` with an `authenticate`
callable that reads that session, and draftsync's lifespan run inside the host's.

`python -m tests.support.embedded_host PORT DATA_DIR [ORIGIN,ORIGIN...]` serves it with uvicorn on
loopback (the origins, when given, are draftsync's `allowed_origins`); `EmbeddedHost` runs that as
a subprocess for a test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from server.app import create_app
from server.config import Settings
from tests.support.server_process import (
    REPO,
    SECRET,
    free_port,
    stop_process,
    wait_until_healthy,
)

__all__ = ["COOKIE", "PREFIX", "EmbeddedHost", "host_app"]

PREFIX = "/collab"
COOKIE = "host_session"


def host_app(data_dir: Path, allowed_origins: tuple[str, ...] = ()) -> Starlette:
    sessions: dict[str, str] = {}  # the host's own sign-in: session id -> user

    async def authenticate(connection: HTTPConnection) -> str | None:
        """What the host passes to draftsync: its session's user, for HTTP and WebSocket."""
        return sessions.get(connection.cookies.get(COOKIE, ""))

    async def sign_in(request: Request) -> Response:
        session = secrets.token_urlsafe(16)
        sessions[session] = request.path_params["user"]
        response = JSONResponse({"user": request.path_params["user"]})
        response.set_cookie(COOKIE, session, httponly=True, samesite="lax")
        return response

    async def home(request: Request) -> Response:
        return PlainTextResponse("the host's own page\n")

    settings = Settings(data_dir=data_dir, secret=SECRET, allowed_origins=allowed_origins)
    collab = create_app(settings, authenticate=authenticate)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with collab.router.lifespan_context(collab):  # opens the store, runs the service
            yield

    return Starlette(
        routes=[
            Route("/", home),
            Route("/sign-in/{user}", sign_in, methods=["POST"]),
            Mount(PREFIX, app=collab),
        ],
        lifespan=lifespan,
    )


class EmbeddedHost:
    """The host app in a subprocess (real uvicorn on a free loopback port)."""

    def __init__(self, data_dir: Path, allowed_origins: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.allowed_origins = allowed_origins
        self.port = free_port()
        self.log_path = data_dir / "host.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        """The host's own origin, as a browser on its pages sends it."""
        return self.http_url

    @property
    def ws_url(self) -> str:
        """draftsync's y-websocket endpoint under the prefix."""
        return f"ws://127.0.0.1:{self.port}{PREFIX}/ws"

    def start(self, timeout: float = 20) -> EmbeddedHost:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tests.support.embedded_host", str(self.port)]
        origins = [",".join(self.allowed_origins)] if self.allowed_origins else []
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, str(self.data_dir), *origins],
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=log,
            )
        healthz = f"{self.http_url}{PREFIX}/healthz"
        wait_until_healthy(self.process, healthz, timeout, self.log, "host")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)


if __name__ == "__main__":
    port, data = int(sys.argv[1]), Path(sys.argv[2])
    allowed = tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ()
    uvicorn.run(host_app(data, allowed), host="127.0.0.1", port=port, log_level="info")
