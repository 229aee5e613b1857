"""Customer value and churn (group "churn"): weekly candidates, nightly scores.

models/churn.py and models/clv.py do the work; storepulse/lifecycle.py trains,
versions, chooses the champion per store, records and reloads. This module holds
only the loaders, the two specs and the assets' metadata.

- models/clv, scores/clv: P(alive), expected orders in 90 and 365 days, predicted
  365-day revenue, expected next order date (BG/NBD + Gamma-Gamma, or the learned
  model where it wins its holdout).
- models/churn, scores/churn: P(no order within horizon_days) from LightGBM, BG/NBD
  or recency (whichever wins per store), a 0-100 risk score relative to the store's
  plausibly active customers, band, top reasons, value at risk = predicted 365-day
  revenue x churn probability.
"""

import dataclasses
from collections.abc import Callable
from datetime import date, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from models import churn, clv
from pipelines.assets.staging import staging_inputs
from pipelines.config import model_settings
from pipelines.metadata import plot, preview, pyplot
from pipelines.model_assets import (
    ScoreRun,
    of_store,
    score_all,
    scoring_asset,
    train_window,
    training_asset,
)
from pipelines.resources import RunSettings, StorepulseResource
from storepulse import lifecycle
from storepulse.inputs.churn import INPUT_KINDS, load_inputs, load_store, load_training, population
from storepulse.memory import training_allowance
from storepulse.warehouse import query, table_exists

CHURN_MODEL = dg.AssetKey(["models", "churn"])
CHURN_SCORES = dg.AssetKey(["scores", "churn"])
CLV_MODEL = dg.AssetKey(["models", "clv"])
CLV_SCORES = dg.AssetKey(["scores", "clv"])
CHURN_APPROVED = "churn_champion_approved"
CLV_APPROVED = "clv_champion_approved"
INPUTS = staging_inputs(*INPUT_KINDS)
# Churn and CLV draw their training customers the same way (models/sampling.py).
MAX_TRAIN_CUSTOMERS = Field(
    default=60_000,
    description="Train and backtest on at most about this many customers, drawn per store "
    "(0 = all); memory stays bounded, every customer is still scored. Lowered further "
    "when the run would exceed STOREPULSE_MEMORY_BUDGET.",
)


class ChurnConfig(dg.Config):
    """Churn settings (Launchpad-editable). Defaults = models.churn.ChurnSettings."""

    horizon_days: int = Field(default=90, description="Churn = no order within this many days.")
    cutoff_step_days: int = Field(default=30, description="Spacing of stacked training cutoffs.")
    n_train_cutoffs: int = Field(
        default=12, description="How many past cutoffs to stack (a year of monthly ones)."
    )
    high_risk_above: float = Field(
        default=80.0, description="risk_score above this = 'high' (the top of the at-risk list)."
    )
    medium_risk_above: float = Field(default=50.0, description="risk_score above this = 'medium'.")
    active_window_days: int = Field(
        default=365,
        description="Customers who ordered within this many days are the plausibly active ones "
        "risk_score ranks; older customers are 'lapsed'.",
    )
    value_window_days: int = Field(
        default=365, description="Without a CLV score: value at risk from this many days' spend."
    )
    calibration: str = Field(default="sigmoid", description="'sigmoid' (Platt) or 'isotonic'.")
    validation: str = Field(
        default="customers",
        description="'customers': early stopping and calibration on held-out customers; "
        "'time': on the newest labelled cutoff.",
    )
    validation_share: float = Field(default=0.25, description="Held-out share of customers.")
    min_auc_gain: float = Field(
        default=0.0,
        description="A more complex method must beat a simpler one's AUC by more than this "
        "(and be no worse on Brier) to become champion.",
    )
    max_train_customers: int = MAX_TRAIN_CUSTOMERS
    seed: int = Field(default=42, description="Seed for LightGBM (training is deterministic).")
    explain_top_reasons: bool = Field(
        default=True,
        description="Fill top_reasons from LightGBM contributions (about 4x the cost of a "
        "plain prediction, still over 100,000 customers a second; off for the fastest runs).",
    )

    def settings(self) -> churn.ChurnSettings:
        return model_settings(self, churn.ChurnSettings)


