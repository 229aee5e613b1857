"""The layers of docs/architecture.md are a contract import-linter enforces
(pyproject.toml, [tool.importlinter]); `make test` runs `lint-imports` too. Here:
it holds on this tree, and it would fail on a planted violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip


def copy_tree(target: Path) -> Path:
    for package in ("models", "storepulse", "pipelines"):
        shutil.copytree(REPO / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.html", "*.md"))  # fmt: skip
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_layers_hold():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_a_model_importing_the_library_breaks_the_contract(tmp_path):
    root = copy_tree(tmp_path)
    with open(root / "models" / "rfm.py", "a") as fh:
        fh.write("\nfrom storepulse.warehouse import query  # planted\n")
    done = lint(root)
    assert done.returncode == 1
    assert "models/ is pure: no Dagster, no storepulse, no pipelines BROKEN" in done.stdout
    assert "models.rfm -> storepulse.warehouse" in done.stdout


def test_the_library_importing_the_code_location_breaks_the_contract(tmp_path):
    root = copy_tree(tmp_path)
    with open(root / "storepulse" / "publish" / "report.py", "a") as fh:
        fh.write("\nimport pipelines.definitions  # planted\n")
    done = lint(root)
    assert done.returncode == 1
    assert "the library does not import the code location" in done.stdout
    assert "BROKEN" in done.stdout
