"""`segmentation ui`: the Dagster webserver and daemon (`dagster dev`) on the project's instance,
with what they need set, so that the UI shows the runs `segmentation run` and the demo made.

The instance's `dagster.yaml` is written under `SEGMENTATION_DAGSTER_HOME`, and the run storage's
URL (`SEGMENTATION_DAGSTER_DATABASE_URL`, by default the config store's database with `_dagster`
after its name) is put in the environment the webserver, the daemon and the code server inherit.
The code location is `segmentation` (workspace.yaml), loaded from `definitions.py`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from resources.settings import PROJECT_ROOT, Settings
from segmentation_assets.instance import dagster_instance

WORKSPACE = PROJECT_ROOT / "workspace.yaml"


def ui_command(host: str, port: int) -> list[str]:
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    return [dagster, "dev", "--workspace", str(WORKSPACE), "--host", host, "--port", str(port), "--log-format", "json"]


def serve_ui(settings: Settings, host: str, port: int) -> None:
    """Replaces this process with `dagster dev`: its signals (Ctrl-C, SIGTERM) stop it directly."""
    dagster_instance(settings)  # writes dagster.yaml; sets DAGSTER_HOME and the run storage's URL
    os.chdir(PROJECT_ROOT)  # definitions.py is loaded from here
    command = ui_command(host, port)
    os.execvp(command[0], command)