class ClvConfig(dg.Config):
    """Customer-value settings (Launchpad-editable). Defaults = models.clv.ClvSettings."""

    horizon_days: int = Field(default=90, description="The learned model's horizon (90 or 365).")
    cutoff_step_days: int = Field(default=45, description="Spacing of stacked training cutoffs.")
    n_train_cutoffs: int = Field(default=6, description="How many past cutoffs to stack.")
    next_order_max_days: int = Field(
        default=365, description="No expected next order date further away than this."
    )
    max_train_customers: int = MAX_TRAIN_CUSTOMERS
    seed: int = Field(default=0, description="Seed for LightGBM (training is deterministic).")

    def settings(self) -> clv.ClvSettings:
        return model_settings(self, clv.ClvSettings)


# --------------------------------------------------------------------------- specs


def _train_churn(inputs: dict, as_of: date, config: ChurnConfig) -> lifecycle.Candidates:
    result, guard = _fit(
        churn.train, inputs, as_of, config, CHURN_BYTES_PER_CUSTOMER, "churn",
        min_auc_gain=config.min_auc_gain,
    )  # fmt: skip
    overall, per_store, unavailable = {}, {}, {}
    for method, found in result.candidates.items():
        if not found["available"]:
            unavailable[method] = found["reason"]
            continue
        overall[method] = _with_n(found["metrics"] or {})
        for store, values in (found["store_metrics"] or {}).items():
            per_store.setdefault(store, {})[method] = _with_n(values)
    model = result.model
    window = model.train_window if model else _train_window(inputs, as_of)
    return lifecycle.Candidates(
        artifact=result.models,
        overall=overall,
        per_store=per_store,
        train_window=window,
        unavailable=unavailable,
        backtest_cutoff=result.backtest.cutoff if result.backtest else None,
        card={
            "features": list(churn.FEATURES),
            "categorical_features": list(churn.CATEGORICAL_FEATURES),
            "best_iteration": model.best_iteration if model else None,
            "feature_importance_gain": model.feature_importance if model else {},
            "training_sample": result.training_sample,
            "memory_guard": guard,
        },
        run_metrics={
            "train_seconds": result.train_seconds,
            "n_train_rows": model.n_train_rows if model else 0,
            "training_sample": result.training_sample,
        },  # fmt: skip
        report=result,
    )


# Peak memory per training customer (churn: features of ~26 cutoffs; CLV: ~14), measured
# on medium seed 0 (docs/scaling.md); the memory guard divides the budget by it.
CHURN_BYTES_PER_CUSTOMER = 12_000
CLV_BYTES_PER_CUSTOMER = 11_000


def _fit(fit: Callable, inputs: dict, as_of: date, config, per_customer: int, what: str, **extra):
    """(what `fit` learns from the orders, customers and sessions before as_of, the memory
    guard's note): the config's settings, with a training sample that fits the memory
    budget. No orders: nothing to train.

    `inputs`: load_inputs' (every customer; the model draws the sample) or the training
    loader's (`_training_loader`: the sample drawn and the guard applied while loading)."""
    if inputs["orders"].is_empty():
        raise lifecycle.NothingToTrain(f"no orders before {as_of}")
    settings = config.settings()
    if "population" in inputs:
        note, population = inputs["memory_guard"], inputs["population"]
        allowed = inputs["max_train_customers"]
    else:
        population = None
        customers = inputs["orders"].select("store_id", "customer_id").n_unique()
        allowance = training_allowance(settings.max_train_customers, customers, per_customer, what)
        note, allowed = allowance.note, allowance.customers
    if note is not None:
        settings = dataclasses.replace(settings, max_train_customers=allowed)
    result = fit(
        inputs["orders"], as_of, customers=inputs["customers"], sessions=inputs["sessions"],
        settings=settings, seed=config.seed, population=population, **extra,
    )  # fmt: skip
    return result, note


