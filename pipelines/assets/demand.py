"""Demand: weekly forecasting model, nightly forecast, and the reorder plan (group "demand").

models/demand.py and models/reorder.py do the work; these assets read staging,
save the model in the model store, record the backtest in ops.model_runs, and
write scores.demand_forecast and marts.reorder_plan.
"""

import hashlib
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from models import demand, reorder
from pipelines.assets.staging import PRIVACY_APPLIED, staging_key
from pipelines.metadata import OWNER, metrics, plot, preview
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.inputs.demand import load_history, load_inventory
from storepulse.model_store import (
    fingerprint,
    latest_approved,
    load_model,
    make_version,
    record_run,
    save_model,
)
from storepulse.warehouse import query, replace_table, table_exists

DEMAND_MODEL = dg.AssetKey(["models", "demand"])
DEMAND_FORECAST = dg.AssetKey(["scores", "demand_forecast"])
REORDER_PLAN = dg.AssetKey(["marts", "reorder_plan"])
BEATS_BASELINES = "demand_beats_baselines"
INPUT_KINDS = ("orders", "order_lines", "inventory", "products", "stores")
TOP_SKUS_PLOTTED = 6


class DemandConfig(dg.Config):
    """Demand model settings (Launchpad-editable). Defaults = models.demand.DemandSettings."""

    horizon_days: int = Field(default=demand.HORIZON_DAYS, description="Days forecast ahead.")
    train_days: int = Field(
        default=365, description="Most recent days of history used as training targets."
    )
    num_boost_round: int = Field(default=demand.NUM_BOOST_ROUND, description="LightGBM rounds.")
    interval_coverage: float = Field(
        default=0.8, description="Share of actual days [p10, p90] is calibrated to hold."
    )
    sample_level: float = Field(
        default=demand.DemandSettings.sample_level,
        description="Training rows of series below this multiple of the mean level are "
        "importance-sampled (faster training, same expected loss); 0 keeps every row.",
    )
    seed: int = Field(
        default=0, description="Seed for LightGBM, horizon and training-row sampling."
    )

    def settings(self) -> demand.DemandSettings:
        return demand.DemandSettings(
            horizon_days=self.horizon_days,
            train_days=self.train_days,
            num_boost_round=self.num_boost_round,
            interval_coverage=self.interval_coverage,
            sample_level=self.sample_level,
        )


class ReorderConfig(dg.Config):
    """Reorder policy (Launchpad-editable). Defaults = models.reorder.ReorderSettings."""

    service_level_a: float = Field(default=0.98, description="Service level of A SKUs.")
    service_level_b: float = Field(default=0.95, description="Service level of B SKUs.")
    service_level_c: float = Field(default=0.90, description="Service level of C SKUs.")
    order_cycle_days: int = Field(
        default=28, description="Days of demand an order covers beyond the lead time."
    )
    default_lead_time_days: int = Field(
        default=14, description="Lead time when the inventory export has none."
    )
    aged_days: int = Field(default=180, description="Stock older than this is aged.")
    overstock_cover_days: int = Field(
        default=180, description="More days of cover than this is overstock."
    )

    def settings(self) -> reorder.ReorderSettings:
        return reorder.ReorderSettings(
            service_level_by_class={
                "A": self.service_level_a,
                "B": self.service_level_b,
                "C": self.service_level_c,
            },
            order_cycle_days=self.order_cycle_days,
            default_lead_time_days=self.default_lead_time_days,
            aged_days=self.aged_days,
            overstock_cover_days=self.overstock_cover_days,
        )


class NoDemandData(Exception):
    """Nothing to train on (no order lines, or less history than one horizon)."""


