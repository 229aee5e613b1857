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

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.churn_features import (
    BGNBD_COLUMNS,
    CATEGORICAL_FEATURES,
    COD_PATTERN,
    CONSENT_COLUMNS,
    FEATURES,
    NUMERIC_FEATURES,
    FeatureCache,
    OrderHistory,
    bgnbd_summary,
    build_feature_sets,
    build_features,
    churn_labels,
    prepare_orders,
)
from models.churn_reasons import REASON_OF_FEATURE, REASONS, reason_texts, top_reasons
from models.explain import tree_contributions

__all__ = [
    "BGNBD_COLUMNS",
    "CATEGORICAL_FEATURES",
    "COD_PATTERN",
    "CONSENT_COLUMNS",
    "FEATURES",
    "NUMERIC_FEATURES",
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
    validation_gap_days: training cutoffs end this many days before the validation
        cutoff; None = horizon_days (no training label overlaps the validation window).
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


@dataclass
class ChurnModel:
    """A trained churn model (pickled by the model store)."""

    booster: lgb.Booster
    calibrator: LogisticRegression | IsotonicRegression
    calibration: str
    vocab: dict[str, list[str]]
    settings: ChurnSettings
    best_iteration: int
    train_cutoffs: list[date]
    validation_cutoff: date
    n_train_rows: int
    n_validation_rows: int
    seed: int
    mean_init_margin: float = 0.0
    feature_importance: dict[str, float] = field(default_factory=dict)

    @property
    def train_window(self) -> str:
        """'first training cutoff..last labelled day' (the newest data the model saw)."""
        last_seen = self.validation_cutoff + timedelta(days=self.settings.horizon_days - 1)
        return f"{min(self.train_cutoffs)}..{last_seen}"

    def raw_margin(self, features: pl.DataFrame) -> np.ndarray:
        """Log-odds before calibration (trees + the BG/NBD starting point)."""
        trees = self.booster.predict(
            encode(features, self.vocab), num_iteration=self.best_iteration, raw_score=True
        )
        return trees + init_margin(features, self.settings)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        if self.calibration == "isotonic":
            return np.clip(self.calibrator.predict(margin), 0.0, 1.0)
        return self.calibrator.predict_proba(margin.reshape(-1, 1))[:, 1]


def category_vocab(frame: pl.DataFrame, min_count: int) -> dict[str, list[str]]:
    vocab = {}
    for name in CATEGORICAL_FEATURES:
        counts = frame[name].drop_nulls().value_counts()
        kept = counts.filter(pl.col("count") >= min_count)[name].sort().to_list()
        vocab[name] = kept
    return vocab


def encode(features: pl.DataFrame, vocab: dict[str, list[str]]) -> np.ndarray:
    """Feature matrix in FEATURES order; categories as codes (unknown/rare -> 'other' code)."""
    columns = [features[name].cast(pl.Float64).to_numpy() for name in NUMERIC_FEATURES]
    for name in CATEGORICAL_FEATURES:
        values = vocab[name]
        mapping = {value: float(i) for i, value in enumerate(values)}
        other = float(len(values))
        codes = (
            features[name]
            .replace_strict(mapping, default=other, return_dtype=pl.Float64)
            .fill_null(float("nan"))
            .to_numpy()
        )
        columns.append(codes)
    return np.column_stack(columns).astype(np.float64, copy=False)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def init_margin(features: pl.DataFrame, settings: ChurnSettings) -> np.ndarray:
    """The starting log-odds: BG/NBD's P(no order) when boosting from it, else 0."""
    if not settings.boost_from_bgnbd:
        return np.zeros(features.height)
    return _logit(features["bgnbd_p_no_order"].fill_null(0.5).to_numpy())


def lightgbm_params(settings: ChurnSettings, seed: int) -> dict:
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "max_depth": settings.max_depth,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "lambda_l2": settings.lambda_l2,
        "feature_fraction": 0.9,
        "feature_fraction_seed": seed,
        "cat_smooth": 10.0,
        "min_data_per_group": 50,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": settings.num_threads,
        "verbosity": -1,
    }


