"""Where everything lives under `settings.state_dir`, and the lock that serialises `up` and `down`.

    downloads/                        the Elasticsearch zip, verified
    services.lock
    elasticsearch/{elasticsearch-<version>,data,logs,tmp}, elasticsearch.pid
    elasticsearch-cluster/<http port>/{config,data,logs,tmp}, elasticsearch.pid   the tests' cluster
    postgres/{data,log,run}           the pidfile is PostgreSQL's own data/postmaster.pid
    redis/                            redis.pid, redis.log, auth.conf
    redis-cluster/<port>/             a local Redis Cluster's nodes: redis.pid, redis.log, nodes.conf
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from resources.settings import Settings


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def lock_file(self) -> Path:
        return self.root / "services.lock"

    # Elasticsearch (its home, named after the release, is elasticsearch_install.es_home; the
    # folders of each node are elasticsearch.LocalNode's)
    @property
    def es_dir(self) -> Path:
        return self.root / "elasticsearch"

    @property
    def es_cluster_dir(self) -> Path:
        """One folder per node of the local Elasticsearch clusters, named after its HTTP port."""
        return self.root / "elasticsearch-cluster"

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

    @property
    def redis_cluster_dir(self) -> Path:
        """One folder per node of the local Redis Clusters, named after its port."""
        return self.root / "redis-cluster"


def layout_for(settings: Settings) -> Layout:
    return Layout(Path(settings.state_dir).expanduser().resolve())


@contextmanager
def state_lock(layout: Layout) -> Iterator[None]:
    """Serialises concurrent `services up/down` runs on the same state_dir."""
    layout.root.mkdir(parents=True, exist_ok=True)
    mode = layout.root.stat().st_mode
    if not mode & 0o001:  # the service user must be able to traverse it
        os.chmod(layout.root, (mode | 0o005) & 0o7777)
    with FileLock(layout.lock_file):
        yield