def train_and_record(
    con: duckdb.DuckDBPyConnection,
    storepulse: StorepulseResource,
    as_of: date,
    config: DemandConfig,
    log,
) -> tuple[str, demand.DemandTraining, demand.DemandHistory, float]:
    """Backtest, fit, save to the model store and record in ops.model_runs.

    The one training path: the weekly asset and the nightly fallback both use it.
    Raises NoDemandData when there is nothing to learn from (a skip, not an error:
    orders without order lines are valid input, DESIGN §3).
    """
    history = load_history(con, as_of)
    for store, reason in {**history.skipped_stores, **history.notes}.items():
        log.warning(f"demand, store {store}: {reason}")
    if history.daily.is_empty():
        raise NoDemandData(
            f"no store has order lines before {as_of}: demand needs order_lines (or "
            "Shopify line items); skipped"
        )
    settings = config.settings()
    started = time.perf_counter()
    try:
        training = demand.train(history, settings, seed=config.seed)
    except ValueError as exc:
        raise NoDemandData(
            f"not enough history before {as_of} for a {settings.horizon_days}-day backtest "
            f"({exc}); skipped"
        ) from exc
    seconds = time.perf_counter() - started
    bt = training.backtest
    data_print = fingerprint(history.daily.select("store_id", "sku", "date", "units"))
    recipe = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:8]
    version = make_version(demand.MODEL_NAME, as_of, data_print[:4] + recipe[:4])
    best = bt.best_baseline
    reason = (
        f"backtest WAPE {bt.metrics['wape']:.3f} vs best baseline {best} "
        f"{bt.baseline_metrics[best]['wape']:.3f}"
        + (": approved" if training.approved else ": not better, not approved")
    )
    train_window = f"{history.daily['date'].min()}..{as_of - timedelta(days=1)}"
    run_metrics = {
        **bt.metrics,
        "backtest_cutoff": bt.cutoff,
        "horizon_days": settings.horizon_days,
        "train_rows": training.model.train_rows,
        "target_days": training.model.target_days,
        "train_seconds": round(seconds, 2),
        "series": history.daily.select("store_id", "sku").n_unique(),
        "by_store": bt.by_store.to_dicts(),
        "by_abc": bt.by_abc.to_dicts(),
    }
    card = {
        "train_window": train_window,
        "as_of": as_of,
        "backtest_cutoff": bt.cutoff,
        "features": list(training.model.features),
        "categorical_features": list(demand.CATEGORICAL),
        "params": {**settings.lgbm_params, "seed": config.seed},
        "num_boost_round": settings.num_boost_round,
        "settings": config.model_dump(),
        "interval": training.model.interval.__dict__,
        "metrics": bt.metrics,
        "baseline_metrics": bt.baseline_metrics,
        "approved": training.approved,
        "reason": reason,
        "data_fingerprint": data_print,
        "skipped_stores": history.skipped_stores,
        "notes": history.notes,
        "feature_importance_gain": dict(training.model.feature_importance().iter_rows()),
        "train_seconds": seconds,
    }
    save_model(storepulse.paths().model_store, demand.MODEL_NAME, version, training.model, card)
    record_run(
        con,
        model=demand.MODEL_NAME,
        version=version,
        trained_at=datetime.now(UTC).replace(tzinfo=None),
        train_window=train_window,
        metrics=run_metrics,
        baseline_metrics=bt.baseline_metrics,
        approved=training.approved,
        reason=reason,
    )
    return version, training, history, seconds


