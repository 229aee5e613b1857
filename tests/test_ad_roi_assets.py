"""Ad-ROI Dagster assets on the tiny generated sample, on the model lifecycle:
candidates and champions recorded, marts built store by store from each store's
champion, every outcome in ops.store_status."""

from __future__ import annotations

import dataclasses
import json
import shutil

import dagster as dg
import polars as pl
import pytest
from homes import copy_warehouse
from test_ad_roi import TINY

from pipelines.assets import ad_roi as ad_roi_assets
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.warehouse import Warehouse, query

# Few refits keep the test quick; the defaults only add more of them.
FAST = {"n_bootstrap": 3}
MODEL_CLASS = ad_roi_assets.ad_roi_model.StoreAdRoiModel
# And a smaller LightGBM search: four carryover kernels instead of nine (TINY in
# test_ad_roi.py, whose quality checks on this same sample use them) and at most 300
# boosting rounds instead of 1000 (as test_ad_roi's parallel-fit test). The search is
# most of a fit: 1.0 s instead of 4.9 s on the tiny sample, with the same champions
# (luma-home-de: none, nova-gadgets-us: ridge). These tests check what the assets
# publish whatever the models' verdicts; model quality is test_ad_roi.py's.
QUICK_SEARCH = {"carryover_grid": TINY.carryover_grid, "rounds": 300}


@pytest.fixture(autouse=True)
def quick_lightgbm_search(monkeypatch):
    settings = ad_roi_assets.AdRoiConfig.settings
    monkeypatch.setattr(
        ad_roi_assets.AdRoiConfig,
        "settings",
        lambda config: dataclasses.replace(settings(config), **QUICK_SEARCH),
    )


@pytest.fixture
def ingested_home(sp_home, tiny_sample, tiny_warehouse):
    landing = sp_home / "landing"
    shutil.copytree(tiny_sample, landing, ignore=shutil.ignore_patterns("_truth"))
    copy_warehouse(tiny_warehouse, sp_home / "warehouse.duckdb")  # the sample, ingested
    return sp_home


def _resources():
    return {"storepulse": StorepulseResource(), "run_settings": RunSettings()}


def _build(assets=None):
    assets = assets or [ad_roi_assets.ad_roi_model_asset, ad_roi_assets.ad_roi_marts]
    ops = {a.op.name: {"config": FAST} for a in assets}
    return dg.materialize(
        assets, resources=_resources(), run_config={"ops": ops}, raise_on_error=False
    )


def _read(home, sql: str) -> pl.DataFrame:
    with Warehouse(home / "warehouse.duckdb").reader() as con:
        return query(con, sql)


def test_each_store_is_published_from_its_own_champion(ingested_home):
    """Whatever the tiny data's verdicts (a few orders a day make them close calls),
    the recorded champions, the marts and ops.store_status must agree."""
    result = _build()
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {ad_roi_assets.CHAMPION_APPROVED: True, "no_store_failed": True}
    runs = _read(ingested_home, "select * from ops.model_runs where model = 'ad_roi'")
    assert runs.height == 1  # the marts reuse the version the training asset made
    run = runs.row(0, named=True)
    champions = json.loads(run["champions"])
    card = json.loads(
        (ingested_home / "model_store" / "ad_roi" / run["version"] / "card.json").read_text()
    )
    # The lifecycle's choice per store is the model's own rule: the first of ridge,
    # LightGBM that beats the no-media baseline out of time on the same days.
    for store, methods in card["candidates_by_store"].items():
        expected = next(
            (m for m in ("ridge", "lightgbm") if m in methods and methods[m]["beats_none"]),
            "none",
        )
        assert champions[store] == expected, (store, methods)
        for m in ("ridge", "lightgbm"):
            if m in methods:
                assert methods[m]["beats_none"] == (methods[m]["wape"] < methods["none"]["wape"])
    roi = _read(ingested_home, "select * from marts.channel_roi")
    status = _read(ingested_home, "select * from ops.store_status where step = 'ad_roi'")
    spend = _read(
        ingested_home,
        "select store_id, lower(platform) as channel, sum(spend_usd) as spend_usd, "
        "sum(platform_conversion_value_usd) as value from staging.ad_spend group by 1, 2",
    )
    assert dict(zip(status["store_id"], status["method"], strict=True)) == champions
    # every store x channel with spend has an all-history row with exactly the platform
    # ROAS the ad exports claim
    overall = roi.filter(pl.col("period") == "all").join(spend, on=["store_id", "channel"])
    assert overall.height == spend.height
    for row in overall.iter_rows(named=True):
        assert row["spend_usd"] == pytest.approx(row["spend_usd_right"], rel=1e-6)
        assert row["platform_roas"] == pytest.approx(row["value"] / row["spend_usd"], rel=1e-6)
    # incremental numbers exactly where a media model won, stamped with its method
    for store, method in champions.items():
        mine = overall.filter(pl.col("store_id") == store)
        if method == "none":
            assert mine["incremental_roas"].is_null().all()
        else:
            assert mine["incremental_roas"].is_not_null().any()
            assert set(mine["model_version"].drop_nulls()) == {f"{run['version']}/{method}"}


