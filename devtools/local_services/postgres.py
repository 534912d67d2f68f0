"""The local PostgreSQL cluster: its state, `up` and `down`.

We run the newest Debian `postgresql` package found (installed when missing) on a cluster of our
own under state_dir, and keep the URL's role, password and databases (`<db>` and `<db>_dagster`)
in step with the URL.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from devtools.local_services.layout import Layout
from devtools.local_services.processes import (
    managed_pid,
    pid_alive,
    poll_until,
    terminate,
)
from devtools.local_services.service import ServiceError, ServiceState
from devtools.local_services.system import (
    RunAs,
    apt_install,
    check_reachable_by,
    ensure_dir,
    run_checked,
    service_user,
    write_if_changed,
)
from devtools.local_services.urls import (
    BIND_HOST,
    PostgresTarget,
    accepts_tcp,
    is_local_host,
    parse_postgres_url,
    redact_url,
)
from resources.settings import Settings

log = logging.getLogger(__name__)

PG = "PostgreSQL"
PG_INCLUDE = "segmentation.conf"
PG_INSTALL_ROOT = Path("/usr/lib/postgresql")
PG_START_TIMEOUT_S = 60.0
PG_STOP_TIMEOUT_S = 60
PSQL_TIMEOUT_S = 120
UNIX_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


# --- Rendering (pure) --------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise ServiceError(f"{PG}: the URL's user, password or database contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def render_postgres_bootstrap_sql(target: PostgresTarget) -> str:
    """psql script (uses `\\gexec`) that creates the role and both databases when missing."""
    role = quote_literal(target.user)
    password = f"PASSWORD {quote_literal(target.password)}" if target.password else "PASSWORD NULL"
    lines = [
        (
            f"SELECT format('CREATE ROLE %I LOGIN', {role}) "
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {role}) \\gexec"
        ),
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


# --- The server binaries and logins ------------------------------------------------------------


def _newest_bindir() -> Path | None:
    """/usr/lib/postgresql/<major>/bin of the newest major that has initdb and pg_ctl."""
    found = [
        (int(bindir.parent.name), bindir)
        for bindir in PG_INSTALL_ROOT.glob("*/bin")
        if bindir.parent.name.isdigit() and (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()
    ]
    return max(found)[1] if found else None


def _installed_bindir() -> Path:
    bindir = _newest_bindir()
    if bindir is None:
        apt_install("postgresql", PG)
        bindir = _newest_bindir()
        if bindir is None:
            raise ServiceError(f"{PG}: installed the postgresql package but found no {PG_INSTALL_ROOT}/<major>/bin/initdb")
    return bindir


def _login_error(target: PostgresTarget, dbname: str | None = None, timeout: int = 3) -> str | None:
    """None when a real login with the URL's credentials works, else the error text."""
    import psycopg2  # imported late to keep `status` cheap

    try:
        conn = psycopg2.connect(
            host=target.host, port=target.port, user=target.user, password=target.password,
            dbname=dbname or target.dbname, connect_timeout=timeout,
        )
    except psycopg2.Error as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()
    return None


def _wait_login(target: PostgresTarget, layout: Layout, timeout: float) -> None:
    """Wait until the URL's role can log in to both databases."""

    def login_error() -> str | None:
        return _login_error(target) or _login_error(target, target.dagster_dbname)

    error = poll_until(login_error, lambda err: err is None, timeout=timeout, pause=0.5)
    if error is not None:
        raise ServiceError(
            f"{PG}: cannot log in as {target.user!r} to {target.dbname!r} at {target.host}:{target.port} "
            f"within {timeout:.0f}s: {error}. Log {layout.pg_log}"
        )


# --- State, up, down ---------------------------------------------------------------------------


def _our_pid(layout: Layout) -> int | None:
    return managed_pid(layout.pg_pidfile, str(layout.pg_data))


def postgres_state(settings: Settings, layout: Layout) -> ServiceState:
    target = parse_postgres_url(settings.database_url)
    shown = redact_url(settings.database_url)
    answers = accepts_tcp(target.host, target.port)
    pid = _our_pid(layout)
    if pid is not None:
        if answers:
            return ServiceState(PG, shown, True, True, f"ours, pid {pid}, data {layout.pg_data}; log {layout.pg_log}")
        return ServiceState(PG, shown, False, True, f"ours, pid {pid}, not accepting TCP connections; log {layout.pg_log}")
    if answers:
        return ServiceState(PG, shown, True, False, "external; left alone")
    return ServiceState(PG, shown, False, False, "not running")


def postgres_up(settings: Settings, layout: Layout) -> ServiceState:
    target = parse_postgres_url(settings.database_url)
    state = postgres_state(settings, layout)
    if state.running and not state.managed:
        return _external_state(target, state)
    if not state.managed and not is_local_host(target.host):
        raise ServiceError(
            f"{PG}: nothing answers at {target.host}:{target.port}, and only a local server (127.0.0.1) can be started"
        )
    user = service_user(create=True)
    check_reachable_by(user, layout.root)
    bindir = _installed_bindir()
    _prepare_folders(layout, user, target.port)
    _initdb(bindir, layout, user)
    if state.managed:
        _wait_ours_accepting(layout, target)
    else:
        _start(bindir, layout, user, target.port)
    _psql(bindir, layout, user, target.port, render_postgres_bootstrap_sql(target),
          what=f"create the role {target.user!r} and the databases {target.dbname!r}, {target.dagster_dbname!r}")
    _wait_login(target, layout, PG_START_TIMEOUT_S)
    return postgres_state(settings, layout)


