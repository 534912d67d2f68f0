"""Dependencies: a production install (requirements.lock) brings no test tool, and every package
that the code imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ["api", "cli", "devtools", "resources", "segmentation_assets"]
TEST_TOOLS = {"pytest", "pytest-timeout", "moto", "hypothesis", "schemathesis", "import-linter", "cfn-lint", "flask"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(group: str | None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {_normalized(re.split(r"[<>=\[ ;]", r, maxsplit=1)[0]) for r in requirements}


def _imported_roots(folders: list[Path]) -> set[str]:
    own = {*RUNTIME_PACKAGES, "definitions", "tests", "bench"}
    roots = set()
    for folder in folders:
        for path in folder.rglob("*.py") if folder.is_dir() else [folder]:
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                roots |= {n.split(".")[0] for n in names}
    return {r for r in roots if r not in sys.stdlib_module_names and r not in own}


def _distributions(roots: set[str]) -> dict[str, set[str]]:
    by_module = packages_distributions()
    return {root: {_normalized(d) for d in by_module.get(root, [root])} for root in roots}


def test_the_runtime_lock_holds_no_test_tool() -> None:
    pinned = {_normalized(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    assert pinned, "requirements.lock pins nothing"
    assert not pinned & TEST_TOOLS
    assert TEST_TOOLS - {"cfn-lint", "flask"} <= {
        _normalized(line.split("==")[0]) for line in (ROOT / "requirements-dev.lock").read_text().splitlines() if "==" in line
    }


def test_every_package_the_runtime_imports_is_a_runtime_dependency() -> None:
    roots = _imported_roots([ROOT / p for p in RUNTIME_PACKAGES] + [ROOT / "definitions.py"])
    declared = _declared(None)
    undeclared = {root: dists for root, dists in _distributions(roots).items() if not dists & declared}
    assert not undeclared


def test_every_package_the_tests_import_is_declared() -> None:
    roots = _imported_roots([ROOT / "tests", ROOT / "bench"])
    declared = _declared(None) | _declared("dev")
    undeclared = {root: dists for root, dists in _distributions(roots).items() if not dists & declared}
    assert not undeclared
