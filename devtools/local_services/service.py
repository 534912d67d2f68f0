"""What each server's `up`, `down` and `status` return, and the one error they raise."""

from __future__ import annotations

from dataclasses import dataclass


class ServiceError(Exception):
    """A local service could not be installed, started, reached or stopped.

    Its message names the service, what failed and where the service's log is.
    """


@dataclass(frozen=True)
class ServiceState:
    name: str
    url: str  # password redacted
    running: bool
    managed: bool  # started by us (pidfile under state_dir), vs. something external
    detail: str
