"""`segmentation services up|down|status`: the local Elasticsearch, PostgreSQL and Redis (SPEC 6).

Contract:

* Idempotent. Whatever already answers at the configured URL (``elasticsearch_url``,
  ``database_url``, ``redis_url``) is used as it is, reported as *external* and never stopped.
  ``down`` stops only what we started, recognised by a pidfile under ``settings.state_dir``.
* What we start binds to 127.0.0.1 on the port of the configured URL. Data and logs live under
  ``state_dir``: ``elasticsearch/{data,logs}``, ``postgres/{data,log}``, ``redis/``; downloads are
  cached in ``state_dir/downloads`` (the Maven download itself lands in ``~/.m2``).
* Elasticsearch and PostgreSQL refuse to run as root, so when we are root every server runs as an
  unprivileged system user (``segsvc``, created when missing; override with
  ``SEGMENTATION_SERVICES_USER``) through ``runuser``. When we are not root, they run as ourselves.
* Every failure is a :class:`ServiceError` whose message names the service, what failed and
  where its log is.

The three public functions log progress (``logging``, logger ``devtools.local_services``) and print
nothing; the caller renders the returned :class:`ServiceState` list.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from resources.settings import Settings

__all__ = [
    "ServiceError",
    "ServiceState",
    "services_down",
    "services_status",
    "services_up",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Pinned versions and knobs
# --------------------------------------------------------------------------------------------

ES_VERSION = "8.19.21"
ES_MAVEN_GROUP = "org.elasticsearch.distribution.integ-test-zip"
ES_MAVEN_ARTIFACT = "elasticsearch"
ES_ZIP_NAME = f"elasticsearch-{ES_VERSION}.zip"
ES_ZIP_SHA512 = (
    "cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d"
    "4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd"
)
ES_HEAP = "768m"
ES_START_TIMEOUT_S = 120.0
ES_STOP_TIMEOUT_S = 60.0
# ES 8.19 runs on Java 17 and later; 25 is the newest major it was tried on here.
ES_MIN_JAVA = 17
ES_PREFERRED_MIN_JAVA = 21
ES_MAX_TESTED_JAVA = 25
JVM_ROOT = Path("/usr/lib/jvm")

PG_START_TIMEOUT_S = 60.0
REDIS_START_TIMEOUT_S = 20.0
REDIS_STOP_TIMEOUT_S = 30.0

ENV_SERVICE_USER = "SEGMENTATION_SERVICES_USER"
ENV_ES_JAVA_HOME = "SEGMENTATION_ES_JAVA_HOME"
DEFAULT_SERVICE_USER = "segsvc"

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "ip6-localhost"})
BIND_HOST = "127.0.0.1"


class ServiceError(Exception):
    """A local service could not be installed, started, reached or stopped."""


@dataclass(frozen=True)
class ServiceState:
    name: str
    url: str
    running: bool
    managed: bool  # started by us (pidfile under state_dir), vs. something external
    detail: str


# --------------------------------------------------------------------------------------------
# URL parsing (pure)
# --------------------------------------------------------------------------------------------


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
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ServiceError(f"PostgreSQL: SEGMENTATION_DATABASE_URL must be a postgresql:// URL, got scheme {parsed.scheme!r}")
    try:
        port = parsed.port or 5432
    except ValueError as exc:
        raise ServiceError(f"PostgreSQL: bad port in SEGMENTATION_DATABASE_URL: {exc}") from None
    user = urllib.parse.unquote(parsed.username or "")
    password = urllib.parse.unquote(parsed.password or "")
    dbname = urllib.parse.unquote(parsed.path.lstrip("/"))
    missing = [n for n, v in (("host", parsed.hostname), ("user", user), ("database name", dbname)) if not v]
    if missing:
        raise ServiceError(f"PostgreSQL: SEGMENTATION_DATABASE_URL lacks the {', '.join(missing)}")
    return PostgresTarget(host=parsed.hostname or "", port=port, user=user, password=password, dbname=dbname)


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
    """The URL with its password replaced by `***` (for messages and the status table)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[1]
    user = parsed.username or ""
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{user}:***@{netloc}"))


def is_local_host(host: str) -> bool:
    return host.lower() in LOCAL_HOSTS


# --------------------------------------------------------------------------------------------
# Rendering and verification (pure)
# --------------------------------------------------------------------------------------------


def _yaml_scalar(value: object) -> str:
    # JSON scalars are valid YAML scalars and quote everything that needs it.
    return json.dumps(value)


def render_elasticsearch_yml(
    *,
    http_port: int,
    data_dir: Path,
    logs_dir: Path,
    geoip_downloader_setting: bool,
    cluster_name: str = "segmentation-local",
    node_name: str = "segmentation-local-1",
) -> str:
    settings: list[tuple[str, object]] = [
        ("cluster.name", cluster_name),
        ("node.name", node_name),
        ("network.host", BIND_HOST),
        ("http.port", http_port),
        ("discovery.type", "single-node"),
        ("xpack.security.enabled", False),
        ("path.data", str(data_dir)),
        ("path.logs", str(logs_dir)),
        ("cluster.routing.allocation.disk.threshold_enabled", False),
        # Nor may a nearly full shared disk stop merges: with under 5% of it free, Elasticsearch
        # 8.19 schedules none, and each publish's merge into one Lucene segment waits forever.
        ("indices.merge.disk.check_interval", "0"),
        ("action.destructive_requires_name", False),
    ]
    if geoip_downloader_setting:
        # Only builds that ship the ingest-geoip module know this setting; the others refuse to
        # boot on an unknown setting.
        settings.append(("ingest.geoip.downloader.enabled", False))
    lines = ["# Written by `segmentation services up`; rewritten on every start.\n"]
    lines += [f"{key}: {_yaml_scalar(value)}\n" for key, value in settings]
    return "".join(lines)


