"""Per-store scoring runs into the lake (pipelines/assets/lake.py, storepulse/lake.py) on
the tiny sample: the same rows as the nightly all-stores assets (order risk, RFM, CLV and
churn), a store that fails
leaves the others' and its own previous rows, kill -9 in the middle of a store's write
leaves its previous file, and two per-store runs in two processes side by side."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from homes import ingested_home
from polars.testing import assert_frame_equal

from models import order_risk as risk_model
from pipelines.assets import churn, order_risk, segments
from pipelines.assets import lake as lake_assets
from pipelines.resources import RunSettings, StorepulseResource
from storepulse import lake
from storepulse import warehouse as warehouse_module
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query

RESOURCES = {"storepulse": StorepulseResource(), "run_settings": RunSettings()}
LOOKBACK = {"lookback_days": 400}


def _config(key: str, **config) -> dict:
    return {"ops": {key: {"config": {**LOOKBACK, **config}}}}


@pytest.fixture(scope="module")
def home(tiny_sample, tiny_warehouse, tmp_path_factory):
    """The tiny sample ingested, nightly order risk scored in one process."""
    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("lake") / "home"
    paths = ingested_home(tiny_sample, home, patch, warehouse=tiny_warehouse)
    dg.materialize(
        [order_risk.order_risk, segments.customer_rfm, churn.clv_scores, churn.churn_scores],
        resources=RESOURCES, run_config=_config("scores__order_risk"),
    )  # fmt: skip
    yield paths
    patch.undo()


def _table(paths: Paths, sql: str) -> pl.DataFrame:
    with Warehouse(paths.warehouse).reader() as con:
        return query(con, sql)


def _stores(paths: Paths) -> list[str]:
    return _table(paths, "select distinct store_id from scores.order_risk order by 1")[
        "store_id"
    ].to_list()


GROWTH = [lake_assets.store_order_risk, lake_assets.store_customer_rfm]
EVERY = [*GROWTH, lake_assets.store_clv, lake_assets.store_churn]


def _score_stores(instance, stores, assets=GROWTH, **config) -> dict[str, bool]:
    done = {}
    for store in stores:
        result = dg.materialize(
            assets, partition_key=store, instance=instance,
            resources=RESOURCES, run_config=_config("lake__order_risk", **config),
            raise_on_error=False,
        )  # fmt: skip
        done[store] = result.success
        # The run's steps shared one read-only instance; its end released it, failed or not.
        assert not warehouse_module._PINS
    return done


def _merge(instance) -> None:
    dg.materialize([lake_assets.lake_merge], instance=instance, resources=RESOURCES)


ORDERED = ["store_id", "order_id"]


STATUS = ("select store_id, step, status, message from ops.store_status "
          "where step in ('order_risk', 'clv', 'churn') order by 1, 2")  # fmt: skip
PER_CUSTOMER = ("marts.customer_rfm", "scores.clv", "scores.churn")


def test_per_store_runs_and_the_merge_give_the_nightly_rows(home):
    """Order risk, RFM, CLV and churn (from the approved versions the nightly run
    trained), one run per store, then the merge: every table as the nightly step wrote it."""
    nightly = _table(home, "select * from scores.order_risk").sort(ORDERED)
    customers = {
        name: _table(home, f"select * from {name}").sort("store_id", "customer_id")
        for name in PER_CUSTOMER
    }
    status = _table(home, STATUS)
    stores = _stores(home)
    assert len(stores) >= 2
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stores", stores)
        assert all(_score_stores(instance, stores, EVERY).values())
        # Each store's file holds that store's rows only.
        for store in stores:
            part = lake.read_table(home.lake, "scores.churn", nightly_as_of(home), [store])
            assert part.height and set(part["store_id"]) == {store}
        _merge(instance)
    assert_frame_equal(_table(home, "select * from scores.order_risk").sort(ORDERED), nightly)
    for name, rows in customers.items():
        merged = _table(home, f"select * from {name}").sort("store_id", "customer_id")
        assert_frame_equal(merged, rows, check_column_order=False)
    assert_frame_equal(_table(home, STATUS), status)
    # The merged outcomes are stamped like the nightly step's (recorded_at).
    unstamped = _table(home, "select count(*) as n from ops.store_status where recorded_at is null")
    assert unstamped["n"][0] == 0
    # The lake's files are views in the warehouse too, store and as_of from the folders.
    as_of = nightly_as_of(home)
    view = _table(home, "select * from lake.scores_churn")
    assert view.height == customers["scores.churn"].height
    assert set(view["store_id"]) == set(stores) and set(view["as_of"]) == {as_of}
    assert_frame_equal(
        view.sort("store_id", "customer_id"),
        customers["scores.churn"],
        check_column_order=False,
        check_dtypes=False,
    )


def nightly_as_of(paths: Paths):
    return _table(paths, "select max(order_date) + 1 as d from staging.orders")["d"][0]


def test_a_store_that_fails_leaves_every_store_consistent(home, monkeypatch):
    stores = _stores(home)
    broken, other = stores[0], stores[1]
    before = _table(home, "select * from scores.order_risk").sort(ORDERED)
    real = risk_model.score_orders

    def score_orders(orders, *args, **kwargs):
        if orders.height and orders["store_id"][0] == broken:
            raise RuntimeError("injected failure")
        return real(orders, *args, **kwargs)

    monkeypatch.setattr(risk_model, "score_orders", score_orders)
    shutil.rmtree(home.lake, ignore_errors=True)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stores", stores)
        # A shorter lookback: the stores that succeed get visibly different rows.
        done = _score_stores(instance, [broken, other], lookback_days=60)
        assert done == {broken: False, other: True}
        assert lake.stores_at(home.lake, "scores.order_risk", nightly_as_of(home)) == [other]
        _merge(instance)
    after = _table(home, "select * from scores.order_risk").sort(ORDERED)
    # The failed store keeps its previous complete rows; the other has its new ones.
    assert_frame_equal(after.filter(pl.col("store_id") == broken),
                       before.filter(pl.col("store_id") == broken))  # fmt: skip
    new_other = after.filter(pl.col("store_id") == other)
    assert 0 < new_other.height < before.filter(pl.col("store_id") == other).height
    status = dict(
        _table(
            home, "select store_id, status from ops.store_status where step = 'order_risk'"
        ).iter_rows()  # fmt: skip
    )
    assert status[broken] == "failed" and status[other] == "ok"


# Writes STORE's lake file again in a child process that stops (for the kill) after the
# new rows are written under their temporary name, before the rename.
CHILD = """
import os, sys, time
from datetime import date
from pathlib import Path
import polars as pl
from storepulse import lake

