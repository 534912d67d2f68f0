"""Limits at the edge: the HTTP/1.1 protocol that `segmentation api` runs, uvicorn's httptools one
with bounds on what a client may make a worker hold, and JSON answers for what it refuses.

uvicorn bounds nothing of a request's head on httptools (its h11 option does, at half the speed):
a 10 MiB header was served, and 10 clients each sending 60 MiB of a header they never finished
grew a worker by 540 MB. Here a request's head (request line and headers) is refused with 431 as
soon as it passes its bound, and a client that takes too long to send a head or a body is
answered 408 and let go. The parser's own failures (a malformed request line, a bad header) get
the API's JSON error shape instead of uvicorn's plain text.

Timers are armed only when a feed of bytes ends inside a head or a body: a request that arrives
whole in one read, as nearly all do, costs no timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.errors import error_body
from api.middleware.request_context import CLIENT_ERROR_LINES_PER_SECOND, LinesPerSecond

# A request's head: its request line and headers together (nginx's default large buffers hold 32 KiB).
MAX_HEAD_BYTES = 16 * 1024
MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADERS = 100
# After a refusal, what the client still sends is read and dropped this long at most, so that it
# reads the answer: closing a socket with unread bytes resets the connection, answer and all.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HttpLimits:
    # From a request's first byte (or the connection's opening) to the end of its headers.
    head_seconds: float = 10.0
    # From the end of the headers to the end of the body; the largest body allowed is 1 MiB.
    body_seconds: float = 30.0
    max_head_bytes: int = MAX_HEAD_BYTES
    max_request_line_bytes: int = MAX_REQUEST_LINE_BYTES
    max_headers: int = MAX_HEADERS


log = structlog.get_logger("api.edge")
_refusal_lines = LinesPerSecond(CLIENT_ERROR_LINES_PER_SECOND)  # every worker's connections share it


class _UvicornParserWarnings(logging.Filter):
    """uvicorn warns on every request its parser fails, before the refusal here answers it: a line
    per malformed request, which any client can send at any rate. `_refuse` logs them, limited."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


logging.getLogger("uvicorn.error").addFilter(_UvicornParserWarnings())


class _Refused(Exception):
    """Raised from a parser callback: the parser stops and reports it as its own error."""


class LimitedHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HttpLimits = HttpLimits(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._reading_head = True  # from a message's first byte (or the connection's opening) to its headers' end
        self._reading_body = False
        self._head_bytes = 0  # whole reads that ended inside the head; the parser buffers them
        self._refusal: tuple[int, str, str] | None = None
        # The cycle of the message being read, once its head is complete: `self.cycle` is the
        # previous message's until then, on a keep-alive connection.
        self._message_cycle: Any = None
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and says nothing is let go like one that sends its head too slowly.
        self._arm(self.limits.head_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        super().data_received(data)
        if self._lingering or self.transport.is_closing():
            return
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431, "request_header_fields_too_large", self._head_too_large())
            elif self._timer is None:
                self._arm(self.limits.head_seconds)
        elif self._reading_body and self._timer is None:
            self._arm(self.limits.body_seconds)
        elif self._timer is None and (self.cycle is None or self.cycle.response_complete):
            # Bytes that began no message (the parser skips line breaks between messages): they
            # stopped uvicorn's keep-alive timer, so this one stands in for it.
            self._arm(self.limits.head_seconds)

    # The parser's callbacks. A head that arrives within one read is measured whole once it is
    # complete (one call rather than one per header, on every request); one spread over reads is
    # bounded read by read in `data_received`, before the parser has buffered much of it.
    def on_message_begin(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        self._message_cycle = None
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._reading_body = True
        self._disarm()
        if len(self.url) > self.limits.max_request_line_bytes:
            self._refusal = (414, "uri_too_long", f"the request line is longer than {self.limits.max_request_line_bytes} bytes")
            raise _Refused  # the parser stops and reports it as its error: `send_400_response` answers
        if len(self.headers) > self.limits.max_headers:
            self._refusal = (431, "request_header_fields_too_large", f"a request may carry at most {self.limits.max_headers} headers")
            raise _Refused
        # ": " and CRLF per header
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.limits.max_head_bytes:
            self._refusal = (431, "request_header_fields_too_large", self._head_too_large())
            raise _Refused
        super().on_headers_complete()
        self._message_cycle = self.cycle

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this when the parser fails, our callbacks' refusals included."""
        status, code, message = self._refusal or (400, "bad_request", "malformed HTTP request")
        self._refuse(status, code, message)

    def _head_too_large(self) -> str:
        return f"the request line and headers are larger than {self.limits.max_head_bytes} bytes"

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self._lingering:
            self.transport.close()
            return
        part, seconds = ("body", self.limits.body_seconds) if self._reading_body else ("headers", self.limits.head_seconds)
        self._refuse(408, "request_timeout", f"the request's {part} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answers, unless the app has begun to, and closes the connection after a linger: what is
        left of the request is never parsed."""
        if self._lingering or self.transport.is_closing():
            return
        refused = self._message_cycle
        if refused is None:  # refused in its head: answer unless an earlier answer is still being written
            answer = self.cycle is None or self.cycle.response_complete
        else:  # refused in its body: answer unless the app has begun to
            answer = not refused.response_started
            refused.disconnected = True  # the app's own answer, if it comes, goes nowhere
            refused.message_event.set()  # and a read of the body it waits for ends now
        write, held_back = _refusal_lines.take()
        if held_back:
            log.info("refusals at the edge not logged", count=held_back, limit_per_second=CLIENT_ERROR_LINES_PER_SECOND)
        if write:
            log.info("request refused at the edge", status=status, code=code)
        if answer:
            body = json.dumps(error_body(code, message)).encode()
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER_SECONDS)