def sha512_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha512(path: Path, expected: str) -> None:
    actual = sha512_of(path)
    if actual.lower() != expected.lower():
        raise ServiceError(
            f"Elasticsearch: checksum mismatch for {path}: expected SHA-512 {expected.lower()}, "
            f"got {actual}. The file is corrupt or not the pinned release; delete it and run "
            "`segmentation services up` again."
        )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise ServiceError("PostgreSQL: the URL's user, password or database contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def render_postgres_bootstrap_sql(target: PostgresTarget) -> str:
    """psql script (uses `\\gexec`) that creates the role and both databases when missing."""
    role = quote_literal(target.user)
    password = f"PASSWORD {quote_literal(target.password)}" if target.password else "PASSWORD NULL"
    lines = [
        f"SELECT format('CREATE ROLE %I LOGIN', {role}) "
        f"WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {role}) \\gexec",
        # Our private cluster: keep the password in step with the URL.
        f"ALTER ROLE {quote_ident(target.user)} LOGIN {password};",
    ]
    for db in (target.dbname, target.dagster_dbname):
        lines.append(
            f"SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L', {quote_literal(db)}, {role}, 'UTF8') "
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(db)}) \\gexec"
        )
    return "\n".join(lines) + "\n"


def render_postgres_conf(*, port: int, socket_dir: Path) -> str:
    return (
        "# Written by `segmentation services up`; rewritten on every start.\n"
        f"listen_addresses = {quote_literal(BIND_HOST)}\n"
        f"port = {port}\n"
        f"unix_socket_directories = {quote_literal(str(socket_dir))}\n"
        "password_encryption = 'scram-sha-256'\n"
        "max_connections = 200\n"
        "shared_buffers = '128MB'\n"
        "log_timezone = 'UTC'\n"
        "timezone = 'UTC'\n"
    )


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def lock_file(self) -> Path:
        return self.root / "services.lock"

    # Elasticsearch
    @property
    def es_dir(self) -> Path:
        return self.root / "elasticsearch"

    @property
    def es_home(self) -> Path:
        return self.es_dir / f"elasticsearch-{ES_VERSION}"

    @property
    def es_data(self) -> Path:
        return self.es_dir / "data"

    @property
    def es_logs(self) -> Path:
        return self.es_dir / "logs"

    @property
    def es_tmp(self) -> Path:
        return self.es_dir / "tmp"

    @property
    def es_pidfile(self) -> Path:
        return self.es_dir / "elasticsearch.pid"

    @property
    def es_launcher_log(self) -> Path:
        return self.es_logs / "launcher.log"

    # PostgreSQL
    @property
    def pg_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_log_dir(self) -> Path:
        return self.pg_dir / "log"

    @property
    def pg_log(self) -> Path:
        return self.pg_log_dir / "postgres.log"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def pg_pidfile(self) -> Path:
        return self.pg_data / "postmaster.pid"

    # Redis
    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    @property
    def redis_log(self) -> Path:
        return self.redis_dir / "redis.log"

    @property
    def redis_auth_conf(self) -> Path:
        return self.redis_dir / "auth.conf"


def _layout(settings: Settings) -> Layout:
    return Layout(Path(settings.state_dir).expanduser().resolve())


# --------------------------------------------------------------------------------------------
# Process, user and file helpers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """Who the servers run as: an unprivileged user when we are root, else ourselves."""

    name: str
    uid: int
    gid: int
    via_runuser: bool

    def wrap(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.name, "--", *argv] if self.via_runuser else argv


def _service_user(create: bool) -> RunAs:
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, via_runuser=False)
    name = os.environ.get(ENV_SERVICE_USER, DEFAULT_SERVICE_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return RunAs(name, -1, -1, via_runuser=True)
        log.info("creating system user %s for the local servers", name)
        _run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", name],
            what=f"create the system user {name!r} (useradd)",
            service="services",
        )
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise ServiceError(f"services: {ENV_SERVICE_USER}={name!r} is root; Elasticsearch and PostgreSQL refuse to run as root")
    return RunAs(name, entry.pw_uid, entry.pw_gid, via_runuser=True)


