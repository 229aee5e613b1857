"""Churn: weekly training + backtest + approval, nightly scoring with the approved model.

models/churn.py does the work; these assets read staging, save the artifact in
the model store, record the run in ops.model_runs and write scores.churn.
"""

import hashlib
import time
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from models import churn
from pipelines.assets.staging import PRIVACY_APPLIED, staging_key
from pipelines.metadata import OWNER, metrics, plot, preview
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.inputs.churn import INPUT_KINDS, load_inputs
from storepulse.model_store import (
    fingerprint,
    latest_approved,
    load_model,
    make_version,
    record_run,
    save_model,
)
from storepulse.warehouse import replace_table

CHURN_MODEL = dg.AssetKey(["models", "churn"])
CHURN_SCORES = dg.AssetKey(["scores", "churn"])
BEATS_BASELINES = "churn_beats_baselines"


class ChurnConfig(dg.Config):
    """Churn settings (Launchpad-editable). Defaults = models.churn.ChurnSettings."""

    horizon_days: int = Field(default=90, description="Churn = no order within this many days.")
    cutoff_step_days: int = Field(default=30, description="Spacing of stacked training cutoffs.")
    n_train_cutoffs: int = Field(
        default=12, description="How many past cutoffs to stack (a year of monthly ones)."
    )
    high_risk_above: float = Field(default=80.0, description="risk_score above this = 'high'.")
    medium_risk_above: float = Field(default=50.0, description="risk_score above this = 'medium'.")
    value_window_days: int = Field(
        default=365, description="value_at_risk = P(churn) x net spend in this many days."
    )
    calibration: str = Field(default="sigmoid", description="'sigmoid' (Platt) or 'isotonic'.")
    min_auc_gain: float = Field(
        default=0.0,
        description="Approval needs AUC >= best baseline AUC + this (and better Brier).",
    )
    seed: int = Field(default=42, description="Seed for LightGBM (training is deterministic).")
    explain_top_reasons: bool = Field(
        default=True,
        description="Fill top_reasons from LightGBM contributions (about 4x the cost of a "
        "plain prediction, still over 100,000 customers a second; off for the fastest runs).",
    )

    def settings(self) -> churn.ChurnSettings:
        return churn.ChurnSettings(
            horizon_days=self.horizon_days,
            cutoff_step_days=self.cutoff_step_days,
            n_train_cutoffs=self.n_train_cutoffs,
            high_risk_above=self.high_risk_above,
            medium_risk_above=self.medium_risk_above,
            value_window_days=self.value_window_days,
            calibration=self.calibration,
        )


def train_and_record(
    con: duckdb.DuckDBPyConnection,
    storepulse: StorepulseResource,
    as_of: date,
    config: ChurnConfig,
) -> tuple[str, churn.TrainingResult]:
    """Backtest, fit, save to the model store and record in ops.model_runs.

    The one training path: the weekly asset and the nightly fallback both use it.
    """
    inputs = load_inputs(con, as_of)
    settings = config.settings()
    try:
        result = churn.train(
            inputs["orders"],
            as_of,
            customers=inputs["customers"],
            sessions=inputs["sessions"],
            settings=settings,
            seed=config.seed,
            min_auc_gain=config.min_auc_gain,
        )
    except ValueError as exc:
        raise dg.Failure(f"churn training as of {as_of}: {exc}") from exc
    # The version changes with the data and with the recipe (settings, seed).
    data_print = fingerprint(result.data_fingerprint_frame)
    recipe = hashlib.sha256(f"{settings}|{config.model_dump_json()}".encode()).hexdigest()[:8]
    version = make_version(churn.MODEL_NAME, as_of, data_print[:4] + recipe[:4])
    model = result.model
    card = {
        "train_window": model.train_window,
        "as_of": as_of,
        "train_cutoffs": model.train_cutoffs,
        "validation_cutoff": model.validation_cutoff,
        "backtest_cutoff": result.backtest.cutoff,
        "features": list(churn.FEATURES),
        "categorical_features": list(churn.CATEGORICAL_FEATURES),
        "params": {
            **churn.lightgbm_params(settings, config.seed),
            "best_iteration": model.best_iteration,
        },
        "settings": settings.__dict__,
        "metrics": result.backtest.metrics,
        "baseline_metrics": result.backtest.baseline_metrics,
        "approved": result.approved,
        "reason": result.reason,
        "data_fingerprint": data_print,
        "feature_importance_gain": model.feature_importance,
        "train_seconds": result.train_seconds,
    }
    save_model(storepulse.paths().model_store, churn.MODEL_NAME, version, model, card)
    record_run(
        con,
        model=churn.MODEL_NAME,
        version=version,
        trained_at=datetime.now(UTC).replace(tzinfo=None),
        train_window=model.train_window,
        metrics={
            **result.backtest.metrics,
            "backtest_cutoff": result.backtest.cutoff,
            "horizon_days": settings.horizon_days,
            "best_iteration": model.best_iteration,
            "n_train_rows": model.n_train_rows,
            "train_seconds": result.train_seconds,
        },
        baseline_metrics=result.backtest.baseline_metrics,
        approved=result.approved,
        reason=result.reason,
    )
    return version, result


