"""A real HTTP receiver for webhook tests: `http.server` on a loopback port, in a thread.

It records every request (headers and the raw body, as a receiver must verify them) and can
answer 500 to the first N requests, hang without answering (a slow receiver), or trickle its
answer a byte at a time so that no single read waits long (a slow receiver that keeps each
read under the client's timeout). `stop()` and
`start()` again keep the port, so a test can take the receiver down and bring it back.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from tests.support.server_process import free_port

__all__ = ["SECRET", "Received", "WebhookReceiver"]

# whsec_ + base64 of 24 bytes, as the Standard Webhooks libraries generate them.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str = SECRET) -> dict[str, Any]:
        """The payload, once `standardwebhooks` verified its signature (raises if not)."""
        payload: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return payload


class WebhookReceiver:
    def __init__(self, *, fail_first: int = 0, hang: bool = False, trickle: bool = False) -> None:
        self.port = free_port()
        self.fail_first = fail_first
        self.hang = hang
        self.trickle = trickle
        self.open_now = 0  # requests being answered at this moment
        self.most_open = 0  # the most ever answered at once
        self.trickled: list[Received] = []  # requests answered a byte at a time
        self.received: list[Received] = []  # answered 2xx
        self.refused: list[Received] = []  # answered 500
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                got = Received(dict(self.headers.items()), self.rfile.read(length))
                if receiver.hang:
                    time.sleep(30)  # the server's timeout gives up first
                    return
                if receiver.trickle:
                    with receiver._lock:
                        receiver.trickled.append(got)
                        receiver.open_now += 1
                        receiver.most_open = max(receiver.most_open, receiver.open_now)
                    try:
                        self._trickle()
                    finally:
                        with receiver._lock:
                            receiver.open_now -= 1
                    return
                with receiver._lock:
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                        receiver.refused.append(got)
                    else:
                        receiver.received.append(got)
                self.send_response(500 if failing else 204)
                self.end_headers()

            def _trickle(self) -> None:
                """A status line, then a header a byte every 0.1 s for up to 60 s: each read
                of the client gets a byte quickly, the answer as a whole never comes."""
                try:
                    self.wfile.write(b"HTTP/1.1 204 No Content\r\nX-Slow: ")
                    for _ in range(600):
                        if receiver._server is None:
                            return
                        self.wfile.write(b"z")
                        time.sleep(0.1)
                except OSError:  # the client gave up: what a slow receiver should see
                    return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Verified payloads received so far (of type `kind`), in arrival order."""
        with self._lock:
            got = list(self.received)
        payloads = [r.verified() for r in got]
        return [p for p in payloads if kind is None or p["type"] == kind]
