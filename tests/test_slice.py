"""The first vertical slice on tiny generated data: landing -> raw -> staging -> kpi_daily,
run through the nightly job in-process exactly as `storepulse run` does."""

import shutil
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.assets.staging import STAGING_KINDS
from storepulse.runner import run_job
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query

# The ingest multi-asset is not subsettable: select all of it, plus the mart.
SLICE = ["raw/landing_files", *(f"staging/{kind}" for kind in STAGING_KINDS), "marts/kpi_daily"]


@pytest.fixture(scope="module")
def sliced(tiny_sample, tmp_path_factory):
    """One slice run that several tests only read: (its result, its paths)."""
    home = tmp_path_factory.mktemp("slice") / "home"
    shutil.copytree(tiny_sample, home / "landing")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STOREPULSE_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        for var in ("STOREPULSE_LANDING_DIR", "STOREPULSE_WAREHOUSE", "STOREPULSE_EXPORT_DIR",
                    "STOREPULSE_REPORT_DIR", "STOREPULSE_AS_OF"):  # fmt: skip
            mp.delenv(var, raising=False)
        paths = Paths.from_env().ensure()
        result = run_job(
            "nightly_scoring", select=SLICE + [f"staging/{k}" for k in ("orders", "fx_rates")]
        )
    return result, paths


def _staging_and_kpis(paths):
    with Warehouse(paths.warehouse).reader() as con:
        orders = query(con, "select * from staging.orders")
        kpis = query(con, "select * from marts.kpi_daily")
        fx = query(con, "select * from staging.fx_rates")
        files = query(con, "select * from ops.ingested_files")
    return orders, kpis, fx, files


def test_nightly_slice_kpis_equal_the_orders_they_came_from(sliced):
    result, paths = sliced
    assert result.success, result.failures
    orders, kpis, fx, files = _staging_and_kpis(paths)

    assert orders.height > 1000
    as_of = orders["order_date"].max() + timedelta(days=1)
    assert result.as_of == as_of, "default as_of is the latest order date + 1 day"

    valid = orders.filter(~pl.col("is_cancelled"))
    # Totals per store: KPI GMV is exactly the sum of the staged, non-cancelled orders.
    expected = valid.group_by("store_id").agg(
        pl.col("total_usd").sum().alias("gmv"), pl.len().alias("n")
    )
    got = kpis.group_by("store_id").agg(
        pl.col("gmv_usd").sum().alias("gmv"), pl.col("orders").sum().alias("n")
    )
    joined = expected.join(got, on="store_id", suffix="_kpi").sort("store_id")
    assert joined.height == expected.height == got.height >= 2
    assert (joined["n"] == joined["n_kpi"]).all()
    assert ((joined["gmv"] - joined["gmv_kpi"]).abs() < 0.01).all()

    # Per day too, on one store: no order is attributed to the wrong day.
    store = joined["store_id"][0]
    per_day = (
        valid.filter(pl.col("store_id") == store)
        .group_by(pl.col("order_date").alias("date"))
        .agg(pl.col("total_usd").sum().alias("gmv"))
        .join(
            kpis.filter(pl.col("store_id") == store).group_by("date").agg(pl.col("gmv_usd").sum()),
            on="date",
        )
    )
    assert ((per_day["gmv"] - per_day["gmv_usd"]).abs() < 0.01).all()

    # Every customer is new exactly once.
    first_orders = valid.select("store_id", "customer_id").unique().height
    assert kpis["new_customers"].sum() == first_orders

    # Conservation, per file: read = staged + duplicates + quarantined.
    ingested = files.filter(pl.col("rows_read") > 0)
    assert ingested.height >= 8
    assert (
        ingested["rows_read"]
        == ingested["rows_staged"] + ingested["rows_duplicate"] + ingested["rows_quarantined"]
    ).all()
    assert not any("_truth" in p for p in files["path"].to_list()), "_truth/ must never be read"


def test_money_is_converted_with_the_nearest_earlier_fx_rate(sliced):
    result, paths = sliced
    assert result.success, result.failures
    orders, _, fx, _ = _staging_and_kpis(paths)
    foreign = orders.filter(pl.col("currency") != "USD").sort("created_at")
    assert foreign.height > 100, "the sample has a non-USD store"
    rates = fx.sort("date")  # join_asof needs both sides sorted on the key
    expected = foreign.sort("order_date").join_asof(
        rates.rename({"date": "fx_date"}),
        left_on="order_date",
        right_on="fx_date",
        by="currency",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted above; polars cannot verify per group
    )
    assert expected["usd_per_unit"].null_count() == 0
    assert (
        (expected["total"] * expected["usd_per_unit"] - expected["total_usd"]).abs() < 0.01
    ).all()
    assert (
        orders.filter(pl.col("currency") == "USD")["total_usd"]
        == orders.filter(pl.col("currency") == "USD")["total"]
    ).all()


def test_replay_as_of_reads_nothing_on_or_after_that_day_and_reruns_are_idempotent(sliced, sp_home):
    # The first run over the tiny landing is the module's: continue from a copy of its home
    # (landing, warehouse and Dagster instance) instead of running it again.
    first, paths = sliced
    assert first.success, first.failures
    shutil.copytree(paths.home, sp_home)
    tiny_home = Paths.from_env().ensure()
    _, full_kpis, _, files_first = _staging_and_kpis(tiny_home)
    cutoff = full_kpis["date"].min() + timedelta(days=120)

    assert run_job("nightly_scoring", as_of=cutoff, select=SLICE).success
    _, replay, _, _ = _staging_and_kpis(tiny_home)
    assert replay["date"].max() < cutoff
    assert replay.height < full_kpis.height

    assert run_job("nightly_scoring", select=SLICE).success
    _, again, _, files_again = _staging_and_kpis(tiny_home)
    # Same rows and values (sums of doubles may differ in the last bits between runs).
    assert_frame_equal(
        again.sort(["store_id", "date", "channel"]),
        full_kpis.sort(["store_id", "date", "channel"]),
        check_exact=False,
        rel_tol=1e-9,
    )
    assert files_again.height == files_first.height, "the same files are not ingested twice"
