"""The benchmark peers compare like with like (benchmarks/features_peer.py,
benchmarks/demand_peer.py): on the tiny sample, the pandas RFM + churn features
equal ours column by column, and mlforecast and our demand model are scored on
exactly the same evaluation rows with the same LightGBM settings."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from homes import copy_warehouse

from benchmarks import demand_peer, features_peer  # repo root is on pythonpath (pyproject)
from models import churn, demand, rfm


@pytest.fixture(scope="module")
def tiny_warehouse(tiny_warehouse, tmp_path_factory) -> Path:
    """This module's copy of the session's ingested tiny sample (conftest)."""
    return copy_warehouse(
        tiny_warehouse, tmp_path_factory.mktemp("bench_peers") / "warehouse.duckdb"
    )


@pytest.fixture(scope="module")
def feature_runs(tiny_warehouse):
    as_of = features_peer.default_as_of(tiny_warehouse)
    # Scoring day, the churn backtest cutoff and a training cutoff: all inside the year
    # of tiny data (earlier cutoffs of a real training run have no orders before them).
    cutoffs = [as_of, as_of - timedelta(days=90), as_of - timedelta(days=180)]
    ours = features_peer.run_ours(
        features_peer.load_inputs(tiny_warehouse, as_of, "polars"), as_of, cutoffs
    )
    theirs = features_peer.run_pandas(
        features_peer.load_inputs(tiny_warehouse, as_of, "pandas"), as_of, cutoffs
    )
    return as_of, cutoffs, ours, theirs


def test_pandas_rfm_equals_ours(feature_runs):
    _, _, (ours, _, _), (theirs, _, _) = feature_runs
    assert ours.height > 1000
    assert list(theirs.columns) == list(rfm.OUTPUT_COLUMNS)
    assert features_peer.mismatches(ours, theirs) == []
    # Every segment the tiny sample reaches is labelled the same way.
    assert ours["segment"].null_count() == 0
    assert ours["segment"].n_unique() >= 5


def test_pandas_churn_features_equal_ours_at_every_cutoff(feature_runs):
    _, cutoffs, (_, ours, _), (_, theirs, _) = feature_runs
    for cutoff in cutoffs:
        mine = ours[cutoff].sort("store_id", "customer_id")
        other = theirs[cutoff].sort_values(["store_id", "customer_id"]).reset_index(drop=True)
        assert mine.height == len(other) > 500, cutoff
        for name in churn.NUMERIC_FEATURES:
            a = mine[name].to_numpy().astype(float)
            b = other[name].to_numpy(dtype=float)
            assert np.allclose(a, b, equal_nan=True, rtol=1e-9, atol=1e-9), (cutoff, name)
        assert features_peer.mismatches(ours[cutoff], theirs[cutoff]) == [], cutoff
    # The features vary (a constant column would make equality trivially easy).
    latest = ours[cutoffs[0]]
    for name in (
        "recency_days",
        "monetary_usd",
        "mean_gap_days",
        "bgnbd_p_alive",
        "discount_share",
    ):
        assert latest[name].drop_nulls().n_unique() > 1, name


def test_pandas_reads_cash_on_delivery_like_ours():
    # The sample data has no COD payments, so the two regex engines are compared here.
    methods = [
        "COD",
        "Cash on Delivery (COD)",
        "cash_on_delivery",
        "contra entrega",
        "Bayar di Tempat",
        "Cash App",
        "card",
        "codes",
        None,
    ]
    day = date(2026, 1, 5)
    orders = pl.DataFrame(
        {
            "store_id": ["s"] * len(methods),
            "order_id": [f"o{i}" for i in range(len(methods))],
            "customer_id": [f"c{i}" for i in range(len(methods))],
            "order_date": [day] * len(methods),
            "created_at": [None] * len(methods),
            "total_usd": [10.0] * len(methods),
            "refunded_amount_usd": [0.0] * len(methods),
            "discount_usd": [None] * len(methods),
            "subtotal_usd": [10.0] * len(methods),
            "is_cancelled": [False] * len(methods),
            "payment_method": methods,
            "channel": ["email"] * len(methods),
            "ship_country": ["US"] * len(methods),
        },
        schema_overrides={"created_at": pl.Datetime("us"), "discount_usd": pl.Float64},
    )
    as_of = day + timedelta(days=1)
    ours = churn.prepare_orders(orders, as_of).sort("order_id")["is_cod"].to_list()
    theirs = features_peer.pandas_prepare_orders(orders.to_pandas(), as_of)
    assert theirs.sort_values("order_id")["is_cod"].tolist() == ours
    assert ours == [True, True, True, True, True, False, False, False, False]


def test_the_feature_comparison_catches_a_wrong_column(feature_runs):
    _, cutoffs, (_, ours, _), (_, theirs, _) = feature_runs
    other = theirs[cutoffs[0]].copy()
    other["mean_gap_days"] = other["mean_gap_days"] * 1.001
    other.loc[3, "first_channel"] = "not-a-channel"
    assert features_peer.mismatches(ours[cutoffs[0]], other) == ["mean_gap_days", "first_channel"]
    assert features_peer.mismatches(ours[cutoffs[0]], other.iloc[1:]) == ["<rows>"]


def test_both_feature_runs_time_the_bgnbd_share(feature_runs):
    _, cutoffs, (_, _, ours_clock), (_, _, pandas_clock) = feature_runs
    for clock in (ours_clock, pandas_clock):
        summary = features_peer.summary(clock, cutoffs, 1)
        assert 0 < summary["bgnbd_seconds"] < summary["work_seconds"]
        assert summary["cutoffs"] == len(cutoffs)


@pytest.fixture(scope="module")
def demand_runs(tiny_warehouse):
    history = demand_peer.load_history(tiny_warehouse)
    config = demand.DemandSettings(num_boost_round=15)
    return (
        history,
        demand_peer.run_ours(history, config, seed=0),
        demand_peer.run_mlforecast(history, config, seed=0),
    )


def test_mlforecast_and_ours_score_the_same_evaluation_rows(demand_runs):
    history, ours, peer = demand_runs
    key = ["store_id", "sku", "date"]
    expected = demand_peer.evaluation_rows(history).select(key)
    assert expected.height > 100
    for side in (ours, peer):
        assert side.scored.select(key).sort(key).equals(expected.sort(key)), side.name
        assert side.scored["mean"].null_count() == 0
        assert np.isfinite(side.summary()["wape"])
    # The same rows our backtest scores itself, in the last 28 days before as_of.
    assert ours.extra["backtest_days_scored"] == expected.height
    cutoff = history.as_of - timedelta(days=demand.HORIZON_DAYS)
    assert expected["date"].min() >= cutoff
    assert expected["date"].max() < history.as_of


def test_censored_stockout_days_are_left_out_for_both(demand_runs):
    history, ours, peer = demand_runs
    cutoff = history.as_of - timedelta(days=demand.HORIZON_DAYS)
    window = history.daily.filter(pl.col("date") >= cutoff)
    censored = window.filter(pl.col("censored")).select("store_id", "sku", "date")
    assert censored.height > 0  # the tiny sample has stock-outs in the window
    assert ours.extra["censored_days_excluded"] == censored.height
    for side in (ours, peer):
        assert side.scored.join(censored, on=["store_id", "sku", "date"]).height == 0


def test_mlforecast_gets_the_same_lightgbm_settings(demand_runs):
    _, ours, peer = demand_runs

    def settings(booster) -> dict[str, str]:
        text = booster.model_to_string()
        block = text[text.index("parameters:") : text.index("end of parameters")]
        pairs = (line.strip("[]").split(": ", 1) for line in block.splitlines()[1:] if ": " in line)
        return dict(pairs)

    mine, theirs = settings(ours.booster), settings(peer.booster)
    for name in [*demand.LGBM_PARAMS, "num_iterations", "seed"]:
        if name == "verbose":
            continue
        assert mine[name] == theirs[name], name
    assert theirs["num_threads"] == "1" and theirs["num_iterations"] == "15"


def test_time_ratios_compare_the_timed_work_when_both_sides_report_it():
    from benchmarks.run import ratio_descriptions, summary_values, time_ratios

    stages = {
        "ingest": {"seconds": 3.0},
        "duckdb_read_csv": {"seconds": 2.0},
        "features_ours": {
            "seconds": 10.0,
            "work_seconds": 1.0,
            "work_cpu_seconds": 2.0,
            "work_ex_bgnbd_seconds": 0.3,
            "work_ex_bgnbd_cpu_seconds": 0.4,
        },
        "features_pandas": {
            "seconds": 20.0,
            "work_seconds": 4.0,
            "work_cpu_seconds": 4.0,
            "work_ex_bgnbd_seconds": 3.0,
            "work_ex_bgnbd_cpu_seconds": 2.0,
        },
        "demand_ours": {"seconds": 9.0, "work_seconds": 3.0, "wape": 0.4, "wape_mean": 0.5},
        "demand_mlforecast": {"seconds": 6.0, "work_seconds": 2.0, "wape": 0.5, "wape_mean": 0.5},
        "churn_scoring": {"customers_per_second": 250000, "customers_per_second_no_reasons": 9e5},
    }
    ratios = time_ratios(stages)
    assert ratios["ingest_vs_duckdb_read_csv"] == 1.5  # no work_seconds: whole processes
    # Headline: feature building without the shared BG/NBD fits; with them next to it.
    assert ratios["features_vs_pandas"] == 0.1
    assert ratios["features_vs_pandas_cpu"] == 0.2
    assert ratios["features_incl_bgnbd_vs_pandas"] == 0.25
    assert ratios["features_incl_bgnbd_vs_pandas_cpu"] == 0.5
    assert ratios["features_incl_bgnbd_vs_pandas_process"] == 0.5
    assert ratios["demand_time_vs_mlforecast"] == 1.5
    assert ratios["demand_wape_vs_mlforecast"] == 0.8
    assert ratios["demand_wape_mean_vs_mlforecast"] == 1.0
    # Every ratio the report can hold says in one line what it compares.
    descriptions = ratio_descriptions()
    assert set(ratios) <= set(descriptions)
    assert all(descriptions[name].strip() for name in ratios)
    assert "excluding" in descriptions["features_vs_pandas"]
    assert summary_values(stages) == {
        "churn_customers_per_second": 250000,
        "churn_customers_per_second_no_reasons": 9e5,
    }
    del stages["demand_mlforecast"], stages["churn_scoring"]
    assert "demand_time_vs_mlforecast" not in time_ratios(stages)
    assert summary_values(stages) == {}


def test_churn_scoring_is_a_bench_stage_in_the_run_order():
    from benchmarks.stages import STAGES

    order = list(STAGES)
    assert "churn_scoring" in order
    # After ingest (it trains on the staged warehouse), next to the feature stages.
    assert order.index("ingest") < order.index("churn_scoring")
