"""The tests' own Elasticsearch cluster of two nodes (devtools/local_services/elasticsearch_cluster.py):
HTTP on this port and the one after it, transport on each + 100; started by the first session that
asks for it (`elasticsearch_cluster` in tests/conftest.py) and left running, as the other servers
are (`segmentation services down` stops it)."""

from __future__ import annotations

from elasticsearch import Elasticsearch
from sqlalchemy import text
from sqlalchemy.engine import Engine

from resources.settings import Settings, elasticsearch_hosts
from tests import namespaces

TEST_ES_CLUSTER_PORT = 9250


def cluster_client(settings: Settings) -> Elasticsearch:
    """A client of every node that `settings.elasticsearch_url` lists."""
    return Elasticsearch(elasticsearch_hosts(settings.elasticsearch_url), request_timeout=60)


def remove_orphan_indices(es: Elasticsearch, admin_engine: Engine) -> list[str]:
    """Deletes the test indices whose namespace is gone (a killed session's); answers their names.
    The session-end cleanup of namespaces only knows the single node."""
    with admin_engine.connect() as connection:
        schemas = set(connection.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'")).scalars())
    found = es.indices.get(index=f"{namespaces.index_prefix('*')}-*", allow_no_indices=True, expand_wildcards="all")
    orphans = [name for name in found if namespaces.schema_name(name.split("-")[1]) not in schemas]
    if orphans:
        es.options(ignore_status=404).indices.delete(index=",".join(orphans))
    return orphans