def _metrics_table(result: churn.TrainingResult) -> pl.DataFrame:
    rows = [{"scorer": "churn model", **result.backtest.metrics}]
    rows += [{"scorer": f"baseline: {n}", **m} for n, m in result.backtest.baseline_metrics.items()]
    return pl.DataFrame(rows).select("scorer", "auc", "pr_auc", "brier", "lift_top_decile")


@dg.asset(
    key=CHURN_MODEL,
    group_name="churn",
    deps=[*(staging_key(k) for k in INPUT_KINDS), PRIVACY_APPLIED],
    kinds={"lightgbm", "polars"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_BASELINES,
            asset=CHURN_MODEL,
            blocking=True,
            description=(
                "The backtest AUC and Brier score beat the best baseline (days since last "
                "order; BG/NBD P(no order)). Otherwise the model is not approved and the last "
                "approved version keeps scoring."
            ),
        )
    ],
    description=(
        "Churn model (LightGBM + calibration): P(no order within horizon_days). Backtested on "
        "the newest cutoff whose horizon is fully observed, next to the recency and BG/NBD "
        "baselines; saved to model_store/churn/<version>/ and recorded in ops.model_runs, "
        "approved only when it beats the best baseline's AUC and Brier score."
    ),
)
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        version, result = train_and_record(con, storepulse, as_of, config)
    (context.log.info if result.approved else context.log.warning)(f"{version}: {result.reason}")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": version,
            "approved": result.approved,
            "reason": result.reason,
            "backtest": preview(_metrics_table(result)),
            "metrics": metrics(result.backtest.metrics),
            "baseline_metrics": metrics(result.backtest.baseline_metrics),
            "train_window": result.model.train_window,
            "train_seconds": result.train_seconds,
            "train_rows": result.model.n_train_rows,
            "feature_importance": preview(
                pl.DataFrame(
                    {
                        "feature": list(result.model.feature_importance),
                        "gain": list(result.model.feature_importance.values()),
                    }
                ).sort("gain", descending=True),
                rows=12,
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=BEATS_BASELINES,
                passed=result.approved,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "model_auc": result.backtest.metrics["auc"],
                    "best_baseline_auc": result.backtest.best_baseline_auc,
                    "model_brier": result.backtest.metrics["brier"],
                    "best_baseline_brier": result.backtest.best_baseline_brier,
                    "reason": result.reason,
                },
            )
        ],
    )


@dg.asset(
    key=CHURN_SCORES,
    group_name="churn",
    deps=[CHURN_MODEL, *[staging_key(k) for k in INPUT_KINDS], PRIVACY_APPLIED],
    kinds={"lightgbm", "duckdb"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Churn risk of every customer with an order before as_of, from the latest approved "
        "model trained on data up to as_of: probability, 0-100 risk score, band (high > 80), "
        "top three reasons in words, value at risk (USD). When no approved model exists yet "
        "(fresh home, early replay) it trains one first with the weekly training code."
    ),
)
def churn_scores(
    context: dg.AssetExecutionContext,
    config: ChurnConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    model_store = storepulse.paths().model_store
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        version = latest_approved(con, churn.MODEL_NAME, as_of)
        approved = version is not None
        if version is None:
            context.log.info(f"No approved churn model up to {as_of}: training one first.")
            version, result = train_and_record(con, storepulse, as_of, config)
            approved = result.approved
            if not approved:
                # A fresh home must still end with scores (DESIGN §7); say loudly that
                # these come from a model that did not beat its baselines.
                context.log.warning(f"Scoring with unapproved {version}: {result.reason}")
        try:
            model, _card = load_model(model_store, churn.MODEL_NAME, version)
        except FileNotFoundError as exc:
            # ops.model_runs outlived the model store (a wiped or moved folder): retrain.
            context.log.warning(f"{exc}; training a replacement now.")
            version, result = train_and_record(con, storepulse, as_of, config)
            approved = result.approved
            model, _card = load_model(model_store, churn.MODEL_NAME, version)
        inputs = load_inputs(con, as_of)
        started = time.perf_counter()
        scores = churn.score(
            model,
            inputs["orders"],
            as_of,
            version,
            customers=inputs["customers"],
            sessions=inputs["sessions"],
            explain=config.explain_top_reasons,
        )
        seconds = time.perf_counter() - started
        rows = replace_table(con, "scores.churn", scores)
    bands = (
        scores.group_by("risk_band")
        .agg(
            customers=pl.len(),
            value_at_risk_usd=pl.col("value_at_risk_usd").sum().round(2),
            mean_probability=pl.col("churn_probability").mean().round(4),
        )
        .sort("risk_band")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
            "model_version": version,
            "model_approved": approved,
            "risk_bands": preview(bands),
            "value_at_risk_usd": float(scores["value_at_risk_usd"].sum() or 0.0),
            "scoring_seconds": round(seconds, 3),
            "customers_per_second": round(rows / seconds) if seconds > 0 else None,
            "probability_histogram": _histogram(scores),
            "preview": preview(scores.sort("value_at_risk_usd", descending=True)),
        }
    )


def _histogram(scores: pl.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(scores["churn_probability"].to_numpy(), bins=20, range=(0, 1), color="#dc2626")
    ax.set_title("Churn probability, all customers")
    ax.set_xlabel("P(no order within the horizon)")
    ax.grid(alpha=0.3)
    return plot(fig)
