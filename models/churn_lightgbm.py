"""The learned churn model: LightGBM on stacked cutoffs, boosted from the covariate
MBG/NBD prior (init_score), early stopping and calibration on held-out customers.

Pure: no Dagster, no I/O. models.churn trains it next to its baselines and scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.churn_features import (
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    PRIOR_FEATURES,
    FeatureCache,
)

if TYPE_CHECKING:
    from models.churn import ChurnSettings


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
    prior_stores: frozenset[str] = frozenset()  # stores whose trees start from the prior
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
        return trees + init_margin(features, self.settings, self.prior_stores)

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
    columns = [
        features[name].cast(pl.Float64).to_numpy() for name in NUMERIC_FEATURES + PRIOR_FEATURES
    ]
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


def init_margin(
    features: pl.DataFrame, settings: ChurnSettings, prior_stores: frozenset[str] = frozenset()
) -> np.ndarray:
    """The starting log-odds when boosting from a BTYD model (else 0): the covariate
    MBG/NBD prior for `prior_stores`, BG/NBD's P(no order) for the other stores."""
    if not settings.boost_from_bgnbd:
        return np.zeros(features.height)
    bgnbd = features["bgnbd_p_no_order"].fill_null(0.5).to_numpy()
    if not prior_stores:
        return _logit(bgnbd)
    prior = features["prior_p_no_order"].fill_null(0.5).to_numpy()
    uses_prior = features["store_id"].is_in(list(prior_stores)).to_numpy()
    return _logit(np.where(uses_prior, prior, bgnbd))


def _log_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def choose_prior_stores(held_out: pl.DataFrame, min_rows: int = 100) -> frozenset[str]:
    """Stores whose trees start from the covariate MBG/NBD prior: all but those where
    plain BG/NBD predicts the held-out customers of the newest labelled cutoff clearly
    better (per-customer log loss lower by more than two standard errors). Stores with
    fewer than `min_rows` held-out customers keep BG/NBD, the textbook model."""
    chosen = []
    for (store,), part in held_out.group_by("store_id"):
        if part.height < min_rows:
            continue
        y = part["churned"].to_numpy().astype(float)
        diff = _log_losses(y, part["prior_p_no_order"].fill_null(0.5).to_numpy()) - _log_losses(
            y, part["bgnbd_p_no_order"].fill_null(0.5).to_numpy()
        )
        if diff.mean() <= 2.0 * diff.std(ddof=1) / np.sqrt(diff.size):
            chosen.append(str(store))
    return frozenset(chosen)


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


def train_booster(
    params: dict,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    stopping: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    max_rounds: int,
    early_stopping_rounds: int,
) -> tuple[lgb.Booster, int]:
    """LightGBM on encoded FEATURES (categoricals marked), boosted from an init score and
    stopped early on the `stopping` rows. train / stopping: (matrix, target, init score).
    Returns the booster and its best iteration."""
    x_train, y_train, init_train = train
    x_stop, y_stop, init_stop = stopping
    train_set = lgb.Dataset(
        x_train,
        y_train,
        init_score=init_train,
        feature_name=list(FEATURES),
        categorical_feature=[FEATURES.index(name) for name in CATEGORICAL_FEATURES],
    )
    valid_set = lgb.Dataset(x_stop, y_stop, init_score=init_stop, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    return booster, booster.best_iteration or booster.current_iteration()


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
    `last_labelled + horizon`.

    validation='customers': the training cutoffs run up to the validation cutoff
    itself, and early stopping and calibration use held-out customers (all their
    rows are left out of training, so none of their labels is seen).
    validation='time': training labels end before the validation cutoff."""
    validation = last_labelled
    if settings.validation == "customers":
        newest_train = validation
    else:
        gap = settings.validation_gap_days
        newest_train = validation - timedelta(days=settings.horizon_days if gap is None else gap)
    train = [
        newest_train - timedelta(days=k * settings.cutoff_step_days)
        for k in range(settings.n_train_cutoffs)
    ]
    return train, validation


def holdout_customers(frame: pl.DataFrame, share: float, seed: int) -> pl.DataFrame:
    """A deterministic random `share` of the customers in `frame` (store_id, customer_id),
    drawn per store so every store is represented."""
    keys = frame.select("store_id", "customer_id").unique().sort("store_id", "customer_id")
    draw = np.random.default_rng(seed).random(keys.height)
    return keys.filter(pl.Series(draw < share))


def _tenured(labelled: pl.DataFrame, settings: ChurnSettings) -> bool:
    """A cutoff whose typical customer is newer than `min_median_tenure_days` (default:
    one horizon) only teaches the trees how brand-new customers behave, which does not
    carry to an older base (CDNOW's single cohort as of its first months); the BTYD
    prior is the tool for those, so such cutoffs are not stacked."""
    least = settings.min_median_tenure_days
    least = settings.horizon_days if least is None else least
    return float(labelled["tenure_days"].median()) >= least


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
        if part.height >= settings.min_customers_per_cutoff and _tenured(part, settings):
            train_parts.append(part)
            kept_cutoffs.append(cutoff)
    validation = cache.labelled(validation_cutoff)
    stopping = validation
    if settings.validation == "customers" and train_parts:
        held_out = holdout_customers(validation, settings.validation_share, seed)
        key = ["store_id", "customer_id"]
        validation = validation.join(held_out, on=key, how="semi")
        # Early stopping reads the held-out customers at every training cutoff (more
        # rows, a steadier stop); calibration their newest cutoff only.
        stopping = pl.concat(
            [part.join(held_out, on=key, how="semi") for part in train_parts],
            how="vertical_relaxed",
        )
        train_parts = [part.join(held_out, on=key, how="anti") for part in train_parts]
    if not train_parts or validation.height < settings.min_customers_per_cutoff:
        tenure = settings.min_median_tenure_days
        tenure = settings.horizon_days if tenure is None else tenure
        raise ValueError(
            f"not enough history to train churn as of {cache.as_of}: no training cutoff from "
            f"{min(train_cutoffs)} to {max(train_cutoffs)} has "
            f"{settings.min_customers_per_cutoff} customers with a labelled "
            f"{settings.horizon_days}-day horizon and a median tenure of {tenure} days"
        )
    _require_both_outcomes(validation, validation_cutoff, settings.horizon_days)
    train = pl.concat(train_parts, how="vertical_relaxed")
    vocab = category_vocab(train, settings.min_category_count)
    x_train, y_train = encode(train, vocab), train["churned"].to_numpy()
    x_valid, y_valid = encode(validation, vocab), validation["churned"].to_numpy()
    prior_stores = choose_prior_stores(validation)
    init_train = init_margin(train, settings, prior_stores)
    init_valid = init_margin(validation, settings, prior_stores)
    booster, best = train_booster(
        lightgbm_params(settings, seed),
        (x_train, y_train, init_train),
        (
            encode(stopping, vocab),
            stopping["churned"].to_numpy(),
            init_margin(stopping, settings, prior_stores),
        ),
        max_rounds=settings.max_rounds,
        early_stopping_rounds=settings.early_stopping_rounds,
    )
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
        prior_stores=prior_stores,
        feature_importance={
            name: round(float(g), 2) for name, g in zip(FEATURES, gains, strict=True)
        },
    )
