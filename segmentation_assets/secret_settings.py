"""The settings that can hold a password (the PostgreSQL, Elasticsearch and Redis URLs) reach the
Dagster resources as `dg.EnvVar`s: Dagster resolves them from the environment of the process that
runs the step, when its resources start, and the UI (resource config, launchpad defaults, job
snapshots) shows only the variable's name.

A setting's own variable (`SEGMENTATION_DATABASE_URL`) is named when the environment holds exactly
the setting's value: a deployment sets it, and every Dagster process inherits it. Otherwise (a
default, or Settings made in code, as tests make one per namespace) the value is put in this
process's environment under a name of its own, `SEGMENTATION_DATABASE_URL_<8 hex>`, so that
Definitions built from other Settings in the same process never overwrite it. The hex come from the
value with its password masked (nothing about a password shows in a name); a value that differs
only in its password takes the next free suffix. A run's worker (`dagster api execute_run`)
imports definitions.py again, so it derives the same names from the same settings, and it inherits
its code server's environment besides.
"""

from __future__ import annotations

import hashlib
import os

import dagster as dg
from pydantic import SecretStr

from resources.json_logs import redact
from resources.settings import Settings


def secret_setting(settings: Settings, field: str) -> dg.EnvVar:
    """The `dg.EnvVar` that resolves to `settings.<field>` in this process and in the runs it starts."""
    variable = f"{settings.model_config.get('env_prefix', '')}{field}".upper()
    value = getattr(settings, field)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if os.environ.get(variable) == value:
        return dg.EnvVar(variable)
    digest = hashlib.sha256(redact(value).encode()).hexdigest()[:8]
    name, attempt = f"{variable}_{digest}", 0
    while os.environ.setdefault(name, value) != value:
        attempt += 1
        name = f"{variable}_{digest}_{attempt}"
    return dg.EnvVar(name)
