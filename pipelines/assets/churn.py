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

import time
from datetime import date, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from models import churn, clv
from pipelines.assets.staging import PRIVACY_APPLIED, staging_key
from pipelines.metadata import OWNER, metrics, plot, preview
from pipelines.resources import RunSettings, StorepulseResource
from storepulse import lifecycle
from storepulse.inputs.churn import INPUT_KINDS, load_inputs
from storepulse.lifecycle import (
    STATUS_FAILED,
    STATUS_SKIPPED,
    Candidates,
    CannotScore,
    ModelSpec,
    NothingToTrain,
    StoreOutcome,
    frame_fingerprint,
    record_store_status,
    score_stores,
    status_frame,
)
from storepulse.publish import store_ids
from storepulse.warehouse import query, replace_table, table_exists

CHURN_MODEL = dg.AssetKey(["models", "churn"])
CHURN_SCORES = dg.AssetKey(["scores", "churn"])
CLV_MODEL = dg.AssetKey(["models", "clv"])
CLV_SCORES = dg.AssetKey(["scores", "clv"])
CHURN_APPROVED = "churn_champion_approved"
CLV_APPROVED = "clv_champion_approved"
NO_STORE_FAILED = "no_store_failed"
INPUTS = [*(staging_key(k) for k in INPUT_KINDS), PRIVACY_APPLIED]


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
            active_window_days=self.active_window_days,
            value_window_days=self.value_window_days,
            calibration=self.calibration,
            validation=self.validation,
            validation_share=self.validation_share,
        )


class ClvConfig(dg.Config):
    """Customer-value settings (Launchpad-editable). Defaults = models.clv.ClvSettings."""

    horizon_days: int = Field(default=90, description="The learned model's horizon (90 or 365).")
    cutoff_step_days: int = Field(default=45, description="Spacing of stacked training cutoffs.")
    n_train_cutoffs: int = Field(default=6, description="How many past cutoffs to stack.")
    next_order_max_days: int = Field(
        default=365, description="No expected next order date further away than this."
    )
    seed: int = Field(default=0, description="Seed for LightGBM (training is deterministic).")

    def settings(self) -> clv.ClvSettings:
        return clv.ClvSettings(
            horizon_days=self.horizon_days,
            cutoff_step_days=self.cutoff_step_days,
            n_train_cutoffs=self.n_train_cutoffs,
            next_order_max_days=self.next_order_max_days,
        )


# --------------------------------------------------------------------------- specs


def _window(orders: pl.DataFrame, as_of: date) -> str:
    start = orders["order_date"].min() if orders.height else as_of
    return f"{start}..{as_of - timedelta(days=1)}"


def _train_churn(inputs: dict, as_of: date, config: ChurnConfig) -> Candidates:
    if inputs["orders"].is_empty():
        raise NothingToTrain(f"no orders before {as_of}")
    result = churn.train(
        inputs["orders"], as_of, customers=inputs["customers"], sessions=inputs["sessions"],
        settings=config.settings(), seed=config.seed, min_auc_gain=config.min_auc_gain,
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
    return Candidates(
        artifact=result.models,
        overall=overall,
        per_store=per_store,
        train_window=model.train_window if model else _window(inputs["orders"], as_of),
        unavailable=unavailable,
        backtest_cutoff=result.backtest.cutoff if result.backtest else None,
        card={
            "features": list(churn.FEATURES),
            "categorical_features": list(churn.CATEGORICAL_FEATURES),
            "best_iteration": model.best_iteration if model else None,
            "feature_importance_gain": model.feature_importance if model else {},
        },
        run_metrics={
            "train_seconds": result.train_seconds,
            "n_train_rows": model.n_train_rows if model else 0,
        },  # fmt: skip
        report=result,
    )


def _with_n(values: dict) -> dict:
    return {**values, "n": values.get("n_customers") or values.get("customers") or 0}


def _train_clv(inputs: dict, as_of: date, config: ClvConfig) -> Candidates:
    if inputs["orders"].is_empty():
        raise NothingToTrain(f"no orders before {as_of}")
    result = clv.fit(
        inputs["orders"], as_of, customers=inputs["customers"], sessions=inputs["sessions"],
        settings=config.settings(), seed=config.seed,
    )  # fmt: skip
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
    return Candidates(
        artifact=result.model,
        overall=overall,
        per_store=per_store,
        train_window=_window(inputs["orders"], as_of),
        unavailable=unavailable,
        backtest_cutoff=as_of - timedelta(days=90),
        run_metrics={"train_seconds": result.train_seconds},
        report=result,
    )


def _fingerprint(inputs: dict) -> str:
    return frame_fingerprint(
        inputs["orders"].select("store_id", "order_id", "customer_id", "order_date", "total_usd"),
        inputs["customers"],
    )


CHURN_SPEC = ModelSpec(
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
    guard=("brier", False),
    min_gain_setting="min_auc_gain",
    regression_margin=0.05,  # AUC dropping by more than 5 % of its value
    labels={"lightgbm": "LightGBM", "bgnbd": "BG/NBD", "recency": "the days-since-last-order rule"},
)

CLV_SPEC = ModelSpec(
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
    beats=clv.learned_beats,
    labels={"lightgbm": "the learned model", "bgnbd_gg": "BG/NBD + Gamma-Gamma"},
)


# --------------------------------------------------------------------------- weekly


def _train_asset(context, spec, config, storepulse, run_settings, check_name):
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
    try:
        release = lifecycle.train(
            storepulse.warehouse(), spec, as_of, config, storepulse.paths().model_store
        )
    except NothingToTrain as skipped:
        context.log.warning(f"{spec.name}: {skipped}; skipped")
        return dg.MaterializeResult(
            metadata={"as_of": as_of.isoformat(), "skipped": str(skipped)},
            check_results=[dg.AssetCheckResult(check_name=check_name, passed=True,
                                               severity=dg.AssetCheckSeverity.WARN)],
        )  # fmt: skip
    card = release.card
    (context.log.info if release.approved else context.log.warning)(
        f"{release.version}: {card['reason']}"
    )
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": release.version,
            "approved": release.approved,
            "champion": release.decision.champion,
            "decision": card["reason"],
            "candidates": preview(candidates_table(card["candidates"])),
            "champion_by_store": preview(champions_table(release)),
            "unavailable": metrics(release.unavailable),
            "train_window": card["train_window"],
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=check_name,
                passed=release.approved,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"champion": release.decision.champion, "reason": card["reason"]},
            )
        ],
    )


