"""Demand assets with dagster.materialize on the tiny generated sample in a temporary home."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import polars as pl
from homes import copy_warehouse

from pipelines import model_assets
from pipelines.assets import demand as demand_assets
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.model_store import latest_approved
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query

ASSETS = [demand_assets.demand_model, demand_assets.demand_forecast, demand_assets.reorder_plan]


def ingest_sample(tiny_sample, tiny_warehouse) -> Paths:
    """The home of the environment (sp_home) with the tiny sample landed and ingested
    (a copy of the session's ingested warehouse)."""
    paths = Paths.from_env().ensure()
    landing = paths.landing
    shutil.copytree(
        tiny_sample, landing, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_truth")
    )
    copy_warehouse(tiny_warehouse, paths.warehouse)
    return paths


def materialized_metadata(result, key: dg.AssetKey) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return events[0].step_materialization_data.materialization.metadata if events else {}


def resources() -> dict:
    return {"storepulse": StorepulseResource(), "run_settings": RunSettings()}


def test_weekly_training_then_nightly_forecast_and_reorder_plan(
    tiny_sample, tiny_warehouse, sp_home
):
    paths = ingest_sample(tiny_sample, tiny_warehouse)
    result = dg.materialize(ASSETS, resources=resources())
    assert result.success

    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {demand_assets.CHAMPION_APPROVED: True, model_assets.NO_STORE_FAILED: True}

    model_md = materialized_metadata(result, demand_assets.DEMAND_MODEL)
    assert model_md["approved"].value is True
    assert "data:image/png;base64" in model_md["actual_vs_forecast"].value
    assert "seasonal_naive" in model_md["candidates"].value

    with Warehouse(paths.warehouse).reader() as con:
        runs = query(con, "select * from ops.model_runs where model = 'demand'")
        assert runs.height == 1 and runs["approved"][0]
        run_metrics = json.loads(runs["metrics"][0])
        others = json.loads(runs["baseline_metrics"][0])
        champion = runs["champion"][0]
        # The champion is the candidate with the best backtest WAPE (ties: the simpler).
        assert run_metrics["method"] == champion
        assert run_metrics["wape"] <= min(m["wape"] for m in others.values()) + 0.005
        # On this sample LightGBM earns its keep over both baselines.
        assert champion == "lightgbm" and 0.7 <= run_metrics["coverage_p10_p90"] <= 0.95
        # Slow series' rows are importance-sampled: fewer rows than target days.
        assert 0 < run_metrics["train_rows"] < run_metrics["target_days"]
        version = latest_approved(con, "demand")
        card = json.loads((paths.model_store / "demand" / version / "card.json").read_text())
        assert card["settings"]["sample_level"] == demand_assets.DemandConfig().sample_level > 0
        assert model_md["train_rows"].value == run_metrics["train_rows"]
        champions = json.loads(runs["champions"][0])

        forecast = query(con, "select * from scores.demand_forecast")
        series = query(
            con,
            "select count(distinct (l.store_id, l.sku)) as n from staging.order_lines l "
            "join staging.valid_orders o using (store_id, order_id)",
        )["n"][0]
        assert forecast.height >= 28 * series * 0.95
        # Every row names the version and the method that produced it: the store's champion.
        used = dict(forecast.select("store_id", "model_version").unique().iter_rows())
        assert used == {s: f"{version}/{champions[s]}" for s in used}
        assert forecast.group_by("store_id", "sku").len()["len"].unique().to_list() == [28]
        assert (forecast["p10"] <= forecast["p90"]).all()
        status = query(con, "select store_id, status, method from ops.store_status")
        assert set(status["status"]) == {"ok"} and set(status["store_id"]) == set(used)

        plan = query(con, "select * from marts.reorder_plan order by urgency_rank")
        snapshots = query(con, "select count(distinct (store_id, sku)) as n from staging.inventory")
        assert plan.height == snapshots["n"][0]
        assert set(plan["abc_class"]) <= {"A", "B", "C"}
        # Urgent first: every SKU to reorder comes before every SKU not to reorder.
        to_order = plan["reorder_qty"].to_numpy() > 0
        assert to_order.any() and not (to_order[1:] > to_order[:-1]).any()
        # Nothing to reorder has less cover than its lead time unless it is out of stock
        # with no expected demand.
        late = plan.filter(
            (pl.col("reorder_qty") == 0) & (pl.col("days_of_cover") < pl.col("lead_time_days"))
        )
        assert late.filter(pl.col("on_hand") > 0).height == 0


def test_nightly_forecast_trains_first_and_skips_a_store_without_order_lines(
    tiny_sample, tiny_warehouse, sp_home
):
    paths = ingest_sample(tiny_sample, tiny_warehouse)
    with Warehouse(paths.warehouse).writer() as con:
        stores = query(con, "select store_id from staging.stores order by store_id")["store_id"]
        without_lines = stores[0]
        con.execute("delete from staging.order_lines where store_id = ?", [without_lines])

    result = dg.materialize(
        [demand_assets.demand_forecast, demand_assets.reorder_plan], resources=resources()
    )
    assert result.success
    with Warehouse(paths.warehouse).reader() as con:
        # No approved model existed: the nightly asset trained and recorded one.
        assert query(con, "select count(*) as n from ops.model_runs")["n"][0] == 1
        forecast_stores = set(
            query(con, "select distinct store_id from scores.demand_forecast")["store_id"]
        )
        plan_stores = set(
            query(con, "select distinct store_id from marts.reorder_plan")["store_id"]
        )
        status = dict(
            query(con, "select store_id, status || ': ' || message from ops.store_status").rows()
        )
    assert without_lines not in forecast_stores and forecast_stores
    assert plan_stores == forecast_stores
    assert status[without_lines].startswith("skipped: ") and "order lines" in status[without_lines]


def test_when_lightgbm_loses_a_baseline_scores_and_the_run_is_still_approved(
    tiny_sample, tiny_warehouse, sp_home, monkeypatch
):
    """A baseline winning the backtest is normal operation: it becomes the champion, the
    weekly run succeeds, and the forecast says which method made it."""
    from models import demand

    paths = ingest_sample(tiny_sample, tiny_warehouse)
    real = demand.train_candidates

    def lightgbm_loses(history, config=None, seed=0):
        found = real(history, config, seed)
        found.overall["lightgbm"] = {**found.overall["lightgbm"], "wape": 9.0}
        found.per_store = {
            s: {**m, "lightgbm": {**m["lightgbm"], "wape": 9.0}} for s, m in found.per_store.items()
        }
        return found

    monkeypatch.setattr(demand, "train_candidates", lightgbm_loses)
    quick = dg.RunConfig(ops={"models__demand": demand_assets.DemandConfig(num_boost_round=10)})
    result = dg.materialize(
        [demand_assets.demand_model, demand_assets.demand_forecast],
        resources=resources(),
        run_config=quick,
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    with Warehouse(paths.warehouse).reader() as con:
        run = query(con, "select approved, champion, reason from ops.model_runs").row(0)
        methods = query(con, "select distinct split_part(model_version, '/', 2) as m"
                        " from scores.demand_forecast")["m"].to_list()  # fmt: skip
    assert run[0] and run[1] in ("seasonal_naive", "moving_average_28")
    assert "wins the backtest" in run[2]
    assert set(methods) <= {"seasonal_naive", "moving_average_28"}


def test_a_home_without_any_order_lines_skips_demand_without_failing(
    tiny_sample, tiny_warehouse, sp_home
):
    paths = ingest_sample(tiny_sample, tiny_warehouse)
    with Warehouse(paths.warehouse).writer() as con:
        con.execute("delete from staging.order_lines")

    result = dg.materialize(ASSETS, resources=resources())
    assert result.success
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert (
        "order lines" in materialized_metadata(result, demand_assets.DEMAND_MODEL)["skipped"].value
    )
    with Warehouse(paths.warehouse).reader() as con:
        assert query(con, "select count(*) as n from scores.demand_forecast")["n"][0] == 0
        assert query(con, "select count(*) as n from marts.reorder_plan")["n"][0] == 0
        assert query(con, "select count(*) as n from ops.model_runs")["n"][0] == 0
        statuses = query(con, "select distinct status from ops.store_status")["status"]
        assert statuses.to_list() == ["skipped"]