@dg.asset(
    key=DEMAND_MODEL,
    group_name="demand",
    deps=[*(staging_key(k) for k in INPUT_KINDS), PRIVACY_APPLIED],
    kinds={"lightgbm", "polars"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_BASELINES,
            asset=DEMAND_MODEL,
            blocking=True,
            description=(
                "The backtest WAPE (last full horizon before as_of) beats the best baseline: "
                "seasonal naive (same weekday last week) and the 28-day moving average. "
                "Otherwise the model is not approved and the last approved one keeps scoring."
            ),
        )
    ],
    description=(
        "Demand model: one global LightGBM (Tweedie) over store x SKU daily units, direct "
        "multi-horizon (horizon as a feature), censored on stock-out days, with calibrated "
        "p10/p50/p90. Backtested on the last full horizon before as_of next to seasonal naive "
        "and a 28-day moving average (WAPE, bias, MASE, coverage; by store and ABC class); "
        "saved to model_store/demand/<version>/ and recorded in ops.model_runs."
    ),
)
def demand_model(
    context: dg.AssetExecutionContext,
    config: DemandConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        try:
            version, training, history, seconds = train_and_record(
                con, storepulse, as_of, config, context.log
            )
        except NoDemandData as skipped:
            context.log.warning(f"demand model: {skipped}")
            return dg.MaterializeResult(
                metadata={"as_of": as_of.isoformat(), "skipped": str(skipped)},
                check_results=[
                    dg.AssetCheckResult(
                        check_name=BEATS_BASELINES,
                        passed=False,
                        # Nothing was trained, so nothing can be published: warn, not fail.
                        severity=dg.AssetCheckSeverity.WARN,
                        metadata={"skipped": str(skipped)},
                    )
                ],
            )
    bt = training.backtest
    (context.log.info if training.approved else context.log.warning)(
        f"{version}: WAPE {bt.metrics['wape']:.3f}, best baseline "
        f"{bt.baseline_metrics[bt.best_baseline]['wape']:.3f}"
    )
    best = bt.baseline_metrics[bt.best_baseline]
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": version,
            "approved": training.approved,
            "backtest_cutoff": bt.cutoff.isoformat(),
            "backtest": preview(_rounded(_backtest_table(bt))),
            "backtest_by_store": preview(_rounded(bt.by_store), rows=40),
            "backtest_by_abc_class": preview(_rounded(bt.by_abc)),
            "metrics": metrics(bt.metrics),
            "baseline_metrics": metrics(bt.baseline_metrics),
            "actual_vs_forecast": _backtest_plot(bt, history),
            "interval_calibration": metrics(training.model.interval.__dict__),
            "train_seconds": round(seconds, 2),
            "train_rows": training.model.train_rows,
            "target_days": training.model.target_days,
            "skipped_stores": metrics(history.skipped_stores),
            "feature_importance": preview(_rounded(training.model.feature_importance()), rows=15),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=BEATS_BASELINES,
                passed=training.approved,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "model_wape": bt.metrics["wape"],
                    "best_baseline": bt.best_baseline,
                    "best_baseline_wape": best["wape"],
                    "coverage_p10_p90": bt.metrics["coverage_p10_p90"],
                },
            )
        ],
    )


@dg.asset(
    key=DEMAND_FORECAST,
    group_name="demand",
    deps=[DEMAND_MODEL, *[staging_key(k) for k in INPUT_KINDS], PRIVACY_APPLIED],
    kinds={"lightgbm", "duckdb"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Daily demand forecast per store x SKU for horizon_days from as_of: p10/p50/p90 "
        "(quantiles of the day's units) and expected_units (the mean, for sums over days), "
        "from the latest approved demand model trained on data up to as_of. When none exists "
        "yet (fresh home, early replay) it trains one first. Stores without order lines are "
        "skipped and listed in the metadata."
    ),
)
def demand_forecast(
    context: dg.AssetExecutionContext,
    config: DemandConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    model_store = storepulse.paths().model_store
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        version = latest_approved(con, demand.MODEL_NAME, as_of)
        approved = version is not None
        if version is None:
            context.log.info(f"No approved demand model up to {as_of}: training one first.")
            try:
                version, training, history, _ = train_and_record(
                    con, storepulse, as_of, config, context.log
                )
            except NoDemandData as skipped:
                context.log.warning(f"demand forecast: {skipped}")
                rows = replace_table(con, "scores.demand_forecast", _empty_forecast())
                return dg.MaterializeResult(
                    metadata={
                        "dagster/row_count": rows,
                        "as_of": as_of.isoformat(),
                        "skipped": str(skipped),
                    }
                )
            approved = training.approved
            if not approved:
                # A fresh home must still end with a forecast (DESIGN §7); say loudly
                # that it comes from a model that did not beat its baselines.
                context.log.warning(f"Forecasting with unapproved {version}.")
        else:
            history = load_history(con, as_of)
            for store, reason in {**history.skipped_stores, **history.notes}.items():
                context.log.warning(f"demand, store {store}: {reason}")
            if history.daily.is_empty():
                rows = replace_table(con, "scores.demand_forecast", _empty_forecast())
                return dg.MaterializeResult(
                    metadata={
                        "dagster/row_count": rows,
                        "as_of": as_of.isoformat(),
                        "skipped": f"no store has order lines before {as_of}",
                    }
                )
        model, _card = load_model(model_store, demand.MODEL_NAME, version)
        started = time.perf_counter()
        try:
            forecast = demand.predict(model, history)
        except demand.StaleModelError as stale:
            # An approved model saved by an older version of this code: retrain
            # rather than leave the night without a forecast.
            context.log.warning(f"{version}: {stale}. Training a new model first.")
            version, training, history, _ = train_and_record(
                con, storepulse, as_of, config, context.log
            )
            approved = training.approved
            model, _card = load_model(model_store, demand.MODEL_NAME, version)
            started = time.perf_counter()
            forecast = demand.predict(model, history)
        seconds = time.perf_counter() - started
        table = forecast.select(
            "store_id",
            "sku",
            "date",
            "p10",
            "p50",
            "p90",
            "expected_units",
            pl.lit(version).alias("model_version"),
            pl.lit(as_of).alias("as_of"),
        )
        rows = replace_table(con, "scores.demand_forecast", table)
    by_store = (
        table.group_by("store_id")
        .agg(
            skus=pl.col("sku").n_unique(),
            expected_units=pl.col("expected_units").sum().round(1),
            p50_units=pl.col("p50").sum(),
        )
        .sort("store_id")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
            "model_version": version,
            "model_approved": approved,
            "horizon_days": model.config.horizon_days,
            "by_store": preview(by_store),
            "skipped_stores": metrics(history.skipped_stores),
            "notes": metrics(history.notes),
            "forecast_seconds": round(seconds, 3),
            "history_and_forecast": _forecast_plot(table, history),
            "preview": preview(_rounded(table.drop("model_version", "as_of"))),
        }
    )