def _training_loader(per_customer: int, what: str) -> Callable[..., dict]:
    """ModelSpec.load_training: only the training sample's customers (issue #18), drawn as
    the model would draw it from every order, the memory guard applied first."""

    def load(con, as_of: date, config) -> dict:
        settings = config.settings()
        keys = population(con, as_of)
        allowance = training_allowance(
            settings.max_train_customers, keys.height, per_customer, what
        )
        allowed = (
            allowance.customers if allowance.note is not None else settings.max_train_customers
        )
        data = load_training(con, as_of, allowed, config.seed, keys=keys)
        return {
            "orders": data.orders,
            "customers": data.customers,
            "sessions": data.sessions,
            "population": data.population,
            "first_order_date": data.first_order_date,
            "fingerprint": data.fingerprint,
            "memory_guard": allowance.note,
            "max_train_customers": allowed,
        }

    return load


def _train_window(inputs: dict, as_of: date) -> str:
    """train_window of every order before as_of (not only the training sample's)."""
    if "first_order_date" in inputs:
        first = inputs["first_order_date"]
        return train_window(pl.Series([first] if first else [], dtype=pl.Date), as_of)
    return train_window(inputs["orders"]["order_date"], as_of)


def _with_n(values: dict) -> dict:
    return {**values, "n": values.get("n_customers") or values.get("customers") or 0}


def _train_clv(inputs: dict, as_of: date, config: ClvConfig) -> lifecycle.Candidates:
    result, guard = _fit(clv.fit, inputs, as_of, config, CLV_BYTES_PER_CUSTOMER, "CLV")
    unavailable = dict(result.model.unavailable)
    overall, per_store = {}, {}
    stores = {s for b in result.backtest.values() for m in b["store_metrics"].values() for s in m}
    for method in clv.METHODS:
        if method in unavailable:
            continue
        overall[method] = clv.flat_metrics(result.backtest, method) or {}
        for store in stores:
            flat = clv.flat_metrics(result.backtest, method, store)
            if flat is not None:
                per_store.setdefault(store, {})[method] = flat
    return lifecycle.Candidates(
        artifact=result.model,
        overall=overall,
        per_store=per_store,
        train_window=_train_window(inputs, as_of),
        unavailable=unavailable,
        backtest_cutoff=as_of - timedelta(days=90),
        card={"training_sample": result.training_sample, "memory_guard": guard},
        run_metrics={
            "train_seconds": result.train_seconds,
            "training_sample": result.training_sample,
        },
        report=result,
    )


def _fingerprint(inputs: dict) -> str:
    """Of every order and customer before as_of (the training loader streams it)."""
    if "fingerprint" in inputs:
        return inputs["fingerprint"]
    return lifecycle.frame_fingerprint(
        inputs["orders"].select("store_id", "order_id", "customer_id", "order_date", "total_usd"),
        inputs["customers"],
    )


CHURN_SPEC = lifecycle.ModelSpec(
    name=churn.MODEL_NAME,
    methods=("recency", "bgnbd", "lightgbm"),  # simplest first
    primary="auc",
    higher_is_better=True,
    min_gain=0.0,
    min_store_n=300,  # customers in the store's backtest
    code_version="churn-2",
    load=load_inputs,
    train=_train_churn,
    fingerprint=_fingerprint,
    load_store=load_store,
    load_training=_training_loader(CHURN_BYTES_PER_CUSTOMER, "churn"),
    guard=("brier", False),
    min_gain_setting="min_auc_gain",
    regression_margin=0.05,  # AUC dropping by more than 5 % of its value
    labels={"lightgbm": "LightGBM", "bgnbd": "BG/NBD", "recency": "the days-since-last-order rule"},
)

