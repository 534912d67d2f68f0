"""A TCP proxy the tests control, in front of a real server: forward, refuse, or swallow.

It lets a test take Elasticsearch or Redis "down" for the API under test, and bring it back, while
the shared servers keep running for everyone else.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.blackhole = False
        self.port = self._listen(0)

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(512)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener.getsockname()[1]

    @property
    def url_authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._track(client, listener):
                return
            if self.blackhole:
                continue  # accepted and never answered: the caller's timeout must save it
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                self._close(client)
                continue
            upstream.settimeout(None)
            if not self._track(upstream, listener):
                self._close(client)
                return
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _track(self, sock: socket.socket, listener: socket.socket) -> bool:
        """Keeps `sock` to be cut on the next change, unless its listener was refused meanwhile: a
        connection accepted while `refuse` ran must not outlive it (it would let a request through)."""
        with self._lock:
            if self._listener is listener:
                self._sockets.add(sock)
                return True
        self._close(sock)
        return False

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            sock.close()

    def _drop_connections(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)

    def refuse(self) -> None:
        """Down: open connections are cut and new ones refused."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            self._close(listener)
        self._drop_connections()

    def swallow(self) -> None:
        """Down the slow way: connections are accepted and never answered."""
        self.blackhole = True
        self._drop_connections()
        if self._listener is None:
            self._listen(self.port)

    def forward(self) -> None:
        """Back up, on the same port."""
        self.blackhole = False
        self._drop_connections()
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        self.refuse()
