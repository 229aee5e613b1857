"""Shared fixtures: tiny generated data, a temporary STOREPULSE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# pytest-xdist already runs the tests side by side: one process per ad-ROI fit (the
# tests that check parallel fitting set n_jobs themselves).
os.environ.setdefault("STOREPULSE_AD_ROI_JOBS", "1")


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """A landing folder from `storepulse sample-data --scale tiny --seed 7` (with _truth/)."""
    from storepulse.sample_data import generate

    out = tmp_path_factory.mktemp("tiny") / "landing"
    generate(out, scale="tiny", seed=7, progress=False)
    return out


@pytest.fixture
def sp_home(tmp_path, monkeypatch) -> Path:
    """A fresh STOREPULSE_HOME for one test, with every path env var pointing into it."""
    home = tmp_path / "home"
    monkeypatch.setenv("STOREPULSE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in (
        "STOREPULSE_LANDING_DIR",
        "STOREPULSE_WAREHOUSE",
        "STOREPULSE_EXPORT_DIR",
        "STOREPULSE_REPORT_DIR",
        "STOREPULSE_AS_OF",
    ):
        monkeypatch.delenv(var, raising=False)
    return home
