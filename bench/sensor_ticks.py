"""For benchmarks that time the Dagster daemon's sensors: wait until a sensor has ticked once."""

from __future__ import annotations

import time

import httpx

SENSOR_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 1) { status timestamp } } }
  }
}
"""


def wait_for_first_tick(dagster_url: str, sensor_name: str, timeout: float) -> None:
    """Returns once the sensor of the `segmentation` code location has a tick; exits after `timeout`."""
    selector = {"repositoryLocationName": "segmentation", "repositoryName": "__repository__", "sensorName": sensor_name}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.post(f"{dagster_url}/graphql", json={"query": SENSOR_TICKS, "variables": {"selector": selector}}, timeout=10)
            sensor = response.json()["data"]["sensorOrError"]
            if sensor["__typename"] == "Sensor" and sensor["sensorState"]["ticks"]:
                return
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit(f"the {sensor_name} did not tick within {timeout:.0f} s at {dagster_url}")
