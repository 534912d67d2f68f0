"""`segmentation services up|down|status`: the local Elasticsearch, PostgreSQL and Redis.

* Idempotent. Whatever already answers at the configured URL (``elasticsearch_url``,
  ``database_url``, ``redis_url``) is used as it is, reported as *external* and never stopped.
  ``down`` stops only what we started, recognised by a pidfile under ``settings.state_dir``.
* What we start binds to 127.0.0.1 on the port of the configured URL. Data and logs live under
  ``state_dir`` (see :mod:`.layout`); downloads are cached in ``state_dir/downloads`` (the Maven
  download itself lands in ``~/.m2``).
* Elasticsearch and PostgreSQL refuse to run as root, so when we are root every server runs as an
  unprivileged system user (``segsvc``, created when missing; override with
  ``SEGMENTATION_SERVICES_USER``) through ``runuser``. When we are not root, they run as ourselves.
* Every failure is a :class:`ServiceError` whose message names the service, what failed and
  where its log is. URLs in messages and states have their password redacted.

The three public functions log progress (``logging``, loggers under ``devtools.local_services``)
and print nothing; the caller renders the returned :class:`ServiceState` list.
"""

from __future__ import annotations

from collections.abc import Callable

from devtools.local_services.elasticsearch import (
    elasticsearch_down,
    elasticsearch_state,
    elasticsearch_up,
)
from devtools.local_services.layout import Layout, layout_for, state_lock
from devtools.local_services.postgres import postgres_down, postgres_state, postgres_up
from devtools.local_services.redis import (
    coordination_down,
    coordination_state,
    coordination_up,
    redis_down,
    redis_state,
    redis_up,
)
from devtools.local_services.service import ServiceError, ServiceState
from resources.settings import Settings

__all__ = [
    "ServiceError",
    "ServiceState",
    "services_down",
    "services_status",
    "services_up",
]

Step = Callable[[Settings, Layout], ServiceState | None]  # None: nothing to manage for these settings


def _run_each(steps: list[Step], settings: Settings, layout: Layout) -> list[ServiceState]:
    """Every step runs even when an earlier one fails; their errors are raised together."""
    errors: list[str] = []
    states: list[ServiceState] = []
    for step in steps:
        try:
            state = step(settings, layout)
            if state is not None:
                states.append(state)
        except ServiceError as exc:
            errors.append(str(exc))
    if errors:
        raise ServiceError("\n".join(errors))
    return states


def services_up(settings: Settings) -> list[ServiceState]:
    """Install where missing and start Elasticsearch, PostgreSQL and Redis; reuse what already answers."""
    layout = layout_for(settings)
    with state_lock(layout):
        # The quick ones first, so that a slow or failing Elasticsearch still leaves them usable.
        postgres, redis, *coordination, elasticsearch = _run_each(
            [postgres_up, redis_up, coordination_up, elasticsearch_up], settings, layout
        )
    return [elasticsearch, postgres, redis, *coordination]


def services_down(settings: Settings) -> list[ServiceState]:
    """Stop what `services_up` started (pidfiles under state_dir); leave everything else alone."""
    layout = layout_for(settings)
    with state_lock(layout):
        return _run_each([elasticsearch_down, postgres_down, redis_down, coordination_down], settings, layout)


def services_status(settings: Settings) -> list[ServiceState]:
    """Reachability of each configured URL, and whether we started what answers there."""
    layout = layout_for(settings)
    return _run_each([elasticsearch_state, postgres_state, redis_state, coordination_state], settings, layout)
