"""Demand: weekly forecasting model, nightly forecast, and the reorder plan (group "demand").

models/demand.py and models/reorder.py do the work; these assets read staging,
save the model in the model store, record the backtest in ops.model_runs, and
write scores.demand_forecast and marts.reorder_plan.
"""

import time
from datetime import date, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from models import demand, reorder
from pipelines.assets.staging import staging_inputs, staging_key
from pipelines.config import model_settings
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot, table_metadata
from pipelines.model_assets import (
    score_all,
    scoring_asset,
    train_window,
    training_asset,
)
from pipelines.resources import RunSettings, StorepulseResource
from storepulse import lifecycle
from storepulse.inputs.demand import load_history, load_inventory, load_store_history
from storepulse.warehouse import query, replace_table, table_exists

DEMAND_MODEL = dg.AssetKey(["models", "demand"])
DEMAND_FORECAST = dg.AssetKey(["scores", "demand_forecast"])
REORDER_PLAN = dg.AssetKey(["marts", "reorder_plan"])
CHAMPION_APPROVED = "demand_champion_approved"
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
    max_train_series: int = Field(
        default=8_000,
        description="Train and backtest the global model on at most about this many store x "
        "SKU series, drawn per store (0 = all); memory stays bounded, every series is still "
        "forecast.",
    )
    seed: int = Field(
        default=0, description="Seed for LightGBM, horizon and training-row sampling."
    )

    def settings(self) -> demand.DemandSettings:
        return model_settings(self, demand.DemandSettings)


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
        return model_settings(
            self,
            reorder.ReorderSettings,
            service_level_by_class={
                "A": self.service_level_a,
                "B": self.service_level_b,
                "C": self.service_level_c,
            },
        )


# --------------------------------------------------------------------------- lifecycle


def _train(
    history: demand.DemandHistory, as_of: date, config: DemandConfig
) -> lifecycle.Candidates:
    if history.daily.is_empty():
        raise lifecycle.NothingToTrain(
            f"no store has order lines before {as_of}: demand needs order_lines (or Shopify "
            "line items)"
        )
    settings = config.settings()
    started = time.perf_counter()
    found = demand.train_candidates(history, settings, seed=config.seed)
    seconds = round(time.perf_counter() - started, 2)
    notes = {**history.skipped_stores, **history.notes}
    window = train_window(history.daily["date"], as_of)
    if found.training is None:
        return lifecycle.Candidates(found.artifact, found.overall, {}, window, found.unavailable,
                          store_notes=notes, run_metrics={"train_seconds": seconds})  # fmt: skip
    training = found.training
    bt = training.backtest
    return lifecycle.Candidates(
        artifact=found.artifact,
        overall=found.overall,
        per_store=found.per_store,
        train_window=window,
        unavailable=found.unavailable,
        backtest_cutoff=bt.cutoff,
        store_notes=notes,
        card={
            "features": list(training.model.features),
            "categorical_features": list(demand.CATEGORICAL),
            "params": {**settings.lgbm_params, "seed": config.seed},
            "num_boost_round": settings.num_boost_round,
            "interval": training.model.interval.__dict__,
            "feature_importance_gain": dict(training.model.feature_importance().iter_rows()),
            "training_sample": found.training_sample,
        },
        report=(bt, history),
        run_metrics={
            "backtest_cutoff": bt.cutoff,
            "horizon_days": settings.horizon_days,
            "train_rows": training.model.train_rows,
            "target_days": training.model.target_days,
            "train_seconds": seconds,
            "series": history.daily.select("store_id", "sku").n_unique(),
            "by_store": bt.by_store.to_dicts(),
            "by_abc": bt.by_abc.to_dicts(),
        },
    )


SPEC = lifecycle.ModelSpec(
    name=demand.MODEL_NAME,
    methods=demand.METHODS,
    primary="wape",
    higher_is_better=False,
    # Half a point of WAPE: less is a tie, and a tie goes to the simpler method.
    min_gain=0.005,
    min_store_n=500,  # observed store x SKU days in the store's backtest
    code_version="demand-3",
    load=load_history,
    train=_train,
    fingerprint=lambda history: lifecycle.frame_fingerprint(
        history.daily.select("store_id", "sku", "date", "units")
    ),
    labels={
        "lightgbm": "LightGBM",
        "seasonal_naive": "the seasonal naive baseline",
        "moving_average_28": "the 28-day moving average",
    },
)


def _model_metadata(release: lifecycle.Release) -> dict:
    training = release.artifact.model
    if training is None or release.report is None:
        return {}
    bt, history = release.report
    return {
        "backtest_cutoff": bt.cutoff.isoformat(),
        "backtest_by_store": preview(_rounded(bt.by_store), rows=40),
        "backtest_by_abc_class": preview(_rounded(bt.by_abc)),
        "actual_vs_forecast": _backtest_plot(bt, history),
        "interval_calibration": metrics(training.interval.__dict__),
        "train_rows": training.train_rows,
        "skipped_stores": metrics(history.skipped_stores),
        "feature_importance": preview(_rounded(training.feature_importance()), rows=15),
    }


