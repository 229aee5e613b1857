"""Churn: P(no order within `horizon_days` after a cutoff), LightGBM + calibration.

Pure: polars frames in (staging.orders, optionally staging.customers and
staging.sessions), polars frames / dataclasses out; no Dagster, no I/O.

Time discipline (nothing at or after `as_of` is ever read):
- cutoffs are `as_of - horizon - k * step`; a cutoff's label needs orders in
  [cutoff, cutoff + horizon), so the newest labelled cutoff is `as_of - horizon`;
- the validation cutoff (early stopping and calibration) is the newest labelled
  one; training cutoffs end at least `horizon` days before it, so no training
  label overlaps the validation window;
- the backtest repeats the recipe one horizon earlier and evaluates on the
  newest labelled cutoff, next to the recency rule and BG/NBD baselines.

Features use whatever exists; orders alone are enough. Among them are BG/NBD
and MBG/NBD summaries fitted per store at each cutoff, and by default the trees
start from the BG/NBD log-odds (LightGBM init_score) and learn corrections to it.
top_reasons sum LightGBM's feature contributions (pred_contrib) per reason a
marketer reads and word the three that raise the risk most.

The code is split along its seams: features and labels (models/churn_features.py),
the reasons (models/churn_reasons.py), the generic LightGBM contribution
explainer (models/explain.py); this module fits, backtests and scores, and
re-exports the names callers use (`from models import churn; churn.FEATURES`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from models import fallback
from models.churn_baselines import (
    METHODS,
    RecencyScorer,
    baseline_reasons,
    classification_metrics,
    pick_champion,
    store_metrics,
)
from models.churn_features import (
    BGNBD_COLUMNS,
    CATEGORICAL_FEATURES,
    COD_PATTERN,
    CONSENT_COLUMNS,
    FEATURES,
    NUMERIC_FEATURES,
    PRIOR_FEATURES,
    FeatureCache,
    OrderHistory,
    bgnbd_summary,
    build_feature_sets,
    build_features,
    churn_labels,
    prepare_orders,
    sessions_before,
)
from models.churn_lightgbm import (
    ChurnModel,
    category_vocab,
    encode,
    fit_at,
    holdout_customers,
    init_margin,
    lightgbm_params,
    plan_cutoffs,
)
from models.churn_reasons import REASON_OF_FEATURE, REASONS, reason_texts, top_reasons
from models.explain import tree_contributions
from models.risk import RiskSettings, assign_risk, value_at_risk
from models.sampling import training_customers

__all__ = [
    "BGNBD_COLUMNS",
    "ChurnModel",
    "category_vocab",
    "encode",
    "fit_at",
    "holdout_customers",
    "init_margin",
    "lightgbm_params",
    "plan_cutoffs",
    "METHODS",
    "RecencyScorer",
    "classification_metrics",
    "pick_champion",
    "CATEGORICAL_FEATURES",
    "COD_PATTERN",
    "CONSENT_COLUMNS",
    "FEATURES",
    "NUMERIC_FEATURES",
    "PRIOR_FEATURES",
    "REASONS",
    "REASON_OF_FEATURE",
    "FeatureCache",
    "OrderHistory",
    "bgnbd_summary",
    "build_feature_sets",
    "build_features",
    "churn_labels",
    "prepare_orders",
    "reason_texts",
    "top_reasons",
    "tree_contributions",
]

MODEL_NAME = "churn"


@dataclass(frozen=True)
class ChurnSettings:
    """Every knob of the churn model (defaults documented on each field).

    horizon_days: churn = no order within this many days after the cutoff (90).
    cutoff_step_days: spacing of stacked training cutoffs (30).
    n_train_cutoffs: how many training cutoffs to stack (12: a year of monthly
        cutoffs, so every season is in the training set once).
    min_customers_per_cutoff: cutoffs with fewer labelled customers are skipped (50).
    high_risk_above / medium_risk_above: risk_score bands (high > 80, medium > 50).
    value_window_days: value at risk = P(churn) x net spend in this many days (365).
    calibration: 'sigmoid' (Platt, keeps the ranking) or 'isotonic'.
    LightGBM: learning_rate, num_leaves, max_depth, min_data_in_leaf,
    lambda_l2, max_rounds, early_stopping_rounds, num_threads (fixed for determinism).
    min_category_count: rarer channel/market values are grouped as 'other'.
    boost_from_bgnbd: start boosting from the BG/NBD log-odds (init_score), so the
        trees learn corrections to it; with little data the model stays close to it.
    validation: 'customers' (default): training cutoffs run up to the newest labelled
        one and early stopping + calibration use a held-out `validation_share` (0.25)
        of the customers, none of whose rows is trained on; 'time': the validation
        cutoff is the newest labelled one and training labels end before it
        (validation_gap_days, None = horizon_days), which wastes a horizon of an
        already short history and left the booster at one tree on young histories.
    min_median_tenure_days: training cutoffs whose customers' median tenure is shorter
        are not stacked (None = horizon_days): they only show brand-new customers.
    active_window_days: ordered within this many days = plausibly active, the
        customers risk_score ranks (models.risk; 365).
    max_train_customers: training and the backtest use at most about this many
        customers, drawn per store (models.sampling; None = all). Memory then stays
        bounded however many stores there are; scoring still covers every customer.
    """

    horizon_days: int = 90
    cutoff_step_days: int = 30
    n_train_cutoffs: int = 12
    min_customers_per_cutoff: int = 50
    high_risk_above: float = 80.0
    medium_risk_above: float = 50.0
    value_window_days: int = 365
    calibration: str = "sigmoid"
    learning_rate: float = 0.05
    num_leaves: int = 15
    max_depth: int = 5
    min_data_in_leaf: int = 50
    lambda_l2: float = 1.0
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    num_threads: int = 1
    min_category_count: int = 20
    boost_from_bgnbd: bool = True
    validation_gap_days: int | None = None
    validation: str = "customers"
    validation_share: float = 0.25
    min_median_tenure_days: int | None = None
    active_window_days: int = 365
    max_train_customers: int | None = 60_000


# ---------------------------------------------------------------------- prediction


def lightgbm_probability(model: ChurnModel, features: pl.DataFrame) -> np.ndarray:
    """Calibrated P(churn) of the learned model for a feature frame (build_features)."""
    return model.calibrate(model.raw_margin(features))


def _lightgbm_reasons(model: ChurnModel, features: pl.DataFrame) -> pl.Series:
    """top_reasons from LightGBM's feature contributions (tree_contributions)."""
    settings = model.settings
    matrix = encode(features, model.vocab)
    contributions = tree_contributions(
        model.booster, matrix, model.best_iteration, settings.num_threads
    )[:, : len(FEATURES)]
    if settings.boost_from_bgnbd:
        # The prior the trees start from is part of the score: its deviation from the
        # training average goes to the reasons its covariates speak for (first-order
        # discount, COD...) and the rest to the 'buying pattern' reason.
        deviation = init_margin(features, settings, model.prior_stores) - model.mean_init_margin
        uses_prior = features["store_id"].is_in(list(model.prior_stores)).to_numpy()
        for reason, feature in PRIOR_REASON_FEATURE.items():
            shift = features[f"prior_shift_{reason}"].fill_null(0.0).to_numpy() * uses_prior
            contributions[:, FEATURES.index(feature)] += shift
            deviation = deviation - shift
        contributions[:, FEATURES.index("prior_p_no_order")] += deviation
    return top_reasons(features, contributions, settings.horizon_days)


