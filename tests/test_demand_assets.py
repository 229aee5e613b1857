"""Demand assets with dagster.materialize on the tiny generated sample in a temporary home."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import polars as pl

from pipelines.assets import demand as demand_assets
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.model_store import latest_approved
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query, table_exists

ASSETS = [demand_assets.demand_model, demand_assets.demand_forecast, demand_assets.reorder_plan]


def ingest_sample(tiny_sample, sp_home) -> Paths:
    from storepulse.ingest import ingest_landing

    paths = Paths.from_env().ensure()
    landing = paths.landing
    shutil.copytree(
        tiny_sample, landing, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_truth")
    )
    with Warehouse(paths.warehouse).writer() as con:
        ingest_landing(con, landing)
    return paths


def materialized_metadata(result, key: dg.AssetKey) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return events[0].step_materialization_data.materialization.metadata if events else {}


def resources() -> dict:
    return {"storepulse": StorepulseResource(), "run_settings": RunSettings()}


def test_weekly_training_then_nightly_forecast_and_reorder_plan(tiny_sample, sp_home):
    paths = ingest_sample(tiny_sample, sp_home)
    result = dg.materialize(ASSETS, resources=resources())
    assert result.success

    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == demand_assets.BEATS_BASELINES and check.passed

    model_md = materialized_metadata(result, demand_assets.DEMAND_MODEL)
    assert model_md["approved"].value is True
    assert "data:image/png;base64" in model_md["actual_vs_forecast"].value
    assert "seasonal_naive" in model_md["backtest"].value

    with Warehouse(paths.warehouse).reader() as con:
        runs = query(con, "select * from ops.model_runs where model = 'demand'")
        assert runs.height == 1 and runs["approved"][0]
        run_metrics = json.loads(runs["metrics"][0])
        baselines = json.loads(runs["baseline_metrics"][0])
        assert run_metrics["wape"] < min(b["wape"] for b in baselines.values())
        assert 0.7 <= run_metrics["coverage_p10_p90"] <= 0.95
        # Slow series' rows are importance-sampled: fewer rows than target days.
        assert 0 < run_metrics["train_rows"] < run_metrics["target_days"]
        version = latest_approved(con, "demand")
        card = json.loads((paths.model_store / "demand" / version / "card.json").read_text())
        assert card["settings"]["sample_level"] == demand_assets.DemandConfig().sample_level > 0
        assert model_md["target_days"].value == run_metrics["target_days"]

        forecast = query(con, "select * from scores.demand_forecast")
        series = query(
            con,
            "select count(distinct (l.store_id, l.sku)) as n from staging.order_lines l "
            "join staging.orders o using (store_id, order_id) where not o.is_cancelled",
        )["n"][0]
        assert forecast.height >= 28 * series * 0.95
        assert set(forecast["model_version"]) == {version}
        assert forecast.group_by("store_id", "sku").len()["len"].unique().to_list() == [28]
        assert (forecast["p10"] <= forecast["p90"]).all()

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


def test_nightly_forecast_trains_first_and_skips_a_store_without_order_lines(tiny_sample, sp_home):
    paths = ingest_sample(tiny_sample, sp_home)
    with Warehouse(paths.warehouse).writer() as con:
        stores = query(con, "select store_id from staging.stores order by store_id")["store_id"]
        without_lines = stores[0]
        con.execute("delete from staging.order_lines where store_id = ?", [without_lines])

    result = dg.materialize(
        [demand_assets.demand_forecast, demand_assets.reorder_plan], resources=resources()
    )
    assert result.success
    forecast_md = materialized_metadata(result, demand_assets.DEMAND_FORECAST)
    assert "order lines" in forecast_md["skipped_stores"].value[without_lines]

    with Warehouse(paths.warehouse).reader() as con:
        # No approved model existed: the nightly asset trained and recorded one.
        assert query(con, "select count(*) as n from ops.model_runs")["n"][0] == 1
        forecast_stores = set(
            query(con, "select distinct store_id from scores.demand_forecast")["store_id"]
        )
        plan_stores = set(
            query(con, "select distinct store_id from marts.reorder_plan")["store_id"]
        )
    assert without_lines not in forecast_stores and forecast_stores
    assert plan_stores == forecast_stores


def test_a_model_worse_than_its_baselines_is_blocked_from_scoring(
    tiny_sample, sp_home, monkeypatch
):
    from models import demand

    paths = ingest_sample(tiny_sample, sp_home)
    # Whatever the data, make the backtest lose to its baselines: the gate must then
    # record the run as not approved and stop the forecast in the same run.
    monkeypatch.setattr(demand.DemandBacktest, "beats_baselines", property(lambda self: False))
    quick = dg.RunConfig(ops={"models__demand": demand_assets.DemandConfig(num_boost_round=10)})
    result = dg.materialize(
        [demand_assets.demand_model, demand_assets.demand_forecast],
        resources=resources(),
        run_config=quick,
        raise_on_error=False,
    )
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == demand_assets.BEATS_BASELINES and not check.passed
    assert not materialized_metadata(result, demand_assets.DEMAND_FORECAST)
    with Warehouse(paths.warehouse).reader() as con:
        assert not query(con, "select approved from ops.model_runs")["approved"][0]
        assert latest_approved(con, "demand") is None
        assert not table_exists(con, "scores.demand_forecast")


def test_a_home_without_any_order_lines_skips_demand_without_failing(tiny_sample, sp_home):
    paths = ingest_sample(tiny_sample, sp_home)
    with Warehouse(paths.warehouse).writer() as con:
        con.execute("delete from staging.order_lines")

    result = dg.materialize(ASSETS, resources=resources())
    assert result.success
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert (
        "order lines" in materialized_metadata(result, demand_assets.DEMAND_MODEL)["skipped"].value
    )
    with Warehouse(paths.warehouse).reader() as con:
        assert query(con, "select count(*) as n from scores.demand_forecast")["n"][0] == 0
        assert query(con, "select count(*) as n from marts.reorder_plan")["n"][0] == 0
        assert query(con, "select count(*) as n from ops.model_runs")["n"][0] == 0


def test_an_approved_model_from_older_code_is_retrained_not_left_failing(
    tiny_sample, sp_home, monkeypatch
):
    paths = ingest_sample(tiny_sample, sp_home)
    assert dg.materialize([demand_assets.demand_model], resources=resources()).success
    with Warehouse(paths.warehouse).reader() as con:
        old_version = latest_approved(con, "demand")
    saved = paths.model_store / "demand" / old_version / "model.pkl"
    saved_before = saved.stat().st_mtime_ns

    real_predict = demand_assets.demand.predict
    calls = []

    def predict_once_stale(model, history, *args, **kwargs):
        calls.append(model)
        if len(calls) == 1:  # the saved model: as if built by an older feature set
            raise demand_assets.demand.StaleModelError("trained on features ... retrain it")
        return real_predict(model, history, *args, **kwargs)

    monkeypatch.setattr(demand_assets.demand, "predict", predict_once_stale)
    result = dg.materialize(
        [demand_assets.demand_forecast],
        resources=resources(),
        selection=[demand_assets.DEMAND_FORECAST],
    )
    assert result.success
    assert len(calls) >= 2 and calls[-1] is not calls[0]  # retrained, then forecast
    metadata = materialized_metadata(result, demand_assets.DEMAND_FORECAST)
    with Warehouse(paths.warehouse).reader() as con:
        # Retrained: same data and cutoff give the same version id, so the saved
        # model is replaced in place (and its ops.model_runs row kept once).
        assert metadata["model_version"].value == old_version
        assert saved.stat().st_mtime_ns > saved_before
        runs = query(con, "select version from ops.model_runs where model = 'demand'")
        assert runs["version"].to_list() == [old_version]
        forecast = query(con, "select distinct model_version from scores.demand_forecast")
        assert forecast["model_version"].to_list() == [metadata["model_version"].value]
