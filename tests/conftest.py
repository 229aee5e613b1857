"""Shared fixtures: tiny generated data, a temporary STOREPULSE_HOME."""

from __future__ import annotations

import os
from collections.abc import Callable
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


def _temporary_files_in_memory(shm: str = "/dev/shm", needed: int = 4 << 30) -> None:
    """Test homes (warehouses, Dagster instances, exports) under /dev/shm when it is a
    writable memory file system with room to spare: the tests write a few hundred MB
    they throw away, and on a shared disk every fsync of theirs (DuckDB's checkpoints,
    the Dagster instances of `make ui` and of the CLI processes) waits behind the other
    writers' data. A PYTEST_DEBUG_TEMPROOT or --basetemp of your own wins; so does the
    default (the system's temporary folder) where /dev/shm is small, as in containers."""
    import shutil

    if "PYTEST_DEBUG_TEMPROOT" in os.environ:
        return
    try:
        free = shutil.disk_usage(shm).free
    except OSError:
        return
    if free >= needed and os.access(shm, os.W_OK):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = shm


_temporary_files_in_memory()


# The modules that take longest (pytest --durations on the 2-core machine, issue #15),
# longest first. With --dist loadfile a module is one unit of work that one worker runs
# start to end; xdist hands units out in collection order (by default it first sorts
# them by their number of tests, which put these, with 1-5 tests each, last, so the
# run ended with one worker on a 60 s module while the other idled). They go first
# here, the rest keep their order behind them.
LONGEST_FIRST = (
    "test_thin_stores.py",
    "test_ui_e2e.py",
    "test_ad_roi_assets.py",
    "test_ad_roi.py",
    "test_thin_store_alone.py",
    "test_lake.py",
    "test_slice.py",
    "test_ingest_kinds.py",
    "test_lifecycle_models.py",
    "test_churn_real.py",
    "test_ingest_direct.py",
    "test_customer_assets.py",
    "test_demand_assets.py",
)


def pytest_configure(config):
    # Keep the order pytest_collection_modifyitems gives (xdist's --no-loadscope-reorder).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: ties keep order


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


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(path)` once per test session, shared by the pytest-xdist workers: each
    worker runs the session fixtures again, so the first one builds under a file lock
    in the session's temporary folder (pytest-N/, the parent of the workers' own) and
    the others wait for it and use what it built. The result is read-only by contract:
    copy it before changing anything."""
    import fcntl
    import shutil

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "built-once"
    root.mkdir(exist_ok=True)
    target, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)  # left by a worker that died
            build(target)
            done.touch()
    return target


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """A landing folder from `storepulse sample-data --scale tiny --seed 7` (with _truth/).
    Shared by every test of the session: read it, never write into it."""
    from storepulse.sample_data import generate

    def build(root: Path) -> None:
        generate(root / "landing", scale="tiny", seed=7, progress=False)

    return built_once(tmp_path_factory, "tiny", build) / "landing"


@pytest.fixture(scope="session")
def tiny_warehouse(tiny_sample, tmp_path_factory) -> Path:
    """warehouse.duckdb with `tiny_sample` ingested (its _truth/ is never read), built
    once per session: ~1 s of ingest that about twenty fixtures would otherwise repeat.
    Copy it (homes.copy_warehouse) into a test's own home; never open it in place. The
    file's rows name landing files relative to the landing folder, so a copy fits any
    home whose landing/ is a copy of tiny_sample."""
    from storepulse.ingest import ingest_landing
    from storepulse.warehouse import Warehouse

    def build(root: Path) -> None:
        with Warehouse(root / "warehouse.duckdb").writer() as con:
            ingest_landing(con, tiny_sample)

    return built_once(tmp_path_factory, "tiny-warehouse", build) / "warehouse.duckdb"


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