def _require_both_outcomes(labelled: pl.DataFrame, cutoff: date, horizon_days: int) -> None:
    """AUC, early stopping and calibration need churners and returners both."""
    outcomes = labelled["churned"].n_unique() if labelled.height else 0
    if outcomes < 2:
        raise ValueError(
            f"at cutoff {cutoff} every one of {labelled.height} customers "
            f"{'churned' if labelled.height and labelled['churned'][0] == 1 else 'came back'} "
            f"within {horizon_days} days, so the model cannot be fitted or evaluated; "
            "use a longer history or a different horizon_days"
        )


def plan_cutoffs(last_labelled: date, settings: ChurnSettings) -> tuple[list[date], date]:
    """(training cutoffs, validation cutoff) for a model whose newest label ends by
    `last_labelled + horizon`. Training labels end before the validation cutoff."""
    validation = last_labelled
    gap = settings.validation_gap_days
    newest_train = validation - timedelta(days=settings.horizon_days if gap is None else gap)
    train = [
        newest_train - timedelta(days=k * settings.cutoff_step_days)
        for k in range(settings.n_train_cutoffs)
    ]
    return train, validation


def fit_at(
    cache: FeatureCache, last_labelled: date, *, seed: int, settings: ChurnSettings | None = None
) -> ChurnModel:
    """Train on stacked cutoffs up to `last_labelled` (early stopping + calibration on it)."""
    settings = settings or cache.settings
    train_cutoffs, validation_cutoff = plan_cutoffs(last_labelled, settings)
    train_parts = []
    kept_cutoffs = []
    for cutoff in train_cutoffs:
        part = cache.labelled(cutoff)
        if part.height >= settings.min_customers_per_cutoff:
            train_parts.append(part)
            kept_cutoffs.append(cutoff)
    validation = cache.labelled(validation_cutoff)
    if not train_parts or validation.height < settings.min_customers_per_cutoff:
        raise ValueError(
            f"not enough history to train churn as of {cache.as_of}: need orders before "
            f"{min(train_cutoffs)} and at least {settings.min_customers_per_cutoff} customers per "
            f"cutoff (horizon {settings.horizon_days} days); use a later as_of or a shorter horizon"
        )
    _require_both_outcomes(validation, validation_cutoff, settings.horizon_days)
    train = pl.concat(train_parts, how="vertical_relaxed")
    vocab = category_vocab(train, settings.min_category_count)
    x_train, y_train = encode(train, vocab), train["churned"].to_numpy()
    x_valid, y_valid = encode(validation, vocab), validation["churned"].to_numpy()
    categorical = [FEATURES.index(name) for name in CATEGORICAL_FEATURES]
    init_train, init_valid = init_margin(train, settings), init_margin(validation, settings)
    train_set = lgb.Dataset(
        x_train,
        y_train,
        init_score=init_train,
        feature_name=list(FEATURES),
        categorical_feature=categorical,
    )
    valid_set = lgb.Dataset(x_valid, y_valid, init_score=init_valid, reference=train_set)
    booster = lgb.train(
        lightgbm_params(settings, seed),
        train_set,
        num_boost_round=settings.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    margin = booster.predict(x_valid, num_iteration=best, raw_score=True) + init_valid
    if settings.calibration == "isotonic":
        calibrator = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        calibrator.fit(margin, y_valid)
    else:
        calibrator = LogisticRegression(C=1e6, max_iter=1000)
        calibrator.fit(margin.reshape(-1, 1), y_valid)
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    return ChurnModel(
        booster=booster,
        calibrator=calibrator,
        calibration=settings.calibration,
        vocab=vocab,
        settings=settings,
        best_iteration=int(best),
        train_cutoffs=kept_cutoffs,
        validation_cutoff=validation_cutoff,
        n_train_rows=train.height,
        n_validation_rows=validation.height,
        seed=seed,
        mean_init_margin=float(np.mean(init_train)),
        feature_importance={
            name: round(float(g), 2) for name, g in zip(FEATURES, gains, strict=True)
        },
    )


# ---------------------------------------------------------------------- prediction


def predict(
    model: ChurnModel,
    features: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    explain: bool = True,
) -> pl.DataFrame:
    """scores.churn rows for a feature frame built at `as_of` (build_features).

    top_reasons come from LightGBM's feature contributions (pred_contrib, computed
    by tree_contributions); explain=False leaves them empty for the fastest runs.
    """
    if features.is_empty():
        return empty_scores()
    settings = model.settings
    matrix = encode(features, model.vocab)
    start = init_margin(features, settings)
    margin = model.booster.predict(
        matrix, num_iteration=model.best_iteration, raw_score=True, num_threads=settings.num_threads
    )
    probability = model.calibrate(margin + start)
    contributions = (
        tree_contributions(model.booster, matrix, model.best_iteration, settings.num_threads)[
            :, : len(FEATURES)
        ]
        if explain
        else None
    )
    if explain and settings.boost_from_bgnbd:
        # The BG/NBD starting point is part of the score: credit its deviation from
        # the training average to the 'buying pattern' reason (bgnbd_p_no_order).
        pattern = FEATURES.index("bgnbd_p_no_order")
        contributions[:, pattern] += start - model.mean_init_margin
    risk_score = np.rint(probability * 100.0)
    scored = features.with_columns(
        churn_probability=pl.Series(probability).round(4),
        risk_score=pl.Series(risk_score).cast(pl.Int16),
    )
    scored = scored.with_columns(
        risk_band=pl.when(pl.col("risk_score") > settings.high_risk_above)
        .then(pl.lit("high"))
        .when(pl.col("risk_score") > settings.medium_risk_above)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("low")),
        top_reasons=top_reasons(scored, contributions, settings.horizon_days)
        if explain
        else pl.lit(None, dtype=pl.String),
        value_at_risk_usd=(
            pl.col("churn_probability") * pl.col("spend_value_window_usd").clip(0.0)
        ).round(2),
        as_of=pl.lit(as_of),
        model_version=pl.lit(model_version),
    )
    return scored.select(SCORE_COLUMNS)


