"""An HTTP proxy in front of the real Elasticsearch that a test breaks on purpose.

The shared Elasticsearch is never stopped (other tests use it); instead an ingestion is pointed
at this proxy, which can slow down or hold bulk requests, answer them with 429/5xx, reject
chosen items, answer chosen other requests with an error, or cut every connection and stop
listening, as a dead cluster would.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultyElasticsearch:
    def __init__(self, upstream_url: str) -> None:
        upstream = urlsplit(upstream_url)
        self.upstream = (upstream.hostname or "127.0.0.1", upstream.port or 9200)
        self.bulk_requests = 0
        self.delay_bulk_seconds = 0.0
        self.cut_at_bulk_request: int | None = None  # the n-th bulk request finds the cluster gone
        self.bulk_statuses: list[int] = []  # answers for the next bulk requests, instead of forwarding them
        # Items to answer 429 although Elasticsearch indexed them (a retry overwrites them by id):
        self.reject_items = 0  # the next this many
        self.reject_item: Callable[[str], bool] = lambda _id: False  # these ids, every time
        # (method, path) -> a status to answer instead of forwarding the request, or None to forward it
        self.fail_request: Callable[[str, str], int | None] = lambda _method, _path: None
        self.open = threading.Event()  # cleared: bulk requests wait (holding the ingestion mid-load)
        self.open.set()
        self.bulk_waiting = threading.Event()
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def cut(self) -> None:
        """Stops listening and drops every open connection: to the client, the cluster is gone."""
        if self._cut.is_set():
            return
        self._cut.set()
        self.open.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    close = cut

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._sockets.add(self.connection)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._cut.is_set():
                    self.close_connection = True
                    return
                injected = proxy.fail_request(self.command, self.path.split("?")[0])
                if injected is not None:
                    error = {"error": {"type": "injected", "reason": f"injected {injected}"}, "status": injected}
                    self._answer(injected, json.dumps(error).encode())
                    return
                is_bulk = self.path.split("?")[0].endswith("/_bulk")
                if is_bulk:
                    with proxy._lock:
                        proxy.bulk_requests += 1
                        number = proxy.bulk_requests
                        status = proxy.bulk_statuses.pop(0) if proxy.bulk_statuses else None
                    if proxy.cut_at_bulk_request is not None and number >= proxy.cut_at_bulk_request:
                        proxy.cut()
                        return
                    proxy.bulk_waiting.set()
                    proxy.open.wait()
                    if proxy._cut.is_set():
                        self.close_connection = True
                        return
                    if proxy.delay_bulk_seconds:
                        threading.Event().wait(proxy.delay_bulk_seconds)
                    if status is not None:
                        self._answer(status, json.dumps({"error": {"type": "injected", "reason": f"injected {status}"}, "status": status}).encode())
                        return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body if body else None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                if is_bulk and response.status == 200:
                    payload = proxy._reject(payload)
                self._answer(response.status, payload, response.getheader("Content-Type", "application/json"))

            def _answer(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler

    def _reject(self, payload: bytes) -> bytes:
        body = json.loads(payload)
        changed = False
        for item in body.get("items", []):
            operation, info = next(iter(item.items()))
            if operation == "delete":
                continue
            with self._lock:
                rejected = self.reject_items > 0 or self.reject_item(str(info.get("_id")))
                if self.reject_items > 0:
                    self.reject_items -= 1
            if rejected:
                info["status"] = 429
                info["error"] = {"type": "es_rejected_execution_exception", "reason": "injected rejection"}
                changed = True
        if not changed:
            return payload
        body["errors"] = True
        return json.dumps(body).encode()