def _external_state(target: PostgresTarget, state: ServiceState) -> ServiceState:
    """An external server is used as it is; the state says when the URL's login fails there."""
    error = _login_error(target)
    if error is None:
        return state
    log.warning("external PostgreSQL at %s:%d rejects the configured login: %s", target.host, target.port, error)
    return ServiceState(PG, state.url, True, False, f"external; left alone; login as {target.user!r} fails: {error}")


def _prepare_folders(layout: Layout, user: RunAs, port: int) -> None:
    socket_path = layout.pg_socket_dir / f".s.PGSQL.{port}"
    if len(str(socket_path).encode()) > UNIX_SOCKET_PATH_MAX:
        raise ServiceError(
            f"{PG}: the socket path {socket_path} is too long for a unix socket; use a shorter SEGMENTATION_STATE_DIR"
        )
    ensure_dir(layout.pg_dir, user)
    ensure_dir(layout.pg_log_dir, user)
    ensure_dir(layout.pg_socket_dir, user, mode=0o700)
    os.chmod(layout.pg_socket_dir, 0o700)


def _initdb(bindir: Path, layout: Layout, user: RunAs) -> None:
    """Create the cluster in pg_data unless one is there; it includes our settings file."""
    if (layout.pg_data / "PG_VERSION").is_file():
        return
    if layout.pg_data.exists() and any(layout.pg_data.iterdir()):
        raise ServiceError(f"{PG}: {layout.pg_data} exists, is not empty and holds no cluster; move it away and retry")
    log.info("initialising a PostgreSQL cluster in %s", layout.pg_data)
    layout.pg_data.mkdir(mode=0o700, exist_ok=True)
    os.chmod(layout.pg_data, 0o700)
    if user.via_runuser:
        os.chown(layout.pg_data, user.uid, user.gid)
    run_checked(
        user.wrap([str(bindir / "initdb"), "-D", str(layout.pg_data), "--username", user.name,
                   "--auth-local", "peer", "--auth-host", "scram-sha-256", "--encoding", "UTF8", "--no-locale"]),
        what=f"initdb {layout.pg_data}",
        service=PG,
        cwd=layout.pg_dir,
        env={**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
    )
    with (layout.pg_data / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# Settings of `segmentation services up`\ninclude_if_exists = '{PG_INCLUDE}'\n")


def _wait_ours_accepting(layout: Layout, target: PostgresTarget) -> None:
    """Our server already runs: wait for it to accept connections on the URL's port."""
    pid = _our_pid(layout)
    log.info("PostgreSQL is ours (pid %s); checking it", pid)
    accepting = poll_until(
        lambda: accepts_tcp(target.host, target.port),
        lambda ok: ok or not pid_alive(pid or -1, str(layout.pg_data)),
        timeout=PG_START_TIMEOUT_S,
    )
    if not accepting:
        raise ServiceError(
            f"{PG}: our server (pid {pid}, data {layout.pg_data}) runs but does not accept connections "
            f"at {target.host}:{target.port}; was the port changed? Run `segmentation services down`, "
            f"then `up`. Log {layout.pg_log}"
        )


def _start(bindir: Path, layout: Layout, user: RunAs, port: int) -> None:
    write_if_changed(layout.pg_data / PG_INCLUDE, render_postgres_conf(port=port, socket_dir=layout.pg_socket_dir),
                     user, mode=0o600)
    log.info("starting PostgreSQL (%s) on %s:%d", bindir.parent.name, BIND_HOST, port)
    started = time.monotonic()
    run_checked(
        user.wrap([str(bindir / "pg_ctl"), "-D", str(layout.pg_data), "-l", str(layout.pg_log),
                   "-w", "-t", str(int(PG_START_TIMEOUT_S)), "start"]),
        what="start the server (pg_ctl start)",
        service=PG,
        log_hint=layout.pg_log,
        cwd=layout.pg_dir,
        timeout=PG_START_TIMEOUT_S + 30,
    )
    log.info("PostgreSQL started in %.1fs", time.monotonic() - started)


def _psql(bindir: Path, layout: Layout, user: RunAs, port: int, sql: str, what: str) -> None:
    """Run `sql` as the cluster's superuser (the service user, over the unix socket)."""
    psql = bindir / "psql"
    if not psql.is_file():
        psql = Path(shutil.which("psql") or "psql")
    run_checked(
        user.wrap([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(layout.pg_socket_dir),
                   "-p", str(port), "-U", user.name, "-d", "postgres"]),
        what=what,
        service=PG,
        log_hint=layout.pg_log,
        input_text=sql,
        cwd=layout.pg_dir,
        timeout=PSQL_TIMEOUT_S,
    )


def postgres_down(settings: Settings, layout: Layout) -> ServiceState:
    pid = _our_pid(layout)
    if pid is not None:
        log.info("stopping PostgreSQL (pid %d)", pid)
        _stop(pid, layout)
    return postgres_state(settings, layout)


def _stop(pid: int, layout: Layout) -> None:
    """pg_ctl's fast shutdown; SIGTERM (PostgreSQL's smart shutdown) when its binaries are gone."""
    bindir = _newest_bindir()
    if bindir is None:
        terminate(pid, str(layout.pg_data), PG_STOP_TIMEOUT_S, PG)
        return
    run_checked(
        service_user(create=False).wrap(
            [str(bindir / "pg_ctl"), "-D", str(layout.pg_data), "-m", "fast", "-w", "-t", str(PG_STOP_TIMEOUT_S), "stop"]
        ),
        what="stop the server (pg_ctl stop -m fast)",
        service=PG,
        log_hint=layout.pg_log,
        cwd=layout.pg_dir,
        timeout=PG_STOP_TIMEOUT_S * 2,
    )