SCORE_COLUMNS = (
    "store_id",
    "customer_id",
    "as_of",
    "churn_probability",
    "risk_score",
    "risk_band",
    "top_reasons",
    "value_at_risk_usd",
    "model_version",
)


def empty_scores() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
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
    )


# ------------------------------------------------------------------------ backtest


def classification_metrics(
    y: np.ndarray, score: np.ndarray, probability: np.ndarray | None
) -> dict:
    """AUC, PR-AUC (churn = positive), Brier (None without probabilities), top-decile lift."""
    y = np.asarray(y, dtype=float)
    n_top = max(1, int(math.ceil(0.1 * y.size)))
    top = np.argsort(-np.asarray(score), kind="stable")[:n_top]
    base_rate = float(y.mean())
    return {
        "auc": round(float(roc_auc_score(y, score)), 4),
        "pr_auc": round(float(average_precision_score(y, score)), 4),
        "brier": round(float(brier_score_loss(y, probability)), 4)
        if probability is not None
        else None,
        "lift_top_decile": round(float(y[top].mean() / base_rate), 4) if base_rate > 0 else None,
        "churn_rate": round(base_rate, 4),
        "n_customers": int(y.size),
    }


@dataclass
class BacktestResult:
    """Model and baselines evaluated on one fully observed cutoff."""

    cutoff: date
    horizon_days: int
    metrics: dict
    baseline_metrics: dict[str, dict]
    predictions: pl.DataFrame  # store_id, customer_id, churned, model + baseline scores

    @property
    def best_baseline_auc(self) -> float:
        return max(m["auc"] for m in self.baseline_metrics.values())

    @property
    def best_baseline_brier(self) -> float:
        return min(m["brier"] for m in self.baseline_metrics.values() if m["brier"] is not None)

    def beats_baselines(self, min_auc_gain: float = 0.0) -> tuple[bool, str]:
        """(approved, reason): the model must beat the best baseline's AUC and Brier."""
        auc, brier = self.metrics["auc"], self.metrics["brier"]
        auc_ok = auc >= self.best_baseline_auc + min_auc_gain and auc > self.best_baseline_auc
        brier_ok = brier < self.best_baseline_brier
        reason = (
            f"AUC {auc:.4f} vs best baseline {self.best_baseline_auc:.4f}; "
            f"Brier {brier:.4f} vs best baseline {self.best_baseline_brier:.4f} "
            f"(cutoff {self.cutoff}, {self.metrics['n_customers']} customers)"
        )
        return auc_ok and brier_ok, ("approved: " if auc_ok and brier_ok else "rejected: ") + reason