# Where a prior shift is credited: one feature of the reason it speaks for.
PRIOR_REASON_FEATURE = {
    "discount": "first_order_discount_share",
    "cod": "first_order_cod",
    "refunds": "first_order_refund_share",
    "consent": "accepts_email_marketing",
    "value": "first_order_usd",
    "channel": "first_channel",
    "market": "market",
}


def risk_settings(settings: ChurnSettings) -> RiskSettings:
    return RiskSettings(
        active_window_days=settings.active_window_days,
        high_risk_above=settings.high_risk_above,
        medium_risk_above=settings.medium_risk_above,
    )


def _finish_scores(
    features: pl.DataFrame,
    probability: np.ndarray,
    reasons: pl.Series | None,
    versions: pl.Series | str,
    as_of: date,
    settings: ChurnSettings,
    clv: pl.DataFrame | None,
) -> pl.DataFrame:
    """scores.churn rows: probability, relative risk score and band (models.risk),
    reasons, value at risk (CLV-based where `clv` has the customer) and version."""
    scored = features.select(
        "store_id", "customer_id", "recency_days", "spend_value_window_usd"
    ).with_columns(
        churn_probability=pl.Series(probability).round(4),
        top_reasons=reasons if reasons is not None else pl.lit(None, dtype=pl.String),
        model_version=versions if isinstance(versions, pl.Series) else pl.lit(versions),
        as_of=pl.lit(as_of),
    )
    scored = assign_risk(scored, risk_settings(settings))
    fallback_value = pl.col("churn_probability") * pl.col("spend_value_window_usd").clip(0.0)
    if clv is not None and not clv.is_empty():
        scored = scored.join(
            clv.select("store_id", "customer_id", "predicted_revenue_365d_usd"),
            on=["store_id", "customer_id"],
            how="left",
            maintain_order="left",
        )
        value = pl.coalesce(
            value_at_risk(pl.col("predicted_revenue_365d_usd"), pl.col("churn_probability")),
            fallback_value.round(2),
        )
    else:
        value = fallback_value.round(2)
    return scored.with_columns(value_at_risk_usd=value).select(SCORE_COLUMNS)