real = os.replace
def stall(src, dst):
    Path(sys.argv[4]).touch()
    time.sleep(600)
lake.os.replace = stall
rows = pl.DataFrame({"order_id": ["changed"], "risk_score": [1.0]})
lake.write_partition(Path(sys.argv[1]), "scores.order_risk", sys.argv[2],
                     date.fromisoformat(sys.argv[3]), rows)
"""


def test_kill_9_in_the_middle_of_a_store_write_leaves_its_previous_file(home, tmp_path):
    as_of = nightly_as_of(home)
    store = "store-x"
    first = pl.DataFrame({"order_id": ["a", "b"], "risk_score": [10.0, 20.0]})
    path = lake.write_partition(tmp_path, "scores.order_risk", store, as_of, first)
    ready = tmp_path / "written"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), store,
                              as_of.isoformat(), str(ready)])  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the child ended before the stall"
            assert time.monotonic() < deadline, "the child never reached the stall"
            time.sleep(0.1)
        assert list(path.parent.glob(".part-*.tmp")), "the new rows were being written"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    kept = lake.read_table(tmp_path, "scores.order_risk", as_of, [store])
    assert kept.select("order_id", "risk_score").sort("order_id").equals(first)
    # The rerun completes and clears what the killed run left.
    second = pl.DataFrame({"order_id": ["c"], "risk_score": [30.0]})
    lake.write_partition(tmp_path, "scores.order_risk", store, as_of, second)
    assert lake.read_table(tmp_path, "scores.order_risk", as_of, [store])["order_id"].to_list() == [
        "c"
    ]
    assert not list(path.parent.glob(".part-*.tmp"))


def test_two_store_runs_in_two_processes_side_by_side(home):
    """Two `dagster asset materialize` processes, one per store partition, at once:
    both succeed (read-only on the warehouse, each writes its own files)."""
    stores = _stores(home)[:2]
    shutil.rmtree(home.lake, ignore_errors=True)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("stores", stores)
    env = {**os.environ, "STOREPULSE_HOME": str(home.home), "DAGSTER_HOME": str(home.dagster_home)}
    dagster = Path(sys.executable).with_name("dagster")
    runs = [
        subprocess.Popen(
            [
                str(dagster),
                "asset",
                "materialize",
                "-m",
                "pipelines.definitions",
                "--select",
                "lake/order_risk",
                "--partition",
                store,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for store in stores
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[-1][-3000:]
    assert lake.stores_at(home.lake, "scores.order_risk", nightly_as_of(home)) == sorted(stores)


def test_views_follow_the_lake_folders(tmp_path):
    """A view per table with files; a table whose files are gone loses its view."""
    import duckdb

    as_of = pl.date(2026, 11, 1)
    day = pl.select(as_of).item()
    rows = pl.DataFrame({"store_id": ["a", "a"], "order_id": ["1", "2"]})
    lake.write_partition(tmp_path, "scores.order_risk", "a", day, rows)
    lake.write_partition(
        tmp_path, "scores.order_risk", "b", day, rows.with_columns(store_id=pl.lit("b"))
    )
    con = duckdb.connect()
    assert lake.expose_views(con, tmp_path) == ["lake.scores_order_risk"]
    counts = con.sql("select store_id, count(*) from lake.scores_order_risk group by 1 order by 1")
    assert counts.fetchall() == [("a", 2), ("b", 2)]
    shutil.rmtree(tmp_path / "scores.order_risk" / "store_id=a")
    shutil.rmtree(tmp_path / "scores.order_risk" / "store_id=b")
    assert lake.expose_views(con, tmp_path) == []
    assert not con.sql("select * from duckdb_views() where schema_name = 'lake'").fetchall()
