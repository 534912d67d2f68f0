"""The configured URLs: parsed, redacted for display, and probed for a listener."""

from __future__ import annotations

import socket
import urllib.parse
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from devtools.local_services.service import ServiceError

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "ip6-localhost"})
# What we start listens on loopback only.
BIND_HOST = "127.0.0.1"
MAX_PORT = 65535


@dataclass(frozen=True)
class PostgresTarget:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    @property
    def dagster_dbname(self) -> str:
        return f"{self.dbname}_dagster"


@dataclass(frozen=True)
class HostPort:
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_postgres_url(url: str) -> PostgresTarget:
    """`postgresql[+driver]://user:password@host:port/dbname` -> its parts (port defaults to 5432)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ServiceError("PostgreSQL: SEGMENTATION_DATABASE_URL must be a postgresql:// URL") from None
    except ValueError as exc:
        raise ServiceError(f"PostgreSQL: bad port in SEGMENTATION_DATABASE_URL: {exc}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ServiceError(
            f"PostgreSQL: SEGMENTATION_DATABASE_URL must be a postgresql:// URL, got scheme {parsed.drivername!r}"
        )
    port = parsed.port or 5432
    if port > MAX_PORT:
        raise ServiceError(f"PostgreSQL: bad port in SEGMENTATION_DATABASE_URL: {port} is above {MAX_PORT}")
    # make_url decodes the user and password but leaves the database name as written.
    dbname = urllib.parse.unquote(parsed.database or "")
    user = parsed.username or ""
    missing = [name for name, value in (("host", parsed.host), ("user", user), ("database name", dbname)) if not value]
    if missing:
        raise ServiceError(f"PostgreSQL: SEGMENTATION_DATABASE_URL lacks the {', '.join(missing)}")
    return PostgresTarget(host=parsed.host or "", port=port, user=user, password=parsed.password or "", dbname=dbname)


def parse_host_port(url: str, *, default_port: int, schemes: tuple[str, ...], service: str) -> HostPort:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in schemes:
        raise ServiceError(f"{service}: URL {redact_url(url)!r} must use one of the schemes {', '.join(schemes)}")
    if not parsed.hostname:
        raise ServiceError(f"{service}: URL {redact_url(url)!r} has no host")
    try:
        port = parsed.port or default_port
    except ValueError as exc:
        raise ServiceError(f"{service}: bad port in {redact_url(url)!r}: {exc}") from None
    return HostPort(
        scheme=parsed.scheme,
        host=parsed.hostname,
        port=port,
        username=urllib.parse.unquote(parsed.username) if parsed.username else None,
        password=urllib.parse.unquote(parsed.password) if parsed.password else None,
    )


def parse_elasticsearch_url(url: str) -> HostPort:
    return parse_host_port(url, default_port=9200, schemes=("http", "https"), service="Elasticsearch")


def parse_redis_url(url: str) -> HostPort:
    return parse_host_port(url, default_port=6379, schemes=("redis", "rediss"), service="Redis")


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***` (for messages and the status table); each URL
    of a comma-separated list (several Elasticsearch nodes)."""
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_one(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    host_part = parsed.netloc.rsplit("@", 1)[1]
    user = parsed.username or ""
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{user}:***@{host_part}"))


def is_local_host(host: str) -> bool:
    return host.lower() in LOCAL_HOSTS


def accepts_tcp(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