def predict(
    model: ChurnModel,
    features: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    explain: bool = True,
    clv: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """scores.churn rows from the learned model for a feature frame built at `as_of`
    (build_features). top_reasons come from LightGBM's feature contributions;
    explain=False leaves them empty for the fastest runs."""
    if features.is_empty():
        return empty_scores()
    probability = lightgbm_probability(model, features)
    reasons = _lightgbm_reasons(model, features) if explain else None
    return _finish_scores(features, probability, reasons, model_version, as_of, model.settings, clv)


SCORE_SCHEMA = {
    "store_id": pl.String,
    "customer_id": pl.String,
    "as_of": pl.Date,
    "churn_probability": pl.Float64,
    "risk_score": pl.Int16,
    "risk_band": pl.String,
    "top_reasons": pl.String,
    "value_at_risk_usd": pl.Float64,
    "model_version": pl.String,
}
SCORE_COLUMNS = tuple(SCORE_SCHEMA)


def empty_scores() -> pl.DataFrame:
    return pl.DataFrame(schema=SCORE_SCHEMA)


# ------------------------------------------------------------------------ backtest


@dataclass
class BacktestResult:
    """Every candidate evaluated on one fully observed cutoff (train strictly before it).

    metrics: the learned model's (None when it could not be fitted or backtested);
    baseline_metrics: recency and BG/NBD; store_metrics: method -> store -> metrics."""

    cutoff: date
    horizon_days: int
    metrics: dict | None
    baseline_metrics: dict[str, dict]
    predictions: pl.DataFrame  # store_id, customer_id, churned, model + baseline scores
    store_metrics: dict[str, dict[str, dict]] = field(default_factory=dict)

    @property
    def best_baseline_auc(self) -> float:
        return max(m["auc"] for m in self.baseline_metrics.values() if m["auc"] is not None)

    @property
    def best_baseline_brier(self) -> float:
        return min(m["brier"] for m in self.baseline_metrics.values() if m["brier"] is not None)

    def method_metrics(self) -> dict[str, dict | None]:
        return {"lightgbm": self.metrics, **self.baseline_metrics}

    def beats_baselines(self, min_auc_gain: float = 0.0) -> tuple[bool, str]:
        """(approved, reason): the model must beat the best baseline's AUC and Brier."""
        if self.metrics is None or self.metrics["auc"] is None:
            return False, f"rejected: the learned model has no backtest at {self.cutoff}"
        auc, brier = self.metrics["auc"], self.metrics["brier"]
        auc_ok = auc >= self.best_baseline_auc + min_auc_gain and auc > self.best_baseline_auc
        brier_ok = brier < self.best_baseline_brier
        reason = (
            f"AUC {auc:.4f} vs best baseline {self.best_baseline_auc:.4f}; "
            f"Brier {brier:.4f} vs best baseline {self.best_baseline_brier:.4f} "
            f"(cutoff {self.cutoff}, {self.metrics['n_customers']} customers)"
        )
        return auc_ok and brier_ok, ("approved: " if auc_ok and brier_ok else "rejected: ") + reason


def evaluate(
    model: ChurnModel | None,
    cache: FeatureCache,
    test_cutoff: date,
    recency: RecencyScorer | None = None,
) -> BacktestResult | None:
    """Score the test cutoff with every candidate that can run (None: nobody to score).

    Baselines: days since last order (Brier from an isotonic map fitted on the cutoff
    one horizon earlier, whose labels end at the test cutoff) and BG/NBD
    P(no order in horizon) fitted per store on history before the cutoff."""
    horizon = cache.settings.horizon_days
    test = cache.labelled(test_cutoff)
    if test.is_empty():
        return None
    if recency is None:
        recency = RecencyScorer.fit(cache.labelled(test_cutoff - timedelta(days=horizon)), horizon)
    y = test["churned"].to_numpy()
    probability = lightgbm_probability(model, test) if model is not None else None
    recency_probability = recency.probability(test)
    predictions = test.select("store_id", "customer_id", "churned").with_columns(
        model_probability=pl.Series(probability, dtype=pl.Float64)
        if probability is not None
        else pl.lit(None, dtype=pl.Float64),
        recency_days=test["recency_days"],
        recency_probability=pl.Series(recency_probability),
        bgnbd_probability=test["bgnbd_p_no_order"],
    )
    by_store = {
        "recency": store_metrics(predictions, "recency_probability", "recency_days"),
        "bgnbd": store_metrics(predictions, "bgnbd_probability"),
    }
    if probability is not None:
        by_store["lightgbm"] = store_metrics(predictions, "model_probability")
    recency_days = test["recency_days"].to_numpy()
    return BacktestResult(
        cutoff=test_cutoff,
        horizon_days=horizon,
        metrics=classification_metrics(y, probability, probability)
        if probability is not None
        else None,
        baseline_metrics={
            "recency": classification_metrics(y, recency_days, recency_probability),
            "bgnbd": classification_metrics(
                y, predictions["bgnbd_probability"], predictions["bgnbd_probability"]
            ),
        },
        predictions=predictions,
        store_metrics=by_store,
    )


@dataclass
class ChurnModels:
    """Everything that scores, one object for the model store: the learned model (or
    None), the recency maps, the settings, why each unavailable method is unavailable
    and the global champion of the backtest."""

    settings: ChurnSettings
    lightgbm: ChurnModel | None
    recency: RecencyScorer
    unavailable: dict[str, str]
    champion: str

    @property
    def available(self) -> list[str]:
        return [m for m in METHODS if m not in self.unavailable]

    def resolve(self, method: str) -> str:
        """The method itself when it can score, else the next one down the chain."""
        return fallback.resolve(METHODS, self.unavailable, method, "churn")


@dataclass
class TrainingResult:
    """The production candidates (trained up to as_of) and the backtest of the recipe.

    model / backtest_model: the learned model for scoring / for the backtest, None when
    it could not be fitted (candidates says why); models: what scores (ChurnModels);
    candidates: per method {available, reason, metrics, store_metrics}."""

    model: ChurnModel | None
    backtest: BacktestResult | None
    backtest_model: ChurnModel | None
    approved: bool
    reason: str
    train_seconds: float
    data_fingerprint_frame: pl.DataFrame
    models: ChurnModels | None = None
    candidates: dict[str, dict] = field(default_factory=dict)
    training_sample: str = ""  # what was trained on (models.sampling)

    @property
    def champion(self) -> str:
        return self.models.champion if self.models else "bgnbd"


def backtest_cutoff(as_of: date, settings: ChurnSettings) -> date:
    """The newest cutoff whose horizon is fully observed before as_of."""
    return as_of - timedelta(days=settings.horizon_days)


def _try_fit(cache: FeatureCache, last_labelled: date, seed: int) -> tuple[ChurnModel | None, str]:
    try:
        return fit_at(cache, last_labelled, seed=seed), ""
    except ValueError as exc:  # too little history or one outcome only: degrade
        return None, str(exc)


def train(
    orders: pl.DataFrame,
    as_of: date,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    settings: ChurnSettings | None = None,
    seed: int = 0,
    min_auc_gain: float = 0.0,
    population: int | None = None,
) -> TrainingResult:
    """Backtest every candidate on the newest fully observed cutoff, then fit what
    will score (the same recipe, one horizon later). Deterministic for a seed.

    `population`: the orders (and customers) are already the training sample, drawn
    with models.sampling.sample_keys from this many customers (a loader that reads only
    the sample); it is not drawn again.

    Never fails for thin data: candidates that cannot be fitted or backtested are
    marked unavailable with the reason ("lightgbm": too little history...), and
    BG/NBD and recency always remain."""
    settings = settings or ChurnSettings()
    started = time.perf_counter()
    horizon = timedelta(days=settings.horizon_days)
    sample, orders, customers = training_customers(
        orders, customers, population, settings.max_train_customers, seed
    )
    cache = FeatureCache(orders, as_of, customers=customers, sessions=sessions, settings=settings)
    test_cutoff = backtest_cutoff(as_of, settings)
    needed = [test_cutoff, test_cutoff - horizon]
    for last_labelled in (test_cutoff - horizon, test_cutoff):
        train_cutoffs, validation_cutoff = plan_cutoffs(last_labelled, settings)
        needed += [*train_cutoffs, validation_cutoff]
    cache.prefetch([c for c in needed if c > cache.first_order_date])
    backtest_model, backtest_error = _try_fit(cache, test_cutoff - horizon, seed)
    backtest = evaluate(backtest_model, cache, test_cutoff)
    model, error = _try_fit(cache, test_cutoff, seed)
    unavailable = {}
    if model is None:
        unavailable["lightgbm"] = f"cannot be fitted: {error}"
    elif backtest_model is None:
        unavailable["lightgbm"] = f"cannot be backtested: {backtest_error}"
    elif backtest is None or backtest.metrics is None or backtest.metrics["auc"] is None:
        unavailable["lightgbm"] = f"no backtest with churners and returners at {test_cutoff}"
    if backtest is not None:
        approved, reason = backtest.beats_baselines(min_auc_gain)
        tested = backtest.method_metrics()
    else:
        approved, reason = False, f"rejected: no customer with an order before {test_cutoff}"
        tested = {}
    if "lightgbm" in unavailable:
        approved, reason = False, f"rejected: the learned model {unavailable['lightgbm']}"
        tested.pop("lightgbm", None)
    champion, why = pick_champion(tested, min_auc_gain)
    candidates = fallback.candidates(
        METHODS,
        unavailable,
        champion,
        why,
        metrics=tested.get,
        store_metrics=lambda method: backtest.store_metrics.get(method, {}) if backtest else {},
    )
    if model is not None:
        fingerprint_frame = pl.concat(
            [
                cache.labelled(c).select("store_id", "customer_id", "cutoff", "churned")
                for c in model.train_cutoffs
            ]
        )
    else:
        fingerprint_frame = cache.orders.select("store_id", "customer_id", "order_id", "order_date")
    models = ChurnModels(
        settings=settings,
        lightgbm=model if "lightgbm" not in unavailable else None,
        recency=RecencyScorer.fit(cache.labelled(test_cutoff), settings.horizon_days),
        unavailable=unavailable,
        champion=champion,
    )
    return TrainingResult(
        model=model,
        backtest=backtest,
        backtest_model=backtest_model,
        approved=approved,
        reason=reason,
        train_seconds=round(time.perf_counter() - started, 3),
        data_fingerprint_frame=fingerprint_frame,
        models=models,
        candidates=candidates,
        training_sample=sample.describe(),
    )


def scoring_features(
    orders: pl.DataFrame,
    as_of: date,
    settings: ChurnSettings,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features of every customer with a valid order before as_of, built at as_of."""
    return build_features(
        prepare_orders(orders, as_of),
        as_of,
        customers=customers,
        sessions=sessions_before(sessions, as_of),
        horizon_days=settings.horizon_days,
        value_window_days=settings.value_window_days,
    )


def score_methods(
    models: ChurnModels,
    orders: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    method_of_store: dict[str, str] | None = None,
    default_method: str | None = None,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    explain: bool = True,
    clv: pl.DataFrame | None = None,
    features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """scores.churn rows for every customer, each store scored by its own method.

    method_of_store: store_id -> "lightgbm" | "bgnbd" | "recency"; stores not in it use
    default_method (default: the backtest's global champion). A method that cannot
    score (not fitted) falls back down the chain lightgbm -> bgnbd -> recency.
    model_version of each row is f"{model_version}/{method actually used}".
    clv (store_id, customer_id, predicted_revenue_365d_usd): value at risk =
    predicted 365-day revenue x churn probability; without it, spend of the last
    value_window_days x churn probability."""
    settings = models.settings
    if features is None:
        features = scoring_features(orders, as_of, settings, customers=customers, sessions=sessions)
    if features.is_empty():
        return empty_scores()
    method = fallback.method_per_row(
        features["store_id"], models.resolve, method_of_store, default_method or models.champion
    )
    probability = np.empty(features.height)
    reasons = pl.Series("top_reasons", [None] * features.height, dtype=pl.String)
    for name in METHODS:
        rows = np.flatnonzero((method == name).to_numpy())
        if rows.size == 0:
            continue
        part = features[rows]
        if name == "lightgbm":
            probability[rows] = lightgbm_probability(models.lightgbm, part)
            texts = _lightgbm_reasons(models.lightgbm, part) if explain else None
        elif name == "bgnbd":
            probability[rows] = part["bgnbd_p_no_order"].to_numpy()
            texts = baseline_reasons(part, name, settings.horizon_days) if explain else None
        else:
            probability[rows] = models.recency.probability(part)
            texts = baseline_reasons(part, name, settings.horizon_days) if explain else None
        if texts is not None:
            reasons = reasons.scatter(rows, texts)
    versions = pl.select(pl.concat_str([pl.lit(model_version + "/"), method]).alias("v"))["v"]
    return _finish_scores(
        features, probability, reasons if explain else None, versions, as_of, settings, clv
    )


def score(
    model: ChurnModel,
    orders: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    explain: bool = True,
    clv: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Score every customer with an order before as_of with the learned model
    (score_methods scores per store with any candidate)."""
    features = scoring_features(
        orders, as_of, model.settings, customers=customers, sessions=sessions
    )
    return predict(model, features, as_of, model_version, explain=explain, clv=clv)