@dg.asset(
    key=REORDER_PLAN,
    group_name="demand",
    deps=[DEMAND_FORECAST, staging_key("inventory"), staging_key("order_lines")],
    kinds={"polars", "duckdb"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "What to reorder now, per store x SKU with an inventory snapshot: on hand, days of "
        "cover, expected stock-out date, lead time, safety stock from the forecast "
        "quantiles, reorder quantity ((s, S) policy), ABC class (80/15/5 % of revenue), stock "
        "older than 180 days (FIFO estimate from snapshots) and overstock. urgency_rank 1 is "
        "the most urgent. Stores without inventory snapshots are skipped."
    ),
)
def reorder_plan(
    context: dg.AssetExecutionContext,
    config: ReorderConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        forecast = (
            query(
                con,
                "select store_id, sku, date, p10, p50, p90, expected_units "
                "from scores.demand_forecast where as_of = ?",
                [as_of],
            )
            if table_exists(con, "scores.demand_forecast")
            else pl.DataFrame()
        )
        if forecast.is_empty():
            other = (
                query(con, "select distinct as_of from scores.demand_forecast")["as_of"]
                if table_exists(con, "scores.demand_forecast")
                else None
            )
            if other is None or other.len():
                raise dg.Failure(
                    f"scores.demand_forecast has no forecast for as_of {as_of}: materialize "
                    "scores/demand_forecast first with the same as_of."
                )
            # The forecast ran and skipped every store (no order lines): so does the plan.
            context.log.warning("reorder plan: no demand forecast for any store; empty plan.")
            rows = replace_table(con, "marts.reorder_plan", _empty_plan(as_of))
            return dg.MaterializeResult(
                metadata={
                    "dagster/row_count": rows,
                    "as_of": as_of.isoformat(),
                    "skipped": "no store has a demand forecast (no order lines)",
                }
            )
        history = load_history(con, as_of)
        inventory = load_inventory(con, as_of)
        forecast_stores = set(forecast["store_id"].unique())
        stock_stores = set(inventory["store_id"].unique())
        skipped = {
            **{
                s: f"no inventory snapshots before {as_of}: add an inventory export"
                for s in sorted(forecast_stores - stock_stores)
            },
            **{
                s: "no demand forecast (no order lines): nothing to plan against"
                for s in sorted(stock_stores - forecast_stores)
            },
        }
        for store, reason in skipped.items():
            context.log.warning(f"reorder plan, store {store} skipped: {reason}")
        plan = reorder.reorder_plan(
            forecast,
            inventory,
            history.daily.select("store_id", "sku", "date", "units"),
            demand.abc_classes(history),
            as_of,
            config.settings(),
        ).with_columns(
            pl.int_range(1, pl.len() + 1).alias("urgency_rank"), pl.lit(as_of).alias("as_of")
        )
        rows = replace_table(con, "marts.reorder_plan", plan)
    summary = (
        plan.group_by("store_id")
        .agg(
            skus=pl.len(),
            to_reorder=(pl.col("reorder_qty") > 0).sum(),
            units_to_order=pl.col("reorder_qty").sum(),
            stockout_within_lead_time=(pl.col("days_of_cover") < pl.col("lead_time_days")).sum(),
            aged=pl.col("aged_stock_flag").sum(),
            overstock=pl.col("overstock_flag").sum(),
        )
        .sort("store_id")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
            "by_store": preview(summary),
            "skipped_stores": metrics(skipped),
            "most_urgent": preview(_rounded(plan.drop("as_of")), rows=15),
            "abc_classes": metrics(dict(plan["abc_class"].value_counts().iter_rows())),
        }
    )


