"""The Dagster instance that `segmentation run` and the demo use: run and event storage in PostgreSQL."""

from __future__ import annotations

import os

import dagster as dg
from sqlalchemy.engine import make_url

from resources.settings import Settings
from segmentation_assets.conventions import PREVIEW_RUN_KIND, RUN_KIND_TAG

DAGSTER_DATABASE_URL_VARIABLE = "SEGMENTATION_DAGSTER_DATABASE_URL"

_DAGSTER_YAML = f"""\
# Written by `segmentation`; the URL comes from the environment so no password is stored here.
storage:
  postgres:
    postgres_url:
      env: {DAGSTER_DATABASE_URL_VARIABLE}
telemetry:
  enabled: false
# Previews (segmentation_assets/previews.py) run one at a time and queue behind each other; refresh
# runs are not limited by them. Runs are dequeued every 2 s rather than 5 s.
run_queue:
  tag_concurrency_limits:
    - key: {RUN_KIND_TAG}
      value: {PREVIEW_RUN_KIND}
      limit: 1
  dequeue_interval_seconds: 2
"""


def dagster_database_url(settings: Settings) -> str:
    """Beside the config store, in a database of its own: `<name>_dagster`."""
    url = make_url(settings.database_url)
    return url.set(drivername="postgresql+psycopg2", database=f"{url.database}_dagster", query={}).render_as_string(
        hide_password=False
    )


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    if not config_file.exists() or config_file.read_text() != _DAGSTER_YAML:
        config_file.write_text(_DAGSTER_YAML)
    os.environ.setdefault(DAGSTER_DATABASE_URL_VARIABLE, dagster_database_url(settings))
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.from_config(str(home))
