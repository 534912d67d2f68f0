"""The house stays in floors: import-linter's contracts (pyproject.toml), and what an API worker
really loads, which the contracts can only approximate (the segment types import Spark lazily)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_every_import_contract_is_kept() -> None:
    run = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return set(json.loads(run.stdout.strip().splitlines()[-1]))


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_an_api_worker_loads_no_spark_dagster_nor_publishing() -> None:
    loaded = _modules_after("from api.main import create_app\napp = create_app()\napp.openapi()")
    assert not _roots(loaded) & {"pyspark", "dagster", "pandas", "boto3"}
    assert not {m for m in loaded if m.startswith(("resources.publishing", "segmentation_assets.core.raw_data"))}
    # Arrow and numpy arrive only with the Elasticsearch client (its optional Arrow serializer
    # imports them when installed): the API's own code adds no module of theirs.
    client_alone = _modules_after("import elasticsearch")
    added = loaded - client_alone
    assert not _roots(added) & {"pyarrow", "numpy"}


def test_the_check_would_see_a_heavy_import() -> None:
    # The same probe on the publisher side does find what the API must not load.
    loaded = _modules_after("import resources.publishing.results_reader")
    assert {"pyarrow", "numpy"} <= _roots(loaded)