def candidates_table(candidates: dict[str, dict]) -> pl.DataFrame:
    rows = [
        {"method": m, **{k: v for k, v in values.items() if isinstance(v, int | float)}}
        for m, values in candidates.items()
    ]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def champions_table(release: lifecycle.Release) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"store_id": store, "method": method, "why": release.decision.why.get(store, "")}
            for store, method in sorted(release.decision.by_store.items())
        ],
        schema={"store_id": pl.String, "method": pl.String, "why": pl.String},
    )


def _approved_check(key: dg.AssetKey, name: str, what: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=key,
        blocking=True,
        description=(
            f"The {what} champion (chosen per store where a store has enough customers) is not "
            "clearly worse than the last approved version's; a baseline winning is normal. A "
            "regression keeps the last approved version scoring."
        ),
    )


@dg.asset(
    key=CLV_MODEL,
    group_name="churn",
    deps=INPUTS,
    kinds={"lightgbm", "polars"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[_approved_check(CLV_MODEL, CLV_APPROVED, "customer value")],
    description=(
        "Customer-value candidates (storepulse/lifecycle.py): BG/NBD + Gamma-Gamma per store, "
        "and BTYD with residual boosting on the churn features; backtested on the newest fully "
        "observed 90- and 365-day holdouts (per-customer RMSE of orders and revenue, the "
        "aggregate, calibration by decile); the champion per store; model_store/clv/."
    ),
)
def clv_model(
    context: dg.AssetExecutionContext,
    config: ClvConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    return _train_asset(context, CLV_SPEC, config, storepulse, run_settings, CLV_APPROVED)


@dg.asset(
    key=CHURN_MODEL,
    group_name="churn",
    deps=INPUTS,
    kinds={"lightgbm", "polars"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[_approved_check(CHURN_MODEL, CHURN_APPROVED, "churn")],
    description=(
        "Churn candidates (storepulse/lifecycle.py): LightGBM boosted from a covariate "
        "MBG/NBD prior, BG/NBD P(no order within the horizon), and the days-since-last-order "
        "rule; backtested on the newest fully observed cutoff (AUC, PR-AUC, Brier, lift); the "
        "champion per store (ties go to the simpler method); model_store/churn/."
    ),
)
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    return _train_asset(context, CHURN_SPEC, config, storepulse, run_settings, CHURN_APPROVED)


# --------------------------------------------------------------------------- nightly


def _of_store(inputs: dict, store: str) -> dict:
    return {
        name: frame.filter(pl.col("store_id") == store) if "store_id" in frame.columns else frame
        for name, frame in inputs.items()
    }


def _score(context, spec, config, storepulse, run_settings, step, score_one, empty, table):
    """Release (trained first when needed), score store by store, write the table and
    ops.store_status; returns (as_of, release, scores, outcomes)."""
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        stores = store_ids(con)
        inputs = load_inputs(con, as_of)
    try:
        release = lifecycle.release_for_scoring(
            storepulse.warehouse(), spec, as_of, config, storepulse.paths().model_store,
            context.log.info,
        )  # fmt: skip
    except NothingToTrain as skipped:
        outcomes = [StoreOutcome(s, step, STATUS_SKIPPED, None, str(skipped)) for s in stores]
        with storepulse.writer() as con:
            replace_table(con, table, empty)
            record_store_status(con, as_of, step, outcomes)
        return as_of, None, empty, outcomes

    def one(store: str, method: str) -> pl.DataFrame:
        mine = _of_store(inputs, store)
        if mine["orders"].is_empty():
            raise CannotScore(f"no orders before {as_of}")
        return score_one(release, mine, as_of, store, method)

    results, outcomes = score_stores(release, stores, one, step)
    scores = pl.concat(list(results.values()), how="vertical_relaxed") if results else empty
    with storepulse.writer() as con:
        replace_table(con, table, scores)
        record_store_status(con, as_of, step, outcomes)
    for outcome in outcomes:
        if outcome.status not in ("ok",):
            context.log.warning(f"{step}, {outcome.store_id}: {outcome.status}: {outcome.message}")
    return as_of, release, scores, outcomes


def _no_failure(outcomes: list[StoreOutcome]) -> dg.AssetCheckResult:
    failed = [o for o in outcomes if o.status == STATUS_FAILED]
    return dg.AssetCheckResult(
        check_name=NO_STORE_FAILED,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failed": metrics({o.store_id: o.message for o in failed})},
    )


def _no_failure_spec(key: dg.AssetKey, step: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NO_STORE_FAILED, asset=key,
        description=f"No store's {step} scores failed outright (ops.store_status, step {step}).",
    )  # fmt: skip


@dg.asset(
    key=CLV_SCORES,
    group_name="churn",
    deps=[CLV_MODEL, *INPUTS],
    kinds={"lightgbm", "duckdb"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[_no_failure_spec(CLV_SCORES, "clv")],
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
    def score_one(release, inputs, as_of, store, method):
        return clv.score(
            release.artifact, inputs["orders"], as_of, release.version,
            customers=inputs["customers"], sessions=inputs["sessions"],
            method_of_store={store: method},
        )  # fmt: skip

    started = time.perf_counter()
    as_of, release, scores, outcomes = _score(
        context, CLV_SPEC, config, storepulse, run_settings, "clv", score_one,
        clv.empty_clv(), "scores.clv",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    by_store = (
        scores.group_by("store_id")
        .agg(
            customers=pl.len(),
            predicted_revenue_365d_usd=pl.col("predicted_revenue_365d_usd").sum().round(0),
            expected_orders_90d=pl.col("expected_orders_90d").sum().round(1),
            mean_p_alive=pl.col("p_alive").mean().round(3),
            due_next_30_days=(
                pl.col("expected_next_order_date") < as_of + timedelta(days=30)
            ).sum(),
        )
        .sort("store_id")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": scores.height,
            "as_of": as_of.isoformat(),
            "model_version": release.version if release else "none",
            "store_status": preview(status_frame(outcomes)),
            "by_store": preview(by_store),
            "scoring_seconds": round(seconds, 3),
            "preview": preview(scores.sort("predicted_revenue_365d_usd", descending=True)),
        },
        check_results=[_no_failure(outcomes)],
    )


@dg.asset(
    key=CHURN_SCORES,
    group_name="churn",
    deps=[CHURN_MODEL, CLV_SCORES, *INPUTS],
    kinds={"lightgbm", "duckdb"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[_no_failure_spec(CHURN_SCORES, "churn")],
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
    with storepulse.writer() as con:
        values = (
            query(con, "select store_id, customer_id, predicted_revenue_365d_usd from scores.clv")
            if table_exists(con, "scores.clv")
            else None  # value at risk then from the last value_window_days' spend
        )

    def score_one(release, inputs, as_of, store, method):
        return churn.score_methods(
            release.artifact, inputs["orders"], as_of, release.version,
            method_of_store={store: method}, customers=inputs["customers"],
            sessions=inputs["sessions"], explain=config.explain_top_reasons,
            clv=values.filter(pl.col("store_id") == store) if values is not None else None,
        )  # fmt: skip

    started = time.perf_counter()
    as_of, release, scores, outcomes = _score(
        context, CHURN_SPEC, config, storepulse, run_settings, "churn", score_one,
        churn.empty_scores(), "scores.churn",
    )  # fmt: skip
    seconds = time.perf_counter() - started
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
            "dagster/row_count": scores.height,
            "as_of": as_of.isoformat(),
            "model_version": release.version if release else "none",
            "model_approved": release.approved if release else False,
            "store_status": preview(status_frame(outcomes)),
            "risk_bands": preview(bands),
            "value_at_risk_usd": float(scores["value_at_risk_usd"].sum() or 0.0),
            "scoring_seconds": round(seconds, 3),
            "customers_per_second": round(scores.height / seconds) if seconds > 0 else None,
            "probability_histogram": _histogram(scores),
            "preview": preview(scores.sort("value_at_risk_usd", descending=True)),
        },
        check_results=[_no_failure(outcomes)],
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