CLV_SPEC = lifecycle.ModelSpec(
    name=clv.MODEL_NAME,
    methods=("bgnbd_gg", "lightgbm"),
    primary="rmse_orders",
    higher_is_better=False,
    min_gain=0.0,
    min_store_n=300,
    code_version="clv-1",
    load=load_inputs,
    train=_train_clv,
    fingerprint=_fingerprint,
    load_store=load_store,
    load_training=_training_loader(CLV_BYTES_PER_CUSTOMER, "CLV"),
    beats=clv.learned_beats,
    explain=clv.explain,
    labels={"lightgbm": "the learned model", "bgnbd_gg": "BG/NBD + Gamma-Gamma"},
)


# --------------------------------------------------------------------------- weekly


clv_model = training_asset(
    CLV_SPEC, ClvConfig, CLV_MODEL, CLV_APPROVED, "customer value", group_name="churn",
    deps=INPUTS,
    description="Customer-value candidates (storepulse/lifecycle.py): BG/NBD + Gamma-Gamma per "
    "store, and BTYD with residual boosting on the churn features; backtested on the newest "
    "fully observed 90- and 365-day holdouts (per-customer RMSE of orders and revenue, the "
    "aggregate, calibration by decile); the champion per store; model_store/clv/.",
)  # fmt: skip

churn_model = training_asset(
    CHURN_SPEC, ChurnConfig, CHURN_MODEL, CHURN_APPROVED, "churn", group_name="churn",
    deps=INPUTS,
    description="Churn candidates (storepulse/lifecycle.py): LightGBM boosted from a covariate "
    "MBG/NBD prior, BG/NBD P(no order within the horizon), and the days-since-last-order rule; "
    "backtested on the newest fully observed cutoff (AUC, PR-AUC, Brier, lift); the champion "
    "per store (ties go to the simpler method); model_store/churn/.",
)  # fmt: skip


# --------------------------------------------------------------------------- nightly


def _score_customers(
    context: dg.AssetExecutionContext,
    spec: lifecycle.ModelSpec,
    config: ChurnConfig | ClvConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
    step: str,
    empty: pl.DataFrame,
    score: Callable[[lifecycle.Release, dict, date, str, str], pl.DataFrame],
    load_store: Callable[..., dict] | None = None,
) -> ScoreRun:
    """score_all into scores.<step>, each store's customers on their own, read store by
    store (`load_store`, default the spec's): `score(release, inputs of the store, as_of,
    store, method)`. A store without orders before as_of cannot be scored."""

    per_store = (load_store or spec.load_store) is not None

    def score_one(release, mine, as_of, store, method):
        if not per_store:  # every store's inputs: the store's slice
            mine = of_store(mine, store)
        if mine["orders"].is_empty():
            raise lifecycle.CannotScore(f"no orders before {as_of}")
        return score(release, mine, as_of, store, method)

    return score_all(
        context, spec, config, storepulse, run_settings,
        step=step, table=f"scores.{step}", empty=empty, score_one=score_one,
        load_store=load_store,
    )  # fmt: skip


def score_clv(release: lifecycle.Release, mine: dict, as_of: date, store: str, method: str):
    """One store's scores.clv rows with `method` (nightly step and per-store runs)."""
    return clv.score(
        release.artifact, mine["orders"], as_of, release.version,
        customers=mine["customers"], sessions=mine["sessions"], method_of_store={store: method},
    )  # fmt: skip


def churn_store_inputs(con, as_of: date, store: str, clv_rows: pl.DataFrame | None = None) -> dict:
    """One store's churn inputs and its customers' predicted value: `clv_rows` when the
    caller has them (a per-store run's fresh CLV), else scores.clv's rows of the store."""
    if clv_rows is None and table_exists(con, "scores.clv"):
        clv_rows = query(
            con,
            "select store_id, customer_id, predicted_revenue_365d_usd from scores.clv"
            " where store_id = ?",
            [store],
        )
    # Without any, value at risk comes from the last value_window_days' spend.
    return {**CHURN_SPEC.load_store(con, as_of, store), "clv": clv_rows}