def _empty_forecast() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "store_id": pl.String,
            "sku": pl.String,
            "date": pl.Date,
            "p10": pl.Float64,
            "p50": pl.Float64,
            "p90": pl.Float64,
            "expected_units": pl.Float64,
            "model_version": pl.String,
            "as_of": pl.Date,
        }
    )


def _empty_plan(as_of: date) -> pl.DataFrame:
    return reorder.empty_plan().with_columns(
        pl.lit(None, pl.Int64).alias("urgency_rank"), pl.lit(as_of).alias("as_of")
    )


def _rounded(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).round(4))


def _backtest_table(bt: demand.DemandBacktest) -> pl.DataFrame:
    columns = ["method", "wape", "bias", "mase", "coverage_p10_p90", "actual_units", "days"]
    table = bt.table()
    return table.select([c for c in columns if c in table.columns])


def _top_skus(history: demand.DemandHistory, n: int = TOP_SKUS_PLOTTED) -> pl.DataFrame:
    return demand.abc_classes(history).sort("revenue_usd", descending=True).head(n)


def _backtest_plot(bt: demand.DemandBacktest, history: demand.DemandHistory):
    """Actual vs forecast with the p10-p90 band, for the top SKUs by revenue."""
    start = bt.cutoff - timedelta(days=2 * bt.horizon_days)
    past = history.daily.filter(pl.col("date") >= start).select(
        "store_id", "sku", "date", "units", "censored"
    )
    return _sku_panels(
        _top_skus(history),
        past,
        bt.predictions,
        f"Backtest from {bt.cutoff}: actual units vs forecast (p10-p90 band)",
        cutoff=bt.cutoff,
    )


def _forecast_plot(table: pl.DataFrame, history: demand.DemandHistory):
    start = history.as_of - timedelta(days=56)
    past = history.daily.filter(pl.col("date") >= start).select(
        "store_id", "sku", "date", "units", "censored"
    )
    return _sku_panels(
        _top_skus(history),
        past,
        table,
        f"Last 8 weeks and the forecast from {history.as_of} (p10-p90 band)",
        cutoff=history.as_of,
    )


def _sku_panels(top, past, forecast, title, cutoff):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(top.height, 1)
    cols = 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.4 * rows), squeeze=False)
    for ax, series in zip(axes.flat, top.iter_rows(named=True), strict=False):
        key = (pl.col("store_id") == series["store_id"]) & (pl.col("sku") == series["sku"])
        seen = past.filter(key).sort("date")
        fc = forecast.filter(key).sort("date")
        ax.plot(
            seen["date"].to_list(), seen["units"].to_list(), color="#111827", lw=1, label="actual"
        )
        # Stock-out days: sales there are censored, not demand (not scored, not learned).
        out = seen.filter(pl.col("censored"))
        if out.height:
            ax.scatter(out["date"].to_list(), [0] * out.height, marker="|", color="#dc2626",
                       s=30, label="stock-out")  # fmt: skip
        if fc.height:
            ax.fill_between(
                fc["date"].to_list(),
                fc["p10"].to_list(),
                fc["p90"].to_list(),
                color="#93c5fd",
                alpha=0.5,
                label="p10-p90",
            )
            ax.plot(fc["date"].to_list(), fc["expected_units"].to_list(), color="#2563eb", lw=1.5,
                    label="expected")  # fmt: skip
        ax.axvline(cutoff, color="#9ca3af", ls="--", lw=0.8)
        ax.set_title(f"{series['store_id']} / {series['sku']}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[top.height :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return plot(fig)
