"""Logs of every process of the platform (API workers, the CLI, Dagster runs started by it): one
JSON object per line on stderr, through structlog.

Standard-library loggers (uvicorn, Dagster's Python loggers, `devtools.local_services`) go through the
same formatter, so every line has the same shape: `timestamp`, `level`, `logger`, `event`, and the
context bound for the request or the command (`request_id`, ...; see `api/middleware/request_context.py`).

Secrets never reach a log line: values under secret-looking keys are replaced, and API keys,
bearer tokens and passwords inside URLs are masked in every string value, exception text included.

`SEGMENTATION_LOG_LEVEL` (default INFO) and `SEGMENTATION_LOG_FORMAT` (`json`, `console`, or
`auto`: console on a terminal, JSON otherwise) tune it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

LEVEL_ENV = "SEGMENTATION_LOG_LEVEL"
FORMAT_ENV = "SEGMENTATION_LOG_FORMAT"
MASK = "[redacted]"

# Keys whose values are secrets whatever they hold.
_SECRET_KEY = re.compile(r"(?i)(authorization|password|passwd|secret|token|api_key|credentials?)$")
_SECRET_TEXT = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1" + MASK),  # Authorization: Bearer <key>
    (re.compile(r"\bsgk_[A-Za-z0-9_-]+"), "sgk_" + MASK),  # our API keys (resources/config_store/api_keys.py)
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@"), r"\1" + MASK + "@"),  # scheme://user:password@host
    (re.compile(r"(?i)\b(password=)[^\s&;]+"), r"\1" + MASK),  # libpq keyword strings and query strings
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, MutableMapping):
        return {k: MASK if _SECRET_KEY.search(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def redact_secrets(_: Any, __: str, event: EventDict) -> EventDict:
    """structlog processor: the last word before rendering, so nothing added earlier escapes it."""
    for key, value in event.items():
        event[key] = MASK if _SECRET_KEY.search(key) else _redacted(value)
    return event


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def _renderer(log_format: str, stream: TextIO) -> Processor:
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


class _PlatformHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so that configuring again replaces it. Without a
    stream of its own it writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it; the property decides


_configured_format: str | None = None  # the format `configure_logging` chose for this process


def platform_handler(
    *, log_format: str | None = None, stream: TextIO | None = None, pre_chain: Sequence[Processor] = ()
) -> logging.Handler:
    """A handler that writes the platform's log lines, for a logger outside the root's tree (Dagster
    makes one per run). Its format: `log_format`, else the one this process's logging was configured
    with, else `SEGMENTATION_LOG_FORMAT`, else JSON. `pre_chain` adds fields from a record's extras."""
    log_format = (log_format or _configured_format or os.environ.get(FORMAT_ENV) or "json").lower()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), *pre_chain],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            _renderer(log_format, stream or sys.stderr),
        ],
    )
    handler = _PlatformHandler(stream)
    handler.setFormatter(formatter)
    return handler


def configure_logging(
    *, level: str | None = None, log_format: str | None = None, stream: TextIO | None = None, default_format: str = "json"
) -> None:
    """Idempotent: the last call wins. Handlers others installed (pytest's, for one) are kept."""
    global _configured_format
    level = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    log_format = _configured_format = (log_format or os.environ.get(FORMAT_ENV) or default_format).lower()
    shared = _shared_processors()
    structlog.configure(
        # Redacted here too: other handlers on the root logger (pytest's) see the event before our formatter.
        # Below the logger's level an event is dropped first, before any processor's work: the
        # API's per-request debug line cost a tenth of a cached lookup's CPU (measured).
        processors=[structlog.stdlib.filter_by_level, *shared, redact_secrets, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # a later configure_logging must reach loggers made before it
    )
    handler = platform_handler(log_format=log_format, stream=stream)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PlatformHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty at INFO and never about the platform itself.
    for noisy in ("elastic_transport.transport", "httpx", "py4j", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