def score_churn(
    release: lifecycle.Release, mine: dict, as_of: date, store: str, method: str, explain: bool
) -> pl.DataFrame:
    """One store's scores.churn rows with `method` (nightly step and per-store runs)."""
    return churn.score_methods(
        release.artifact, mine["orders"], as_of, release.version,
        method_of_store={store: method}, customers=mine["customers"],
        sessions=mine["sessions"], explain=explain, clv=mine["clv"],
    )  # fmt: skip


@scoring_asset(
    CLV_SCORES,
    "clv",
    group_name="churn",
    deps=[CLV_MODEL, *INPUTS],
    description=(
        "Customer value of every customer with an order before as_of: P(alive), expected "
        "orders in 90 and 365 days, predicted 365-day revenue (USD), expected next order date; "
        "each store from its champion (model_version names the method). Trained first when no "
        "approved version exists."
    ),
)
def clv_scores(
    context: dg.AssetExecutionContext,
    config: ClvConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    run = _score_customers(
        context, CLV_SPEC, config, storepulse, run_settings, "clv", clv.empty_clv(), score_clv
    )
    scores = run.scores
    by_store = (
        scores.group_by("store_id")
        .agg(
            customers=pl.len(),
            predicted_revenue_365d_usd=pl.col("predicted_revenue_365d_usd").sum().round(0),
            expected_orders_90d=pl.col("expected_orders_90d").sum().round(1),
            mean_p_alive=pl.col("p_alive").mean().round(3),
            due_next_30_days=(
                pl.col("expected_next_order_date") < run.as_of + timedelta(days=30)
            ).sum(),
        )
        .sort("store_id")
    )
    return run.result(
        {
            "by_store": preview(by_store),
            "preview": preview(_top(scores, "predicted_revenue_365d_usd")),
        }
    )


@scoring_asset(
    CHURN_SCORES,
    "churn",
    group_name="churn",
    deps=[CHURN_MODEL, CLV_SCORES, *INPUTS],
    description=(
        "Churn risk of every customer with an order before as_of, each store from its "
        "champion (LightGBM, BG/NBD or the recency rule; model_version names it): calibrated "
        "probability, 0-100 risk score relative to the store's plausibly active customers "
        "(ordered within active_window_days; older ones are 'lapsed'), band (high > 80: the top "
        "of the at-risk list), top three reasons in words, value at risk = predicted 365-day "
        "revenue (scores.clv) x churn probability."
    ),
)
def churn_scores(
    context: dg.AssetExecutionContext,
    config: ChurnConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    def score(release, mine, as_of, store, method):
        return score_churn(release, mine, as_of, store, method, config.explain_top_reasons)

    run = _score_customers(
        context, CHURN_SPEC, config, storepulse, run_settings, "churn", churn.empty_scores(),
        score, load_store=churn_store_inputs,
    )  # fmt: skip
    scores = run.scores
    bands = (
        scores.group_by("risk_band")
        .agg(
            customers=pl.len(),
            value_at_risk_usd=pl.col("value_at_risk_usd").sum().round(2),
            mean_probability=pl.col("churn_probability").mean().round(4),
        )
        .sort("risk_band")
    )
    return run.result(
        {
            "risk_bands": preview(bands),
            "value_at_risk_usd": float(scores["value_at_risk_usd"].sum() or 0.0),
            "customers_per_second": round(scores.height / run.seconds) if run.seconds else None,
            "probability_histogram": _histogram(scores),
            "preview": preview(_top(scores, "value_at_risk_usd")),
        }
    )


def _top(scores: pl.DataFrame, by: str, rows: int = 10) -> pl.DataFrame:
    """The preview's rows, highest `by` first, without sorting (a copy of) every score."""
    return scores.top_k(rows, by=by).sort(by, descending=True)


def _histogram(scores: pl.DataFrame):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(scores["churn_probability"].to_numpy(), bins=20, range=(0, 1), color="#dc2626")
    ax.set_title("Churn probability, all customers")
    ax.set_xlabel("P(no order within the horizon)")
    ax.grid(alpha=0.3)
    return plot(fig)