def evaluate(model: ChurnModel, cache: FeatureCache, test_cutoff: date) -> BacktestResult:
    """Score the test cutoff with the model and both baselines.

    Baselines: days since last order (Brier from an isotonic map fitted on the
    model's own validation cutoff, so it gets the same information) and BG/NBD
    P(no order in horizon) fitted per store on history before the cutoff.
    """
    test = cache.labelled(test_cutoff)
    _require_both_outcomes(test, test_cutoff, cache.settings.horizon_days)
    y = test["churned"].to_numpy()
    probability = model.calibrate(model.raw_margin(test))
    validation = cache.labelled(model.validation_cutoff)
    recency_map = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
        validation["recency_days"].to_numpy(), validation["churned"].to_numpy()
    )
    recency = test["recency_days"].to_numpy()
    recency_probability = recency_map.predict(recency)
    bgnbd_probability = test["bgnbd_p_no_order"].to_numpy()
    predictions = test.select("store_id", "customer_id", "churned").with_columns(
        model_probability=pl.Series(probability),
        recency_days=pl.Series(recency),
        recency_probability=pl.Series(recency_probability),
        bgnbd_probability=pl.Series(bgnbd_probability),
    )
    return BacktestResult(
        cutoff=test_cutoff,
        horizon_days=cache.settings.horizon_days,
        metrics=classification_metrics(y, probability, probability),
        baseline_metrics={
            "recency": classification_metrics(y, recency, recency_probability),
            "bgnbd": classification_metrics(y, bgnbd_probability, bgnbd_probability),
        },
        predictions=predictions,
    )


@dataclass
class TrainingResult:
    """The production model (trained up to as_of) and the backtest of its recipe."""

    model: ChurnModel
    backtest: BacktestResult
    backtest_model: ChurnModel
    approved: bool
    reason: str
    train_seconds: float
    data_fingerprint_frame: pl.DataFrame  # the production training labels (for the card)


def backtest_cutoff(as_of: date, settings: ChurnSettings) -> date:
    """The newest cutoff whose horizon is fully observed before as_of."""
    return as_of - timedelta(days=settings.horizon_days)


def train(
    orders: pl.DataFrame,
    as_of: date,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    settings: ChurnSettings | None = None,
    seed: int = 0,
    min_auc_gain: float = 0.0,
) -> TrainingResult:
    """Backtest the recipe on the newest fully observed cutoff, then fit the model
    that will score (same recipe, one horizon later). Deterministic for a seed."""
    settings = settings or ChurnSettings()
    started = time.perf_counter()
    cache = FeatureCache(orders, as_of, customers=customers, sessions=sessions, settings=settings)
    test_cutoff = backtest_cutoff(as_of, settings)
    needed = [test_cutoff]
    for last_labelled in (test_cutoff - timedelta(days=settings.horizon_days), test_cutoff):
        train_cutoffs, validation_cutoff = plan_cutoffs(last_labelled, settings)
        needed += [*train_cutoffs, validation_cutoff]
    cache.prefetch(needed)
    backtest_model = fit_at(
        cache, test_cutoff - timedelta(days=settings.horizon_days), seed=seed, settings=settings
    )
    result = evaluate(backtest_model, cache, test_cutoff)
    model = fit_at(cache, test_cutoff, seed=seed, settings=settings)
    approved, reason = result.beats_baselines(min_auc_gain)
    fingerprint_frame = pl.concat(
        [
            cache.labelled(c).select("store_id", "customer_id", "cutoff", "churned")
            for c in model.train_cutoffs
        ]
    )
    return TrainingResult(
        model=model,
        backtest=result,
        backtest_model=backtest_model,
        approved=approved,
        reason=reason,
        train_seconds=round(time.perf_counter() - started, 3),
        data_fingerprint_frame=fingerprint_frame,
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
) -> pl.DataFrame:
    """Score every customer with an order before as_of (features built at as_of)."""
    settings = model.settings
    prepared = prepare_orders(orders, as_of)
    if sessions is not None and not sessions.is_empty():
        sessions = sessions.filter(pl.col("date") < as_of)
    features = build_features(
        prepared,
        as_of,
        customers=customers,
        sessions=sessions,
        horizon_days=settings.horizon_days,
        value_window_days=settings.value_window_days,
    )
    return predict(model, features, as_of, model_version, explain=explain)
