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


def _dagster_sqlite_without_fsync() -> None:
    """Dagster's SQLite run and event-log storage (the instance under DAGSTER_HOME)
    commits every event with an fsync: ~2,000 of them for one slice run, each 1-30 ms
    on a busy disk. A test instance is thrown away, so its durability is worth
    nothing: `synchronous=OFF` on every SQLite connection of this process. (Processes
    the tests start, `make ui` and the CLI, keep the default.)"""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _no_fsync(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()


_dagster_sqlite_without_fsync()


def pytest_collection_finish(session):
    """Collecting imported Dagster, DuckDB, polars, LightGBM and the code location:
    ~250,000 long-lived objects that every full garbage collection walks again (the
    nightly scoring step collects after training, ~0.3 s each in a test process, and
    Python's own generation-2 passes add as much). Collect once, then move what is
    alive into the permanent generation: later collections walk only what the tests
    create (measured on test_lake/customer_assets/demand_assets: 3.75 s -> 1.94 s)."""
    import gc

    gc.collect()
    gc.freeze()


def pytest_unconfigure(config):
    """Back into the collector's reach for the interpreter's shutdown: objects still
    frozen then are never freed, and DuckDB's bindings (nanobind) report each as leaked."""
    import gc

    gc.unfreeze()


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