def _run(
    argv: list[str],
    *,
    what: str,
    service: str,
    log_hint: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    timeout: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ServiceError(f"{service}: cannot {what}: {argv[0]!r} is not installed") from None
    except subprocess.TimeoutExpired:
        hint = f"; see {log_hint}" if log_hint else ""
        raise ServiceError(f"{service}: {what} did not finish within {timeout:.0f}s{hint}") from None
    if proc.returncode != 0:
        output = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        hint = f"\nLog: {log_hint}" if log_hint else ""
        raise ServiceError(f"{service}: failed to {what} (exit code {proc.returncode}):\n{output}{hint}")
    return proc


def _apt_install(package: str, service: str) -> None:
    if os.geteuid() != 0:
        raise ServiceError(f"{service}: {package} is not installed; install it (apt-get install -y {package}) or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", package)
    _run(["apt-get", "update"], what="run apt-get update", service=service, env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", package], what=f"apt-get install {package}",
         service=service, env=env)


def _ensure_dir(path: Path, user: RunAs | None, mode: int = 0o755) -> None:
    """Create `path` (and parents, root-owned); hand the leaf and its content to `user`."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if user is not None and user.via_runuser:
        st = path.stat()
        if (st.st_uid, st.st_gid) != (user.uid, user.gid):
            _chown_tree(path, user)


def _chown_tree(path: Path, user: RunAs) -> None:
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


def _write_if_changed(path: Path, text: str, user: RunAs | None, mode: int = 0o644) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    if user is not None and user.via_runuser:
        os.chown(tmp, user.uid, user.gid)
    os.replace(tmp, path)
    return True


def _read_pid(pidfile: Path) -> int | None:
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return int(first) if first.isdigit() else None


def _pid_alive(pid: int, marker: str) -> bool:
    """True when `pid` is a live process whose command line mentions `marker`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if re.search(r"^State:\s+Z", status, re.MULTILINE):
        return False
    return marker.encode() in cmdline


def _managed_pid(pidfile: Path, marker: str) -> int | None:
    pid = _read_pid(pidfile)
    return pid if pid is not None and _pid_alive(pid, marker) else None


def _wait_pid_exit(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid, marker):
            return True
        time.sleep(0.2)
    return not _pid_alive(pid, marker)


def _terminate(pid: int, marker: str, timeout: float, service: str) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_pid_exit(pid, marker, timeout):
        return
    log.warning("%s (pid %d) did not stop within %.0fs after SIGTERM; sending SIGKILL", service, pid, timeout)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not _wait_pid_exit(pid, marker, 10):
        raise ServiceError(f"{service}: process {pid} survives SIGKILL")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def _es_log_excerpt(path: Path) -> str:
    """The error lines of an Elasticsearch log (a Java stack trace buries them) and its last lines."""
    text = _tail(path, 400)
    lines = text.splitlines()
    errors = [
        line[:500] for line in lines
        if not line.startswith(("\tat ", "\t... ")) and re.search(r"ERROR|FATAL|Exception\b|[Ee]rror:", line)
    ]
    last = [
        line[:500] for line in lines[-12:]
        if line.strip() and not line.startswith(("\tat ", "\t... ")) and line[:500] not in errors[-8:]
    ]
    return "\n".join([*errors[-8:], *last])


def _tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _state_lock(layout: Layout) -> Iterator[None]:
    """Serialises concurrent `services up/down` runs on the same state_dir."""
    layout.root.mkdir(parents=True, exist_ok=True)
    mode = layout.root.stat().st_mode
    if not mode & 0o001:  # the service user must be able to traverse it
        os.chmod(layout.root, (mode | 0o005) & 0o7777)
    with layout.lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_reachable_by(user: RunAs, path: Path) -> None:
    """The service user must be able to traverse every ancestor of the state dir."""
    if not user.via_runuser:
        return
    for parent in [*reversed(path.parents), path]:
        st = parent.stat()
        if st.st_uid == user.uid:
            continue
        if not st.st_mode & 0o001:
            raise ServiceError(
                f"services: {parent} is not searchable by the service user {user.name!r}; "
                f"chmod o+x {parent} or point SEGMENTATION_STATE_DIR elsewhere"
            )


# --------------------------------------------------------------------------------------------
# Elasticsearch
# --------------------------------------------------------------------------------------------

ES = "Elasticsearch"


def _es_marker(layout: Layout) -> str:
    return f"-Des.path.home={layout.es_home}"


def _es_http(url: str, timeout: float) -> tuple[int, str] | None:
    """(status, body) of a GET, or None when nothing answers."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - local URL from settings
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _es_base(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))


def _es_health_url(url: str, wait_yellow: bool, timeout_s: int = 1) -> str:
    query = f"wait_for_status=yellow&timeout={timeout_s}s" if wait_yellow else f"timeout={timeout_s}s"
    return f"{_es_base(url)}/_cluster/health?{query}"


def _es_answers(url: str) -> tuple[bool, str]:
    """Whether something answers HTTP at the URL, and a short description of what."""
    parsed = parse_elasticsearch_url(url)
    if not _tcp_open(parsed.host, parsed.port):
        return False, ""
    result = _es_http(_es_health_url(url, wait_yellow=False), timeout=5)
    if result is None:
        return True, "port open, no HTTP answer"
    status, body = result
    if status == 200:
        try:
            health = json.loads(body)
            return True, f"cluster {health.get('cluster_name')!r} is {health.get('status')}"
        except ValueError:
            return True, "answers HTTP 200"
    return True, f"answers HTTP {status}"


def _java_major(java_home: Path) -> int | None:
    release = java_home / "release"
    try:
        match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
        if match:
            return int(match.group(1))
    except OSError:
        pass
    java = java_home / "bin" / "java"
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def choose_java_home(jvm_root: Path = JVM_ROOT) -> tuple[Path, int]:
    """The JDK to run Elasticsearch with: `$SEGMENTATION_ES_JAVA_HOME` if set, else the newest
    JDK under /usr/lib/jvm whose major is within ES 8.19's tested range (21+ preferred, then 17+)."""
    override = os.environ.get(ENV_ES_JAVA_HOME)
    if override:
        home = Path(override)
        major = _java_major(home) if (home / "bin" / "java").is_file() else None
        if major is None:
            raise ServiceError(f"{ES}: {ENV_ES_JAVA_HOME}={override} is not a JDK (no working bin/java)")
        if major < ES_MIN_JAVA:
            raise ServiceError(f"{ES}: {ENV_ES_JAVA_HOME}={override} is Java {major}; {ES} {ES_VERSION} needs {ES_MIN_JAVA}+")
        return home, major
    candidates: dict[Path, int] = {}
    if jvm_root.is_dir():
        for entry in sorted(jvm_root.iterdir()):
            home = entry.resolve()
            if home in candidates or not (home / "bin" / "java").is_file():
                continue
            major = _java_major(home)
            if major is not None:
                candidates[home] = major
    for low, high in ((ES_PREFERRED_MIN_JAVA, ES_MAX_TESTED_JAVA), (ES_MIN_JAVA, ES_MAX_TESTED_JAVA), (ES_MIN_JAVA, 10_000)):
        fitting = [(major, str(home)) for home, major in candidates.items() if low <= major <= high]
        if fitting:
            major, home = max(fitting)
            if major > ES_MAX_TESTED_JAVA:
                log.warning("using Java %d for %s %s, newer than tested (%d)", major, ES, ES_VERSION, ES_MAX_TESTED_JAVA)
            return Path(home), major
    found = ", ".join(f"{h} (Java {m})" for h, m in candidates.items()) or "none"
    raise ServiceError(
        f"{ES}: no JDK {ES_MIN_JAVA}+ under {jvm_root} (found: {found}); install one "
        f"(apt-get install -y openjdk-17-jdk-headless) or set {ENV_ES_JAVA_HOME}"
    )


def _m2_zip_path() -> Path:
    return (
        Path.home() / ".m2" / "repository" / Path(*ES_MAVEN_GROUP.split("."))
        / ES_MAVEN_ARTIFACT / ES_VERSION / ES_ZIP_NAME
    )


def _es_fetch_zip(layout: Layout) -> Path:
    """The verified distribution zip in the downloads cache (from ~/.m2, else through Maven)."""
    layout.downloads.mkdir(parents=True, exist_ok=True)
    target = layout.downloads / ES_ZIP_NAME
    if target.is_file():
        verify_sha512(target, ES_ZIP_SHA512)
        return target
    m2 = _m2_zip_path()
    if m2.is_file():
        log.info("copying %s from the local Maven repository", ES_ZIP_NAME)
        verify_sha512(m2, ES_ZIP_SHA512)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(m2, tmp)
        os.replace(tmp, target)
    else:
        if shutil.which("mvn") is None:
            raise ServiceError(
                f"{ES}: Maven (mvn) is needed to download the {ES} {ES_VERSION} distribution; "
                f"install it (apt-get install -y maven) or put {ES_ZIP_NAME} in {layout.downloads}"
            )
        log.info("downloading %s %s with Maven", ES, ES_VERSION)
        _run(
            ["mvn", "-q", "-B", "dependency:copy",
             f"-Dartifact={ES_MAVEN_GROUP}:{ES_MAVEN_ARTIFACT}:{ES_VERSION}:zip",
             f"-DoutputDirectory={layout.downloads}"],
            what=f"download {ES_MAVEN_GROUP}:{ES_MAVEN_ARTIFACT}:{ES_VERSION}:zip with Maven",
            service=ES,
            timeout=900,
        )
        if not target.is_file():
            raise ServiceError(f"{ES}: Maven finished but {target} is missing")
    verify_sha512(target, ES_ZIP_SHA512)
    return target


def _extract_zip(zip_path: Path, dest_parent: Path, top: str) -> None:
    """Extract `zip_path` (whose entries all live under `top/`) to `dest_parent/top`, atomically."""
    staging = dest_parent / f".{top}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _extract_into(zip_path, staging, dest_parent, top)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_into(zip_path: Path, staging: Path, dest_parent: Path, top: str) -> None:
    root = staging.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            out = (staging / info.filename).resolve()
            if not out.is_relative_to(root):
                raise ServiceError(f"{ES}: refusing to extract {info.filename!r} outside {staging}")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(out, mode or 0o644)
    extracted = staging / top
    if not (extracted / "bin" / "elasticsearch").is_file():
        raise ServiceError(f"{ES}: {zip_path} does not contain {top}/bin/elasticsearch")
    os.replace(extracted, dest_parent / top)


def _es_install(layout: Layout) -> None:
    if (layout.es_home / "bin" / "elasticsearch").is_file():
        return
    zip_path = _es_fetch_zip(layout)
    log.info("extracting %s to %s", zip_path.name, layout.es_home)
    layout.es_dir.mkdir(parents=True, exist_ok=True)
    _extract_zip(zip_path, layout.es_dir, layout.es_home.name)


def _es_state(settings: Settings, layout: Layout) -> ServiceState:
    url = settings.elasticsearch_url
    answers, what = _es_answers(url)
    pid = _managed_pid(layout.es_pidfile, _es_marker(layout))
    shown = redact_url(url)
    if pid is not None:
        detail = f"ours, pid {pid}, {what}; logs {layout.es_logs}" if answers else f"ours, pid {pid}, not answering yet; logs {layout.es_logs}"
        return ServiceState(ES, shown, answers, True, detail)
    if answers:
        return ServiceState(ES, shown, True, False, f"external ({what}); left alone")
    return ServiceState(ES, shown, False, False, "not running")


def _es_wait_ready(settings: Settings, layout: Layout, pid: int | None, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait_s = max(1, min(5, int(remaining)))
        result = _es_http(_es_health_url(settings.elasticsearch_url, True, wait_s), timeout=wait_s + 5)
        if result is not None:
            status, body = result
            if status == 200:
                try:
                    return str(json.loads(body).get("status"))
                except ValueError:
                    return "up"
            last = f"HTTP {status}: {body[:200]}"
        else:
            time.sleep(1)
        if pid is not None and not _pid_alive(pid, _es_marker(layout)):
            raise ServiceError(
                f"{ES}: the node (pid {pid}) exited while starting. Log {layout.es_logs}; its tail:\n"
                f"{_es_log_excerpt(_es_main_log(layout))}"
            )
    raise ServiceError(
        f"{ES}: not ready (cluster health yellow) at {redact_url(settings.elasticsearch_url)} within "
        f"{timeout:.0f}s (last: {last}). Log {_es_main_log(layout)}; its tail:\n{_es_log_excerpt(_es_main_log(layout))}"
    )


def _es_main_log(layout: Layout) -> Path:
    main = layout.es_logs / "segmentation-local.log"
    return main if main.exists() else layout.es_launcher_log


def _es_up(settings: Settings, layout: Layout) -> ServiceState:
    url = settings.elasticsearch_url
    target = parse_elasticsearch_url(url)
    state = _es_state(settings, layout)
    if state.running:
        if state.managed:
            _es_wait_ready(settings, layout, _managed_pid(layout.es_pidfile, _es_marker(layout)), ES_START_TIMEOUT_S)
        return _es_state(settings, layout) if state.managed else state
    if state.managed:  # our process is alive but not answering yet (e.g. another `up` started it)
        pid = _managed_pid(layout.es_pidfile, _es_marker(layout))
        _es_wait_ready(settings, layout, pid, ES_START_TIMEOUT_S)
        return _es_state(settings, layout)
    if not is_local_host(target.host):
        raise ServiceError(f"{ES}: nothing answers at {redact_url(url)}, and only a local node (127.0.0.1) can be started")
    if target.scheme != "http":
        raise ServiceError(f"{ES}: nothing answers at {redact_url(url)}; the local node speaks plain http, set SEGMENTATION_ELASTICSEARCH_URL=http://127.0.0.1:{target.port}")

    user = _service_user(create=True)
    _check_reachable_by(user, layout.root)
    java_home, java_major = choose_java_home()
    _es_install(layout)
    for d in (layout.es_dir, layout.es_data, layout.es_logs, layout.es_tmp):
        _ensure_dir(d, user)
    if user.via_runuser:
        home_st = (layout.es_home / "config").stat()
        if home_st.st_uid != user.uid:
            _chown_tree(layout.es_home, user)  # ES writes its keystore into config/
    geoip = (layout.es_home / "modules" / "ingest-geoip").is_dir()
    _write_if_changed(
        layout.es_home / "config" / "elasticsearch.yml",
        render_elasticsearch_yml(http_port=target.port, data_dir=layout.es_data, logs_dir=layout.es_logs,
                                 geoip_downloader_setting=geoip),
        user,
    )
    layout.es_pidfile.unlink(missing_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(layout.es_dir),
        "ES_JAVA_HOME": str(java_home),
        "ES_JAVA_OPTS": f"-Xms{ES_HEAP} -Xmx{ES_HEAP}",
        "ES_TMPDIR": str(layout.es_tmp),
        "CLI_JAVA_OPTS": f"-Djava.io.tmpdir={layout.es_tmp}",
    }
    log.info("starting %s %s on %s:%d (Java %d at %s)", ES, ES_VERSION, BIND_HOST, target.port, java_major, java_home)
    argv = user.wrap(["env", *(f"{k}={v}" for k, v in env.items()),
                      str(layout.es_home / "bin" / "elasticsearch"), "-d", "-p", str(layout.es_pidfile)])
    started = time.monotonic()
    # -d returns once the node has started (or failed); its output goes to a file so that the
    # daemon cannot hold a pipe of ours open.
    with layout.es_launcher_log.open("ab") as out:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  cwd=layout.es_logs, timeout=ES_START_TIMEOUT_S, check=False)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    if rc not in (0, None):
        raise ServiceError(
            f"{ES}: failed to start (launcher exit code {rc}). Log {_es_main_log(layout)}; its tail:\n"
            f"{_es_log_excerpt(layout.es_launcher_log)}"
        )
    pid = _managed_pid(layout.es_pidfile, _es_marker(layout))
    remaining = max(5.0, ES_START_TIMEOUT_S - (time.monotonic() - started))
    health = _es_wait_ready(settings, layout, pid, remaining)
    log.info("%s is %s after %.1fs", ES, health, time.monotonic() - started)
    return _es_state(settings, layout)


def _es_down(settings: Settings, layout: Layout) -> ServiceState:
    pid = _managed_pid(layout.es_pidfile, _es_marker(layout))
    if pid is not None:
        log.info("stopping %s (pid %d)", ES, pid)
        _terminate(pid, _es_marker(layout), ES_STOP_TIMEOUT_S, ES)
        layout.es_pidfile.unlink(missing_ok=True)
    return _es_state(settings, layout)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

PG = "PostgreSQL"
PG_INCLUDE = "segmentation.conf"


def _pg_bindir(install: bool) -> Path | None:
    def find() -> Path | None:
        found = []
        for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
            if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file() and bindir.parent.name.isdigit():
                found.append((int(bindir.parent.name), bindir))
        return max(found)[1] if found else None

    bindir = find()
    if bindir is None and install:
        _apt_install("postgresql", PG)
        bindir = find()
        if bindir is None:
            raise ServiceError(f"{PG}: installed the postgresql package but found no /usr/lib/postgresql/<major>/bin/initdb")
    return bindir


def _pg_try_login(target: PostgresTarget, dbname: str | None = None, timeout: int = 3) -> str | None:
    """None when a real login with the URL's credentials works, else the error text."""
    import psycopg2  # the driver is a project dependency; imported late to keep `status` cheap

    try:
        conn = psycopg2.connect(
            host=target.host, port=target.port, user=target.user, password=target.password,
            dbname=dbname or target.dbname, connect_timeout=timeout,
        )
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()
    return None


def _pg_state(settings: Settings, layout: Layout) -> ServiceState:
    target = parse_postgres_url(settings.database_url)
    shown = redact_url(settings.database_url)
    answers = _tcp_open(target.host, target.port)
    pid = _managed_pid(layout.pg_pidfile, str(layout.pg_data))
    if pid is not None:
        if answers:
            return ServiceState(PG, shown, True, True, f"ours, pid {pid}, data {layout.pg_data}; log {layout.pg_log}")
        return ServiceState(PG, shown, False, True, f"ours, pid {pid}, not accepting TCP connections; log {layout.pg_log}")
    if answers:
        return ServiceState(PG, shown, True, False, "external; left alone")
    return ServiceState(PG, shown, False, False, "not running")


def _pg_initdb(bindir: Path, layout: Layout, user: RunAs) -> None:
    if (layout.pg_data / "PG_VERSION").is_file():
        return
    if layout.pg_data.exists() and any(layout.pg_data.iterdir()):
        raise ServiceError(f"{PG}: {layout.pg_data} exists, is not empty and holds no cluster; move it away and retry")
    log.info("initialising a PostgreSQL cluster in %s", layout.pg_data)
    layout.pg_data.mkdir(mode=0o700, exist_ok=True)
    os.chmod(layout.pg_data, 0o700)
    if user.via_runuser:
        os.chown(layout.pg_data, user.uid, user.gid)
    _run(
        user.wrap([str(bindir / "initdb"), "-D", str(layout.pg_data), "--username", user.name,
                   "--auth-local", "peer", "--auth-host", "scram-sha-256", "--encoding", "UTF8", "--no-locale"]),
        what=f"initdb {layout.pg_data}",
        service=PG,
        cwd=layout.pg_dir,
        env={**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
    )
    conf = layout.pg_data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write(f"\n# Settings of `segmentation services up`\ninclude_if_exists = '{PG_INCLUDE}'\n")


def _pg_psql(bindir: Path, layout: Layout, user: RunAs, port: int, sql: str, what: str) -> None:
    psql = bindir / "psql"
    if not psql.is_file():
        psql = Path(shutil.which("psql") or "psql")
    _run(
        user.wrap([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(layout.pg_socket_dir),
                   "-p", str(port), "-U", user.name, "-d", "postgres"]),
        what=what,
        service=PG,
        log_hint=layout.pg_log,
        input_text=sql,
        cwd=layout.pg_dir,
        timeout=120,
    )


def _pg_wait_login(target: PostgresTarget, layout: Layout, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    error = "no answer"
    while time.monotonic() < deadline:
        err = _pg_try_login(target)
        if err is None:
            err = _pg_try_login(target, target.dagster_dbname)
            if err is None:
                return
        error = err
        time.sleep(0.5)
    raise ServiceError(
        f"{PG}: cannot log in as {target.user!r} to {target.dbname!r} at {target.host}:{target.port} "
        f"within {timeout:.0f}s: {error}. Log {layout.pg_log}"
    )


def _pg_up(settings: Settings, layout: Layout) -> ServiceState:
    target = parse_postgres_url(settings.database_url)
    state = _pg_state(settings, layout)
    if state.running and not state.managed:
        err = _pg_try_login(target)
        if err is not None:
            log.warning("external PostgreSQL at %s:%d rejects the configured login: %s", target.host, target.port, err)
            return ServiceState(PG, state.url, True, False, f"external; left alone; login as {target.user!r} fails: {err}")
        return state
    if not state.managed and not is_local_host(target.host):
        raise ServiceError(f"{PG}: nothing answers at {target.host}:{target.port}, and only a local server (127.0.0.1) can be started")

    user = _service_user(create=True)
    _check_reachable_by(user, layout.root)
    bindir = _pg_bindir(install=True)
    assert bindir is not None
    sock_path = layout.pg_socket_dir / f".s.PGSQL.{target.port}"
    if len(str(sock_path).encode()) > 107:
        raise ServiceError(f"{PG}: the socket path {sock_path} is too long for a unix socket; use a shorter SEGMENTATION_STATE_DIR")
    _ensure_dir(layout.pg_dir, user)
    _ensure_dir(layout.pg_log_dir, user)
    _ensure_dir(layout.pg_socket_dir, user, mode=0o700)
    os.chmod(layout.pg_socket_dir, 0o700)
    _pg_initdb(bindir, layout, user)
    if state.managed:
        pid = _managed_pid(layout.pg_pidfile, str(layout.pg_data))
        log.info("PostgreSQL is ours (pid %s); checking it", pid)
        deadline = time.monotonic() + PG_START_TIMEOUT_S
        while not _tcp_open(target.host, target.port):
            if time.monotonic() > deadline or not _pid_alive(pid or -1, str(layout.pg_data)):
                raise ServiceError(
                    f"{PG}: our server (pid {pid}, data {layout.pg_data}) runs but does not accept connections "
                    f"at {target.host}:{target.port}; was the port changed? Run `segmentation services down`, "
                    f"then `up`. Log {layout.pg_log}"
                )
            time.sleep(0.5)
    else:
        _write_if_changed(layout.pg_data / PG_INCLUDE, render_postgres_conf(port=target.port, socket_dir=layout.pg_socket_dir),
                          user, mode=0o600)
        log.info("starting PostgreSQL (%s) on %s:%d", bindir.parent.name, BIND_HOST, target.port)
        started = time.monotonic()
        _run(
            user.wrap([str(bindir / "pg_ctl"), "-D", str(layout.pg_data), "-l", str(layout.pg_log),
                       "-w", "-t", str(int(PG_START_TIMEOUT_S)), "start"]),
            what="start the server (pg_ctl start)",
            service=PG,
            log_hint=layout.pg_log,
            cwd=layout.pg_dir,
            timeout=PG_START_TIMEOUT_S + 30,
        )
        log.info("PostgreSQL started in %.1fs", time.monotonic() - started)
    _pg_psql(bindir, layout, user, target.port, render_postgres_bootstrap_sql(target),
             what=f"create the role {target.user!r} and the databases {target.dbname!r}, {target.dagster_dbname!r}")
    _pg_wait_login(target, layout, PG_START_TIMEOUT_S)
    return _pg_state(settings, layout)


def _pg_down(settings: Settings, layout: Layout) -> ServiceState:
    pid = _managed_pid(layout.pg_pidfile, str(layout.pg_data))
    if pid is not None:
        bindir = _pg_bindir(install=False)
        log.info("stopping PostgreSQL (pid %d)", pid)
        if bindir is not None:
            user = _service_user(create=False)
            _run(
                user.wrap([str(bindir / "pg_ctl"), "-D", str(layout.pg_data), "-m", "fast", "-w", "-t", "60", "stop"]),
                what="stop the server (pg_ctl stop -m fast)",
                service=PG,
                log_hint=layout.pg_log,
                cwd=layout.pg_dir,
                timeout=120,
            )
        else:
            _terminate(pid, str(layout.pg_data), 60, PG)
    return _pg_state(settings, layout)


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

REDIS = "Redis"
REDIS_MARKER = "redis-server"
REDIS_MAXMEMORY = "512mb"


def _redis_ping(url: str) -> tuple[bool, str | None]:
    """(answers, error): answers is True when something speaks at host:port; error is None on PONG."""
    import redis  # project dependency

    target = parse_redis_url(url)
    if not _tcp_open(target.host, target.port):
        return False, "connection refused"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return True, None
    except redis.RedisError as exc:
        return True, str(exc) or type(exc).__name__
    finally:
        client.close()


def _redis_state(settings: Settings, layout: Layout) -> ServiceState:
    url = settings.redis_url
    shown = redact_url(url)
    answers, error = _redis_ping(url)
    pid = _managed_pid(layout.redis_pidfile, REDIS_MARKER)
    if pid is not None:
        if answers and error is None:
            return ServiceState(REDIS, shown, True, True, f"ours, pid {pid}, data {layout.redis_dir}; log {layout.redis_log}")
        return ServiceState(REDIS, shown, False, True, f"ours, pid {pid}, not answering PING ({error}); log {layout.redis_log}")
    if answers:
        suffix = "" if error is None else f"; PING fails: {error}"
        return ServiceState(REDIS, shown, True, False, f"external; left alone{suffix}")
    return ServiceState(REDIS, shown, False, False, "not running")


def _redis_wait(settings: Settings, layout: Layout, pid: int | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    error: str | None = "no answer"
    while time.monotonic() < deadline:
        answers, error = _redis_ping(settings.redis_url)
        if answers and error is None:
            return
        if pid is not None and not _pid_alive(pid, REDIS_MARKER):
            break
        time.sleep(0.2)
    raise ServiceError(
        f"{REDIS}: no PONG at {redact_url(settings.redis_url)} within {timeout:.0f}s ({error}). "
        f"Log {layout.redis_log}; its tail:\n{_tail(layout.redis_log, 15)}"
    )


def _redis_up(settings: Settings, layout: Layout) -> ServiceState:
    target = parse_redis_url(settings.redis_url)
    state = _redis_state(settings, layout)
    if state.running:
        return state
    if state.managed:
        _redis_wait(settings, layout, _managed_pid(layout.redis_pidfile, REDIS_MARKER), REDIS_START_TIMEOUT_S)
        return _redis_state(settings, layout)
    if not is_local_host(target.host):
        raise ServiceError(f"{REDIS}: nothing answers at {target.host}:{target.port}, and only a local server (127.0.0.1) can be started")
    if target.scheme != "redis":
        raise ServiceError(f"{REDIS}: nothing answers at {redact_url(settings.redis_url)}; the local server speaks plain redis://")

    server = shutil.which("redis-server")
    if server is None:
        _apt_install("redis-server", REDIS)
        server = shutil.which("redis-server")
        if server is None:
            raise ServiceError(f"{REDIS}: installed redis-server but it is not on PATH")
    user = _service_user(create=True)
    _check_reachable_by(user, layout.root)
    _ensure_dir(layout.redis_dir, user)
    argv = [server]
    auth_conf = layout.redis_auth_conf
    if target.password:
        # Keep the password out of the process list: it goes in a private config file.
        quoted = target.password.replace("\\", "\\\\").replace('"', '\\"')
        lines = [f'requirepass "{quoted}"']
        if target.username and target.username != "default":
            lines.append(f'user "{target.username}" on ">{quoted}" "~*" "&*" "+@all"')
        _write_if_changed(auth_conf, "\n".join(lines) + "\n", user, mode=0o600)
        argv.append(str(auth_conf))
    else:
        auth_conf.unlink(missing_ok=True)
    argv += [
        "--bind", BIND_HOST, "--port", str(target.port), "--daemonize", "yes",
        "--dir", str(layout.redis_dir), "--pidfile", str(layout.redis_pidfile), "--logfile", str(layout.redis_log),
        # No snapshots: nothing here needs them (cache entries are rebuilt, locks expire, and the
        # generation counter never falls below what Elasticsearch and the API recorded), and a
        # snapshot of a full cache forks and rewrites it every minute, a core's worth of CPU that
        # tripled the p99 of batch lookups (bench/bench_api.py, measured).
        "--save", "", "--appendonly", "no", "--protected-mode", "yes",
        # The lookup cache is bounded by memory: only keys with a TTL (cache entries) are evicted,
        # never the generation counter or the ingestion locks.
        "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "volatile-lru",
    ]
    layout.redis_pidfile.unlink(missing_ok=True)
    log.info("starting Redis on %s:%d", BIND_HOST, target.port)
    _run(user.wrap(argv), what="start redis-server", service=REDIS, log_hint=layout.redis_log, cwd=layout.redis_dir, timeout=60)
    deadline = time.monotonic() + 5
    while layout.redis_pidfile.exists() is False and time.monotonic() < deadline:
        time.sleep(0.05)
    _redis_wait(settings, layout, _managed_pid(layout.redis_pidfile, REDIS_MARKER), REDIS_START_TIMEOUT_S)
    return _redis_state(settings, layout)


def _redis_down(settings: Settings, layout: Layout) -> ServiceState:
    pid = _managed_pid(layout.redis_pidfile, REDIS_MARKER)
    if pid is not None:
        # SIGTERM makes Redis exit cleanly (no snapshot: none is configured).
        log.info("stopping Redis (pid %d)", pid)
        _terminate(pid, REDIS_MARKER, REDIS_STOP_TIMEOUT_S, REDIS)
        layout.redis_pidfile.unlink(missing_ok=True)
    return _redis_state(settings, layout)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def services_up(settings: Settings) -> list[ServiceState]:
    """Install where missing and start Elasticsearch, PostgreSQL and Redis; reuse what already answers."""
    layout = _layout(settings)
    errors: list[str] = []
    states: dict[str, ServiceState] = {}
    with _state_lock(layout):
        # The quick ones first, so that a slow or failing Elasticsearch still leaves them usable.
        for name, up in ((PG, _pg_up), (REDIS, _redis_up), (ES, _es_up)):
            try:
                states[name] = up(settings, layout)
            except ServiceError as exc:
                errors.append(str(exc))
    if errors:
        raise ServiceError("\n".join(errors))
    return [states[ES], states[PG], states[REDIS]]


def services_down(settings: Settings) -> list[ServiceState]:
    """Stop what `services_up` started (pidfiles under state_dir); leave everything else alone."""
    layout = _layout(settings)
    with _state_lock(layout):
        errors: list[str] = []
        states: list[ServiceState] = []
        for down in (_es_down, _pg_down, _redis_down):
            try:
                states.append(down(settings, layout))
            except ServiceError as exc:
                errors.append(str(exc))
        if errors:
            raise ServiceError("\n".join(errors))
    return states


def services_status(settings: Settings) -> list[ServiceState]:
    """Reachability of each configured URL, and whether we started what answers there."""
    layout = _layout(settings)
    return [_es_state(settings, layout), _pg_state(settings, layout), _redis_state(settings, layout)]
