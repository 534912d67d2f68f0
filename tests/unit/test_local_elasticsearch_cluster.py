"""The tests' local Elasticsearch cluster, without starting it: each node's ports, folders,
config and process marker."""

from __future__ import annotations

from pathlib import Path

import yaml

from devtools.local_services import urls
from devtools.local_services.elasticsearch import Discovery, render_elasticsearch_yml, single_node
from devtools.local_services.elasticsearch_cluster import (
    cluster_nodes,
    cluster_urls,
    local_clusters_down,
)
from devtools.local_services.layout import Layout
from resources.settings import Settings


def test_a_cluster_node_finds_the_others_and_keeps_the_single_nodes_settings(tmp_path: Path) -> None:
    discovery = Discovery(9350, (9350, 9351), ("n-9250", "n-9251"))
    config = yaml.safe_load(
        render_elasticsearch_yml(http_port=9250, data_dir=tmp_path / "data", logs_dir=tmp_path / "logs",
                                 geoip_downloader_setting=False, cluster_name="c", node_name="n-9250", discovery=discovery)
    )
    assert "discovery.type" not in config
    assert (config["cluster.name"], config["node.name"]) == ("c", "n-9250")
    assert (config["http.port"], config["transport.port"]) == (9250, 9350)
    assert config["discovery.seed_hosts"] == ["127.0.0.1:9350", "127.0.0.1:9351"]
    assert config["cluster.initial_master_nodes"] == ["n-9250", "n-9251"]
    single = yaml.safe_load(
        render_elasticsearch_yml(http_port=9200, data_dir=tmp_path, logs_dir=tmp_path, geoip_downloader_setting=False)
    )
    own = {"cluster.name", "node.name", "http.port", "discovery.type", "path.data", "path.logs"}
    shared = {k: v for k, v in single.items() if k not in own}
    assert shared.items() <= config.items()  # security off, disk threshold and merge checks as the single node's

    rejoining = yaml.safe_load(
        render_elasticsearch_yml(http_port=9250, data_dir=tmp_path, logs_dir=tmp_path, geoip_downloader_setting=False,
                                 discovery=Discovery(9350, (9350, 9351)))
    )
    assert "cluster.initial_master_nodes" not in rejoining


def test_two_nodes_on_the_port_and_the_next_each_with_its_own_folders(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    first, second = cluster_nodes(9250, layout)
    assert (first.http_port, second.http_port) == (9250, 9251)
    assert (first.discovery.transport_port, second.discovery.transport_port) == (9350, 9351)  # type: ignore[union-attr]
    assert first.discovery.seed_ports == second.discovery.seed_ports == (9350, 9351)  # type: ignore[union-attr]
    assert first.dir == tmp_path / "elasticsearch-cluster" / "9250" and first.conf_dir == first.dir / "config"
    assert first.data != second.data and first.logs != second.logs and first.pidfile != second.pidfile
    assert first.heap == second.heap == "256m"
    assert cluster_urls(9250) == "http://127.0.0.1:9250,http://127.0.0.1:9251"

    # Every node runs from the same Elasticsearch home: each is told apart by its own tmp folder.
    only = single_node(Settings(state_dir=tmp_path), layout)
    markers = [only.marker, first.marker, second.marker]
    assert all(m not in n for m in markers for n in markers if m != n)


def test_the_cluster_bootstraps_only_while_no_node_has_data(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert all(n.discovery.initial_master_nodes == ("segmentation-cluster-9250", "segmentation-cluster-9251")  # type: ignore[union-attr]
               for n in cluster_nodes(9250, layout))
    data = layout.es_cluster_dir / "9251" / "data"
    data.mkdir(parents=True)
    (data / "_state").mkdir()
    assert all(n.discovery.initial_master_nodes == () for n in cluster_nodes(9250, layout))  # type: ignore[union-attr]


def test_down_with_no_cluster_folder_or_nothing_running_reports_nothing(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert local_clusters_down(layout) is None
    (layout.es_cluster_dir / "9250").mkdir(parents=True)
    (layout.es_cluster_dir / "9250" / "elasticsearch.pid").write_text("1\n")  # pid 1 is not a node of ours
    assert local_clusters_down(layout) is None


def test_several_elasticsearch_urls_are_each_redacted() -> None:
    assert urls.redact_url("https://u:pw@a:9200,https://u:pw@b:9200") == "https://u:***@a:9200,https://u:***@b:9200"
    assert urls.redact_url("http://127.0.0.1:9250,http://127.0.0.1:9251") == "http://127.0.0.1:9250,http://127.0.0.1:9251"
