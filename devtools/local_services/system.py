"""The host: commands, apt packages, the unprivileged service user, and files it must own."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devtools.local_services.service import ServiceError

log = logging.getLogger(__name__)

ENV_SERVICE_USER = "SEGMENTATION_SERVICES_USER"
DEFAULT_SERVICE_USER = "segsvc"
COMMAND_OUTPUT_CHARS = 2000
LOG_TAIL_BYTES = 16384


@dataclass(frozen=True)
class RunAs:
    """Who the servers run as: an unprivileged user when we are root, else ourselves."""

    name: str
    uid: int
    gid: int
    via_runuser: bool

    def wrap(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.name, "--", *argv] if self.via_runuser else argv


def service_user(create: bool) -> RunAs:
    """Elasticsearch and PostgreSQL refuse to run as root, so root runs them as a system user
    (`$SEGMENTATION_SERVICES_USER`, default `segsvc`), created when missing if `create`."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, via_runuser=False)
    name = os.environ.get(ENV_SERVICE_USER, DEFAULT_SERVICE_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return RunAs(name, -1, -1, via_runuser=True)
        entry = _create_system_user(name)
    if entry.pw_uid == 0:
        raise ServiceError(
            f"services: {ENV_SERVICE_USER}={name!r} is root; Elasticsearch and PostgreSQL refuse to run as root"
        )
    return RunAs(name, entry.pw_uid, entry.pw_gid, via_runuser=True)


def _create_system_user(name: str) -> pwd.struct_passwd:
    log.info("creating system user %s for the local servers", name)
    run_checked(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        what=f"create the system user {name!r} (useradd)",
        service="services",
    )
    return pwd.getpwnam(name)


def run_checked(
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
    """Run a command to completion; any failure is a ServiceError saying `what` failed and why."""
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
        output = (proc.stderr.strip() or proc.stdout.strip())[-COMMAND_OUTPUT_CHARS:]
        hint = f"\nLog: {log_hint}" if log_hint else ""
        raise ServiceError(f"{service}: failed to {what} (exit code {proc.returncode}):\n{output}{hint}")
    return proc


def apt_install(package: str, service: str) -> None:
    if os.geteuid() != 0:
        raise ServiceError(
            f"{service}: {package} is not installed; install it (apt-get install -y {package}) or run as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", package)
    run_checked(["apt-get", "update"], what="run apt-get update", service=service, env=env)
    run_checked(["apt-get", "install", "-y", "--no-install-recommends", package],
                what=f"apt-get install {package}", service=service, env=env)


def ensure_dir(path: Path, user: RunAs | None, mode: int = 0o755) -> None:
    """Create `path` (and parents, owned by us); hand the leaf and its content to `user`."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if user is not None and user.via_runuser:
        st = path.stat()
        if (st.st_uid, st.st_gid) != (user.uid, user.gid):
            chown_tree(path, user)


def chown_tree(path: Path, user: RunAs) -> None:
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


def write_if_changed(path: Path, text: str, user: RunAs | None, mode: int = 0o644) -> bool:
    """Replace `path` atomically with `text` unless it already holds it; True when written."""
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


def check_reachable_by(user: RunAs, path: Path) -> None:
    """The service user must be able to traverse every ancestor of the state dir."""
    if not user.via_runuser:
        return
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if st.st_uid != user.uid and not st.st_mode & 0o001:
            raise ServiceError(
                f"services: {folder} is not searchable by the service user {user.name!r}; "
                f"chmod o+x {folder} or point SEGMENTATION_STATE_DIR elsewhere"
            )


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log (read from its last 16 KiB), or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])
