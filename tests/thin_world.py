"""Stores as real merchants have them (issue #12), for tests/test_thin_stores.py and
tests/test_thin_store_alone.py (no tests here): a 75-day store with ~300 orders, a
~40-customer store, a store advertising on one channel and a store that ships orders
only, beside the tiny sample's two stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storepulse.sample_data import generate
from storepulse.sample_data.generator import ThinStore
from storepulse.warehouse import Warehouse, query

THIN = (
    ThinStore("young-gb", "Young Shop", "GB", "baby", customers=240, days=75,
              channels=("meta", "google")),
    ThinStore("forty-us", "Forty Pets", "US", "pets", customers=28, channels=("meta",)),
    ThinStore("solo-au", "Solo Paws", "AU", "pets", customers=900, channels=("google",)),
    ThinStore("plain-my", "Plain Beauty", "MY", "beauty", customers=600, orders_only=True),
)  # fmt: skip
STEPS = ("churn", "clv", "demand", "ad_roi", "publish")


def thin_landing(tmp_path_factory) -> Path:
    """The landing folder: the tiny sample (seed 11) with the THIN stores, no _truth/."""
    out = tmp_path_factory.mktemp("thin") / "landing"
    generate(out, scale="tiny", seed=11, progress=False, thin_stores=THIN)
    shutil.rmtree(out / "_truth")
    return out


def use_home(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("STOREPULSE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in ("STOREPULSE_LANDING_DIR", "STOREPULSE_WAREHOUSE", "STOREPULSE_EXPORT_DIR",
                "STOREPULSE_REPORT_DIR", "STOREPULSE_AS_OF"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)


def nightly(home: Path):
    """`storepulse run` in-process (storepulse.runner.run_nightly) against `home`."""
    from storepulse.runner import run_nightly

    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, home)
        return run_nightly()


def statuses(home: Path) -> dict[tuple[str, str], tuple[str, str | None, str]]:
    with Warehouse(home / "warehouse.duckdb").reader() as con:
        rows = query(con, "select store_id, step, status, method, message from ops.store_status")
    return {(s, step): (status, method, msg) for s, step, status, method, msg in rows.iter_rows()}
