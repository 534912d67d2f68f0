"""Fast tests of the pieces of `devtools.local_services`; no server is started here."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import filelock
import pytest
import yaml

from devtools.local_services import ServiceError, ServiceState, processes, urls
from devtools.local_services import elasticsearch_install as install
from devtools.local_services.elasticsearch import render_elasticsearch_yml
from devtools.local_services.layout import Layout, state_lock
from devtools.local_services.postgres import (
    render_postgres_bootstrap_sql,
    render_postgres_conf,
)
from devtools.local_services.redis import _server_args
from devtools.local_services.redis_cluster import cluster_nodes, node_url


def test_service_state_is_frozen() -> None:
    state = ServiceState("Redis", "redis://127.0.0.1:6379/0", True, False, "external")
    with pytest.raises(AttributeError):
        state.running = False  # type: ignore[misc]


def test_parse_postgres_url_strips_the_driver() -> None:
    target = urls.parse_postgres_url("postgresql+psycopg2://segmentation:segmentation@127.0.0.1:5432/segmentation")
    assert target == urls.PostgresTarget("127.0.0.1", 5432, "segmentation", "segmentation", "segmentation")
    assert target.dagster_dbname == "segmentation_dagster"


def test_parse_postgres_url_defaults_port_and_unquotes() -> None:
    target = urls.parse_postgres_url("postgresql://app%40x:p%3Ass%2Fw@localhost/my%20db")
    assert (target.host, target.port, target.user, target.password, target.dbname) == (
        "localhost", 5432, "app@x", "p:ss/w", "my db",
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@127.0.0.1/db",
        "postgresql://127.0.0.1:5432/db",
        "postgresql://u:p@127.0.0.1:5432/",
        "postgresql://u:p@127.0.0.1:54x2/db",
        "postgresql://u:p@127.0.0.1:99999/db",
        "not a url",
    ],
)
def test_parse_postgres_url_rejects_incomplete_urls(url: str) -> None:
    with pytest.raises(ServiceError, match="PostgreSQL"):
        urls.parse_postgres_url(url)


def test_parse_elasticsearch_and_redis_urls() -> None:
    es = urls.parse_elasticsearch_url("http://127.0.0.1")
    assert (es.scheme, es.host, es.port) == ("http", "127.0.0.1", 9200)
    rd = urls.parse_redis_url("redis://:s3cret@127.0.0.1:6380/2")
    assert (rd.host, rd.port, rd.password) == ("127.0.0.1", 6380, "s3cret")
    with pytest.raises(ServiceError, match="Redis"):
        urls.parse_redis_url("http://127.0.0.1:6379")


def test_a_local_cluster_is_three_nodes_on_the_urls_port_and_the_two_after_it(tmp_path: Path) -> None:
    assert node_url("redis://:s3cret@127.0.0.1:7379/0", 7381) == "redis://:s3cret@127.0.0.1:7381/0"
    nodes = cluster_nodes("redis://127.0.0.1:7379/0", Layout(tmp_path), label="Redis Cluster", evicting=True)
    assert [n.url for n in nodes] == [f"redis://127.0.0.1:{p}/0" for p in (7379, 7380, 7381)]
    assert [n.dir for n in nodes] == [tmp_path / "redis-cluster" / str(p) for p in (7379, 7380, 7381)]
    args = _server_args(7380, nodes[1])
    assert args[args.index("--cluster-enabled") + 1] == "yes" and "--cluster-config-file" in args
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"  # the cache's, on every node
    single = _server_args(6379, nodes[0].__class__("Redis", "redis://127.0.0.1:6379/0", tmp_path, evicting=True))
    assert "--cluster-enabled" not in single


def test_redact_url_hides_only_the_password() -> None:
    assert urls.redact_url("postgresql+psycopg2://u:pw@h:5432/db") == "postgresql+psycopg2://u:***@h:5432/db"
    assert urls.redact_url("http://127.0.0.1:9200") == "http://127.0.0.1:9200"


def test_render_elasticsearch_yml(tmp_path: Path) -> None:
    text = render_elasticsearch_yml(
        http_port=9201, data_dir=tmp_path / "da ta", logs_dir=tmp_path / "logs", geoip_downloader_setting=False
    )
    config = yaml.safe_load(text)
    assert config["network.host"] == "127.0.0.1"
    assert config["http.port"] == 9201
    assert config["discovery.type"] == "single-node"
    assert config["xpack.security.enabled"] is False
    assert config["path.data"] == str(tmp_path / "da ta")
    assert config["path.logs"] == str(tmp_path / "logs")
    assert config["cluster.routing.allocation.disk.threshold_enabled"] is False
    assert config["indices.merge.disk.check_interval"] == "0"
    assert config["action.destructive_requires_name"] is False
    # The integ-test distribution has no ingest-geoip module and refuses the setting.
    assert "ingest.geoip.downloader.enabled" not in config

    with_geoip = yaml.safe_load(
        render_elasticsearch_yml(http_port=9200, data_dir=tmp_path, logs_dir=tmp_path, geoip_downloader_setting=True)
    )
    assert with_geoip["ingest.geoip.downloader.enabled"] is False


def test_verify_sha512_accepts_the_right_digest(tmp_path: Path) -> None:
    path = tmp_path / "dist.zip"
    path.write_bytes(b"distribution")
    install.verify_sha512(path, hashlib.sha512(b"distribution").hexdigest().upper())


def test_verify_sha512_mismatch_names_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "dist.zip"
    path.write_bytes(b"tampered")
    actual = hashlib.sha512(b"tampered").hexdigest()
    with pytest.raises(ServiceError) as excinfo:
        install.verify_sha512(path, install.ES_ZIP_SHA512)
    message = str(excinfo.value)
    assert install.ES_ZIP_SHA512 in message
    assert actual in message
    assert str(path) in message


def test_postgres_bootstrap_sql_quotes_names_and_password() -> None:
    target = urls.PostgresTarget("127.0.0.1", 5432, 'we"ird', "it's", "db'x")
    sql = render_postgres_bootstrap_sql(target)
    assert "ALTER ROLE \"we\"\"ird\" LOGIN PASSWORD 'it''s';" in sql
    assert "datname = 'db''x'" in sql
    assert "datname = 'db''x_dagster'" in sql
    assert sql.count("\\gexec") == 3


def test_postgres_conf_listens_on_loopback_only(tmp_path: Path) -> None:
    conf = render_postgres_conf(port=5433, socket_dir=tmp_path / "run")
    assert "listen_addresses = '127.0.0.1'" in conf
    assert "port = 5433" in conf
    assert f"unix_socket_directories = '{tmp_path / 'run'}'" in conf


def _fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return home


def test_choose_java_home_prefers_21_plus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(install.ENV_ES_JAVA_HOME, raising=False)
    _fake_jdk(tmp_path, "java-17", "17.0.15")
    jdk21 = _fake_jdk(tmp_path, "java-21", "21.0.2")
    _fake_jdk(tmp_path, "java-11", "11.0.1")
    assert install.choose_java_home(tmp_path) == (jdk21, 21)


def test_choose_java_home_falls_back_to_17_and_honours_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(install.ENV_ES_JAVA_HOME, raising=False)
    jdk17 = _fake_jdk(tmp_path, "java-17", "17.0.15")
    assert install.choose_java_home(tmp_path) == (jdk17, 17)
    other = _fake_jdk(tmp_path / "elsewhere", "jdk", "24.0.1")
    monkeypatch.setenv(install.ENV_ES_JAVA_HOME, str(other))
    assert install.choose_java_home(tmp_path) == (other, 24)
    monkeypatch.setenv(install.ENV_ES_JAVA_HOME, str(tmp_path / "missing"))
    with pytest.raises(ServiceError, match=install.ENV_ES_JAVA_HOME):
        install.choose_java_home(tmp_path)


def test_choose_java_home_without_a_jdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(install.ENV_ES_JAVA_HOME, raising=False)
    _fake_jdk(tmp_path, "java-11", "11.0.1")
    with pytest.raises(ServiceError, match="no JDK 17"):
        install.choose_java_home(tmp_path)


def test_extract_zip_keeps_modes_and_is_atomic(tmp_path: Path) -> None:
    archive = tmp_path / "es.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        script = zipfile.ZipInfo("es-1/bin/elasticsearch")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(script, "#!/bin/sh\n")
        zf.writestr("es-1/config/elasticsearch.yml", "# empty\n")
    install.extract_zip(archive, tmp_path / "out", "es-1")
    binary = tmp_path / "out" / "es-1" / "bin" / "elasticsearch"
    assert os.access(binary, os.X_OK)
    assert (tmp_path / "out" / "es-1" / "config" / "elasticsearch.yml").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["es-1"]


def test_extract_zip_refuses_path_traversal(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("es-1/../../escaped.txt", "x")
    with pytest.raises(ServiceError, match="outside"):
        install.extract_zip(archive, tmp_path / "out", "es-1")
    assert not (tmp_path / "escaped.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the staging folder is cleaned up


def test_pidfile_helpers(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    own_marker = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()
    assert processes.managed_pid(pidfile, own_marker) is None
    pidfile.write_text(f"{os.getpid()}\n/some/data\n")
    assert processes.read_pid(pidfile) == os.getpid()
    assert processes.managed_pid(pidfile, own_marker) == os.getpid()
    assert processes.managed_pid(pidfile, "certainly-not-in-our-cmdline-xyz") is None
    pidfile.write_text("garbage\n")
    assert processes.read_pid(pidfile) is None


def test_poll_until_returns_once_the_condition_holds() -> None:
    calls = iter(range(100))
    assert processes.poll_until(lambda: next(calls), lambda n: n >= 3, timeout=10, pause=0) == 3


def test_poll_until_returns_the_last_result_at_the_timeout() -> None:
    calls: list[int] = []

    def probe() -> int:
        calls.append(1)
        return len(calls)

    last = processes.poll_until(probe, lambda n: False, timeout=0.3, pause=0.05)
    assert last == len(calls) > 1


def test_poll_until_stops_at_the_first_exception() -> None:
    calls: list[int] = []

    def probe() -> int:
        calls.append(1)
        raise ServiceError("Test: the process exited")

    with pytest.raises(ServiceError, match="exited"):
        processes.poll_until(probe, lambda n: False, timeout=10, pause=0)
    assert len(calls) == 1


def _default_signals() -> None:
    # In the child, before exec: SIGTERM as a fresh process has it. A session's earlier tests can
    # leave it ignored or blocked in this process, and a child inherits both (seen in CI).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _python_child(code: str) -> subprocess.Popen[str]:
    """A Python child that prints `ready` once `code` has run, then sleeps; its marker is the code."""
    child = subprocess.Popen([sys.executable, "-c", f"{code}; print('ready', flush=True); import time; time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def test_terminate_takes_an_unreaped_zombie_for_gone() -> None:
    # Our daemons are reparented to PID 1, which may never reap them.
    child = _python_child("marker_sigterm_test = 1")
    try:
        started = time.monotonic()
        # Were a zombie taken for alive, this would wait 10s, SIGKILL, and fail: it would survive that too.
        processes.terminate(child.pid, "marker_sigterm_test", timeout=10, service="Test")
        assert time.monotonic() - started < 5
        assert not processes.pid_alive(child.pid, "marker_sigterm_test")
        # Reaped only now, by us. (A process in the midst of exiting counts as gone already.)
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


def test_terminate_kills_what_ignores_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    child = _python_child("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    try:
        processes.terminate(child.pid, "SIG_IGN", timeout=0.5, service="Test")
        assert child.wait(timeout=5) == -signal.SIGKILL
        assert "sending SIGKILL" in caplog.text
    finally:
        child.kill()
        child.wait()


def test_pid_alive_refuses_pids_that_name_no_process() -> None:
    own_marker = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()
    assert processes.pid_alive(os.getpid(), own_marker)
    assert not processes.pid_alive(-1, own_marker)
    assert not processes.pid_alive(0, own_marker)


def test_state_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "state")
    with state_lock(layout), pytest.raises(filelock.Timeout):
        filelock.FileLock(layout.lock_file, timeout=0).acquire()
    with filelock.FileLock(layout.lock_file, timeout=0):
        pass
    assert (tmp_path / "state").stat().st_mode & 0o005 == 0o005  # the service user can traverse it