def test_media_models_that_beat_the_baseline_publish_sane_numbers(ingested_home, monkeypatch):
    """Every store's ridge taken to beat the baseline, so the publishing path runs
    whatever the tiny data's verdict: credit never exceeds revenue, intervals are
    ordered, the plan keeps the total, and the lift tests are reported."""
    monkeypatch.setattr(MODEL_CLASS, "beats_none", lambda self, method: method == "ridge")
    assert _build().success
    roi = _read(ingested_home, "select * from marts.channel_roi where period = 'all'")
    plan = _read(ingested_home, "select * from marts.budget_plan")
    tests = _read(ingested_home, "select * from marts.lift_test_results")
    lift_plan = _read(ingested_home, "select * from marts.lift_plan")
    revenue = _read(
        ingested_home,
        "select store_id, sum(total_usd) as revenue_usd from staging.orders "
        "where not is_cancelled group by 1",
    )
    staged_tests = _read(ingested_home, "select * from staging.lift_tests")
    modelled = roi.filter(pl.col("incremental_roas").is_not_null())
    assert set(modelled["method"]) == {"ridge"}
    assert set(modelled["store_id"]) == set(roi["store_id"])
    assert (modelled["incremental_roas"] >= 0).all()
    assert (modelled["incremental_roas_p10"] <= modelled["incremental_roas_p90"]).all()
    credited = modelled.group_by("store_id").agg(pl.col("incremental_revenue_usd").sum())
    for row in credited.join(revenue, on="store_id").iter_rows(named=True):
        assert row["incremental_revenue_usd"] < row["revenue_usd"]
    for _, rows in plan.group_by("store_id"):
        assert rows["recommended_spend_usd"].sum() == pytest.approx(
            rows["current_spend_usd"].sum(), rel=1e-6
        )
    # The generator's lift tests reach the model; each is reported with its verdict.
    assert staged_tests.height > 0
    assert tests.height == staged_tests.height
    used = tests.filter(pl.col("status") == "used")
    assert used["z_score"].is_not_null().all()
    # The uncalibrated ROAS sits beside the calibrated one.
    assert modelled["uncalibrated_roas"].is_not_null().all()
    assert set(lift_plan["store_id"]) <= set(modelled["store_id"])
    assert (lift_plan["expected_std_error"] > 0).all()


def test_a_store_where_no_media_model_wins_keeps_its_spend_and_says_why(ingested_home, monkeypatch):
    monkeypatch.setattr(MODEL_CLASS, "beats_none", lambda self, method: False)
    assert _build().success
    roi = _read(ingested_home, "select * from marts.channel_roi")
    plan = _read(ingested_home, "select * from marts.budget_plan")
    status = _read(ingested_home, "select * from ops.store_status where step = 'ad_roi'")
    assert roi.height > 0 and roi["incremental_roas"].is_null().all()
    assert roi["platform_roas"].is_not_null().any()
    assert plan.height > 0 and (plan["spend_multiplier"] == 1.0).all()
    assert plan["flag"].str.starts_with("spend kept as is: no media model").all()
    assert set(status["method"]) == {"none"} and set(status["status"]) == {"ok"}


def test_store_without_ad_spend_is_skipped_with_its_reason(ingested_home):
    with Warehouse(ingested_home / "warehouse.duckdb").writer() as con:
        kept = query(con, "select min(store_id) as s from staging.ad_spend")["s"][0]
        con.execute("delete from staging.ad_spend where store_id <> ?", [kept])
    result = _build()
    assert result.success
    model = result.asset_materializations_for_node("models__ad_roi")[0]
    skipped = model.metadata["stores_without_model"].data
    assert len(skipped) == 1 and "no ad spend" in next(iter(skipped.values()))
    assert kept not in skipped
    status = _read(ingested_home, "select * from ops.store_status where step = 'ad_roi'")
    by_store = {r["store_id"]: r for r in status.iter_rows(named=True)}
    (other,) = skipped
    assert by_store[other]["status"] == "skipped"
    assert "no ad spend" in by_store[other]["message"]
    assert by_store[kept]["status"] in ("ok", "fallback")


def test_marts_say_why_there_is_no_model_when_no_store_has_ad_spend(ingested_home):
    with Warehouse(ingested_home / "warehouse.duckdb").writer() as con:
        con.execute("delete from staging.ad_spend")
        con.execute("delete from staging.lift_tests")
    result = _build([ad_roi_assets.ad_roi_marts])
    assert result.success
    assert _read(ingested_home, "select * from marts.channel_roi").is_empty()
    status = _read(ingested_home, "select * from ops.store_status where step = 'ad_roi'")
    assert status.height == 2 and set(status["status"]) == {"skipped"}
    assert all("no ad spend" in m for m in status["message"])
    run = _read(ingested_home, "select * from ops.model_runs where model = 'ad_roi'")
    assert run["champion"].to_list() == ["none"]
    assert "no store could be modelled" in run["reason"][0]