demand_model = training_asset(
    SPEC, DemandConfig, DEMAND_MODEL, CHAMPION_APPROVED, "demand", group_name="demand",
    deps=staging_inputs(*INPUT_KINDS), extra=_model_metadata,
    description="Demand candidates, one lifecycle (storepulse/lifecycle.py): one global "
    "LightGBM (Tweedie) over store x SKU daily units, direct multi-horizon, censored on "
    "stock-out days, calibrated p10/p50/p90; and its baselines (seasonal naive, 28-day moving "
    "average). Backtested on the last full horizon before as_of (WAPE, bias, MASE, coverage; "
    "by store and ABC class); the champion is chosen per store; saved to "
    "model_store/demand/<version>/ and recorded in ops.model_runs.",
)  # fmt: skip


@scoring_asset(
    DEMAND_FORECAST,
    "demand",
    group_name="demand",
    deps=[DEMAND_MODEL, *staging_inputs(*INPUT_KINDS)],
    description=(
        "Daily demand forecast per store x SKU for horizon_days from as_of: p10/p50/p90 "
        "(quantiles of the day's units) and expected_units (the mean, for sums over days), "
        "each store from its champion in the latest approved demand version trained up to "
        "as_of (model_version names the method), down to the moving average where a method "
        "cannot run. Trained first when none exists. Stores without order lines are skipped; "
        "ops.store_status says what each store got and why."
    ),
)
def demand_forecast(
    context: dg.AssetExecutionContext,
    config: DemandConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    def forecast_store(release, history, as_of, store: str, method: str) -> pl.DataFrame:
        mine = demand.history_for_store(history, store)
        if mine.daily.is_empty():
            raise lifecycle.CannotScore(
                history.skipped_stores.get(store)
                or "no order lines before as_of: demand needs order_lines"
            )
        return (
            release.artifact.forecast(mine, method)
            .with_columns(
                pl.lit(release.model_version(method)).alias("model_version"),
                pl.lit(as_of).alias("as_of"),
            )
            .select(FORECAST_COLUMNS)
        )

    run = score_all(
        context, SPEC, config, storepulse, run_settings,
        step="demand", table="scores.demand_forecast",
        empty=pl.DataFrame(schema=FORECAST_SCHEMA), score_one=forecast_store,
    )  # fmt: skip
    table = run.scores
    by_store = (
        table.group_by("store_id")
        .agg(
            skus=pl.col("sku").n_unique(),
            expected_units=pl.col("expected_units").sum().round(1),
            p50_units=pl.col("p50").sum(),
            model_version=pl.col("model_version").first(),
        )
        .sort("store_id")
    )
    metadata = {"by_store": preview(by_store)}
    if run.release is not None:
        metadata |= {
            "horizon_days": run.release.artifact.horizon_days,
            "history_and_forecast": _forecast_plot(table, run.inputs),
            "preview": preview(_rounded(table.drop("model_version", "as_of"))),
        }
    return run.result(metadata)


# scores.demand_forecast, and the order forecast_store gives its columns.
FORECAST_SCHEMA = {
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
FORECAST_COLUMNS = tuple(FORECAST_SCHEMA)


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
                    **table_metadata(rows, as_of),
                    "skipped": "no store has a demand forecast (no order lines)",
                }
            )
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
        # Store by store: one store's history in memory at a time (issue #18); every step
        # of the plan is per store x SKU, and the stores' plans are ordered together.
        plans = []
        for store in sorted(forecast_stores & stock_stores):
            history = load_store_history(con, as_of, store)
            plans.append(
                reorder.reorder_plan(
                    forecast.filter(pl.col("store_id") == store),
                    inventory.filter(pl.col("store_id") == store),
                    history.daily.select("store_id", "sku", "date", "units"),
                    demand.abc_classes(history),
                    as_of,
                    config.settings(),
                )
            )
            del history
        plan = (
            reorder.sort_plan(pl.concat(plans, how="vertical_relaxed"))
            if plans
            else reorder.empty_plan()
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
            **table_metadata(rows, as_of),
            "by_store": preview(summary),
            "skipped_stores": metrics(skipped),
            "most_urgent": preview(_rounded(plan.drop("as_of")), rows=15),
            "abc_classes": metrics(dict(plan["abc_class"].value_counts().iter_rows())),
        }
    )


def _empty_plan(as_of: date) -> pl.DataFrame:
    return reorder.empty_plan().with_columns(
        pl.lit(None, pl.Int64).alias("urgency_rank"), pl.lit(as_of).alias("as_of")
    )


def _rounded(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).round(4))


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
    plt = pyplot()
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
