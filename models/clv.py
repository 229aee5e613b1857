"""Customer value (scores.clv): P(alive), expected orders in the next 90 and 365 days,
predicted 365-day revenue (USD) and the expected next order date, per customer.

Pure: polars frames in (staging.orders, optionally customers and sessions), polars
frames / dataclasses out; no Dagster, no I/O.

Two candidates, champion by holdout error (pick_champion):
- "bgnbd_gg", the published standard: BG/NBD for the number of purchase days and
  Gamma-Gamma for the spend per purchase day (Fader, Hardie & Lee 2005), fitted per
  store on history before the scoring day (models.bgnbd; matches `lifetimes`).
- "lightgbm": BTYD plus residual boosting. The base is the covariate MBG/NBD prior of
  the churn model (models.churn_features: how the first order went shifts each
  customer's purchase rate and dropout) for the expected purchase days, times the
  Gamma-Gamma spend; LightGBM (Poisson objective, init_score = the base over the
  next `horizon_days`) learns a multiplicative correction from the churn features,
  for orders and for revenue, on stacked past cutoffs with held-out customers for
  early stopping. The correction is normalised per store so the store's total stays
  the base's (fitted at the scoring day, it knows the current level; the trees only
  know past seasons), and it carries to 365 days.

An "order" here is a purchase day (orders on the same day count once, as BG/NBD
counts them); revenue is net of refunds (total_usd - refunded_amount_usd).

Expected next order date: as_of + the median time to the next purchase of a customer
who is alive and buying at their posterior rate (BG/NBD: Gamma(r + x, alpha + T)),
scaled by the learned model's rate against BG/NBD's; null when that median is more
than `next_order_max_days` (365) away.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl

from models import bgnbd, fallback
from models.churn_features import (  # noqa: F401 (prepare_orders: models.clv is the interface)
    CutoffFeatures,
    prepare_orders,
)
from models.churn_lightgbm import category_vocab, encode, holdout_customers, train_booster
from models.clv_metrics import (
    decile_calibration,
    explain,
    flat_metrics,
    learned_beats,
    no_worse_per_customer,  # noqa: F401 (re-exported: models.clv is the interface)
    paired_differences,
    value_metrics,
)
from models.sampling import training_customers

MODEL_NAME = "clv"

METHODS = ("lightgbm", "bgnbd_gg")  # most complex first; the fallback chain
CLV_SCHEMA = {
    "store_id": pl.String,
    "customer_id": pl.String,
    "as_of": pl.Date,
    "p_alive": pl.Float64,
    "expected_orders_90d": pl.Float64,
    "expected_orders_365d": pl.Float64,
    "predicted_revenue_365d_usd": pl.Float64,
    "expected_next_order_date": pl.Date,
    "model_version": pl.String,
}
CLV_COLUMNS = tuple(CLV_SCHEMA)


@dataclass(frozen=True)
class ClvSettings:
    """horizon_days: the learned model's horizon (90); its factor carries to 365 days.
    cutoff_step_days / n_train_cutoffs: stacked training cutoffs (45 / 6).
    validation_share: held-out customers for early stopping (0.25).
    min_customers_per_cutoff: cutoffs with fewer customers are skipped (50).
    next_order_max_days: no expected next order date beyond this (365).
    resolution_weeks: BG/NBD summaries are fitted at this resolution (1/7 = a day:
        exact for daily data, so the fit equals `lifetimes`').
    LightGBM: learning_rate, num_leaves, min_data_in_leaf, lambda_l2, max_rounds,
    early_stopping_rounds, num_threads.
    max_train_customers: the booster and the backtest use at most about this many
        customers, drawn per store (models.sampling; None = all); scoring covers all."""

    horizon_days: int = 90
    cutoff_step_days: int = 45
    n_train_cutoffs: int = 6
    validation_share: float = 0.25
    min_customers_per_cutoff: int = 50
    next_order_max_days: int = 365
    resolution_weeks: float = 1.0 / 7.0
    learning_rate: float = 0.1
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    lambda_l2: float = 10.0
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    num_threads: int = 1
    max_train_customers: int | None = 60_000


# ------------------------------------------------------------------- BTYD summaries


def daily_values(orders: pl.DataFrame) -> pl.DataFrame:
    """prepare_orders output -> one row per customer and purchase day with its net value,
    sorted (lazily: the query plan groups and sorts in about half the eager time)."""
    return (
        orders.lazy()
        .group_by("store_id", "customer_id", "order_date")
        .agg(value=pl.col("net_usd").sum())
        .sort("store_id", "customer_id", "order_date")
        .collect()
    )


def btyd_summary(days: pl.DataFrame, cutoff: date) -> pl.DataFrame:
    """Per customer with a purchase day before `cutoff`: x (repeat purchase days),
    t_x and T (weeks), mean net value of the repeat days (m), of all days (m_all)."""
    week = bgnbd.DAYS_PER_WEEK
    return (
        days.filter(pl.col("order_date") < cutoff)
        .group_by("store_id", "customer_id")
        .agg(
            n=pl.len(),
            first=pl.col("order_date").min(),
            last=pl.col("order_date").max(),
            total=pl.col("value").sum(),
            first_value=pl.col("value").sort_by("order_date").first(),
        )
        .select(
            "store_id",
            "customer_id",
            x=(pl.col("n") - 1).cast(pl.Float64),
            t_x=(pl.col("last") - pl.col("first")).dt.total_days().cast(pl.Float64) / week,
            T=(pl.lit(cutoff) - pl.col("first")).dt.total_days().cast(pl.Float64) / week,
            m=pl.when(pl.col("n") > 1)
            .then((pl.col("total") - pl.col("first_value")) / (pl.col("n") - 1))
            .otherwise(None),
            m_all=pl.col("total") / pl.col("n"),
        )
        .sort("store_id", "customer_id")
    )


@dataclass
class StoreBtyd:
    """One store's BG/NBD and Gamma-Gamma fits at one cutoff."""

    bgnbd: bgnbd.BgNbdParams
    gamma_gamma: bgnbd.GammaGammaParams | None
    mean_spend: float


def fit_btyd(summary: pl.DataFrame, settings: ClvSettings) -> dict[str, StoreBtyd]:
    """BG/NBD + Gamma-Gamma per store on a btyd_summary frame."""
    out = {}
    for (store,), part in summary.group_by("store_id", maintain_order=True):
        x, t_x, T = (part[c].to_numpy() for c in ("x", "t_x", "T"))
        params = bgnbd.fit(x, t_x, T, resolution_weeks=settings.resolution_weeks)
        m = part["m"].fill_null(float("nan")).to_numpy()
        spend = part["m_all"].to_numpy()
        mean_spend = float(np.mean(np.clip(spend, 0.0, None))) if spend.size else 0.0
        out[str(store)] = StoreBtyd(params, bgnbd.fit_gamma_gamma(x, m), mean_spend)
    return out


def btyd_predictions(
    summary: pl.DataFrame, fits: dict[str, StoreBtyd], horizons_days: tuple[int, ...]
) -> pl.DataFrame:
    """summary + p_alive, btyd_orders_<h>, btyd_revenue_<h> (E[orders] x E[spend]) and
    the posterior rate's shape/scale (for the next order date), per the store's fits."""
    parts = []
    for (store,), part in summary.group_by("store_id", maintain_order=True):
        fit = fits.get(str(store))
        x, t_x, T = (part[c].to_numpy() for c in ("x", "t_x", "T"))
        params = fit.bgnbd if fit else bgnbd.DEFAULT_PARAMS
        m = part["m"].fill_null(float("nan")).to_numpy()
        spend = bgnbd.expected_spend(
            fit.gamma_gamma if fit else None, x, m, fit.mean_spend if fit else 0.0
        )
        spend = np.maximum(np.nan_to_num(spend), 0.0)
        columns = {
            "p_alive": bgnbd.p_alive(params, x, t_x, T),
            "expected_spend": spend,
            "rate_shape": params.r + x,
            "rate_scale_weeks": params.alpha + T,
        }
        for h in horizons_days:
            orders = bgnbd.conditional_expected_purchases(params, x, t_x, T, h / 7.0)
            columns[f"btyd_orders_{h}"] = orders
            columns[f"btyd_revenue_{h}"] = orders * spend
        parts.append(part.with_columns(**{k: pl.Series(k, v) for k, v in columns.items()}))
    return pl.concat(parts) if parts else summary


def outcomes(days: pl.DataFrame, cutoff: date, horizon_days: int) -> pl.DataFrame:
    """Purchase days and net revenue per customer in [cutoff, cutoff + horizon)."""
    end = cutoff + timedelta(days=horizon_days)
    return (
        days.filter((pl.col("order_date") >= cutoff) & (pl.col("order_date") < end))
        .group_by("store_id", "customer_id")
        .agg(actual_orders=pl.len().cast(pl.Float64), actual_revenue=pl.col("value").sum())
    )


# --------------------------------------------------------------------- learned model


@dataclass
class ClvBooster:
    """The residual boosters (orders, revenue) over `horizon_days`."""

    orders: lgb.Booster
    revenue: lgb.Booster
    vocab: dict[str, list[str]]
    horizon_days: int
    best_iterations: tuple[int, int]
    train_cutoffs: list[date]
    n_train_rows: int


def _frame_at(
    cache: dict[date, pl.DataFrame],
    days: pl.DataFrame,
    features: pl.DataFrame,
    cutoff: date,
    settings: ClvSettings,
) -> pl.DataFrame:
    """Churn features + BTYD predictions at `cutoff` (BTYD fitted on history before it)."""
    if cutoff not in cache:
        summary = btyd_summary(days, cutoff)
        if summary.is_empty() or features.is_empty():
            cache[cutoff] = pl.DataFrame()
        else:
            fits = fit_btyd(summary, settings)
            btyd = btyd_predictions(
                summary, fits, tuple(dict.fromkeys((90, settings.horizon_days, 365)))
            )
            joined = features.join(
                btyd, on=["store_id", "customer_id"], how="inner", maintain_order="left"
            )
            # The learned model's base: the covariate MBG/NBD prior's expected purchase
            # days (models.churn_features) x the Gamma-Gamma spend.
            cache[cutoff] = joined.with_columns(
                **{f"prior_orders_{h}": pl.col(f"prior_expected_orders_{h}") for h in (90, 365)},
                **{
                    f"prior_revenue_{h}": pl.col(f"prior_expected_orders_{h}")
                    * pl.col("expected_spend")
                    for h in (90, 365)
                },
            )
    return cache[cutoff]


def _params(settings: ClvSettings, seed: int) -> dict:
    return {
        "objective": "poisson",
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "lambda_l2": settings.lambda_l2,
        "feature_fraction": 0.9,
        "feature_fraction_seed": seed,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": settings.num_threads,
        "verbosity": -1,
    }


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-6))


def fit_booster(
    frames: list[pl.DataFrame], settings: ClvSettings, seed: int, cutoffs: list[date]
) -> ClvBooster:
    """Residual boosters on labelled frames (features, BTYD, actual_orders/revenue)."""
    h = settings.horizon_days
    newest = frames[0]
    held_out = holdout_customers(newest, settings.validation_share, seed)
    key = ["store_id", "customer_id"]
    train = pl.concat([f.join(held_out, on=key, how="anti") for f in frames], how="diagonal")
    valid = pl.concat([f.join(held_out, on=key, how="semi") for f in frames], how="diagonal")
    if train.height < 500 or valid.height < 100:
        raise ValueError(
            f"too few customers to train the CLV booster ({train.height} training rows, "
            f"{valid.height} held out); need a longer history or more customers"
        )
    for part, rows in (("training", train), ("held-out", valid)):
        if rows["actual_orders"].clip(0.0).sum() <= 0:
            # LightGBM's Poisson objective cannot start from labels that are all zero.
            raise ValueError(
                f"none of the {rows.height} {part} customers ordered within "
                f"{h} days of a training cutoff, so there is nothing to learn from; "
                "need a history in which customers come back"
            )
    vocab = category_vocab(train, 20)
    x_train, x_valid = encode(train, vocab), encode(valid, vocab)
    boosters, best = [], []
    for target, base in (
        ("actual_orders", f"prior_orders_{h}"),
        ("actual_revenue", f"prior_revenue_{h}"),
    ):
        booster, best_iteration = train_booster(
            _params(settings, seed),
            (x_train, train[target].to_numpy().clip(0.0), _log(train[base].to_numpy())),
            (x_valid, valid[target].to_numpy().clip(0.0), _log(valid[base].to_numpy())),
            max_rounds=settings.max_rounds,
            early_stopping_rounds=settings.early_stopping_rounds,
        )
        boosters.append(booster)
        best.append(int(best_iteration))
    return ClvBooster(boosters[0], boosters[1], vocab, h, (best[0], best[1]), cutoffs, train.height)


def booster_factors(model: ClvBooster, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(orders factor, revenue factor): learned / BTYD expectation over the horizon,
    normalised per store so that the store's expected total stays BTYD's.

    BTYD is fitted at the scoring day, so it knows the store's current level; the
    trees, trained on earlier cutoffs, know who buys more or less than BTYD expects
    but carry the level of past seasons. They reallocate the total, BTYD sets it."""
    matrix = encode(frame, model.vocab)
    orders = model.orders.predict(matrix, num_iteration=model.best_iterations[0], raw_score=True)
    revenue = model.revenue.predict(matrix, num_iteration=model.best_iterations[1], raw_score=True)
    # raw_score excludes the init_score: exp(trees) is the multiplicative correction.
    h = model.horizon_days
    # Store codes 0..k-1 (integer work: sorting the store names per call was half the
    # prediction time).
    stores = frame.select(pl.col("store_id").rank("dense").cast(pl.Int64) - 1).to_series()
    stores = stores.to_numpy()
    factors = []
    for raw, base in ((orders, f"prior_orders_{h}"), (revenue, f"prior_revenue_{h}")):
        factor = np.exp(raw)
        expected = frame[base].to_numpy()
        learned_total = np.bincount(stores, weights=expected * factor)
        base_total = np.bincount(stores, weights=expected)
        scale = np.ones_like(learned_total)
        positive = learned_total > 0
        scale[positive] = base_total[positive] / learned_total[positive]
        factors.append(factor * scale[stores])
    return factors[0], factors[1]


# ---------------------------------------------------------------- fit, score, metrics


@dataclass
class ClvModel:
    """What scores: the settings, the learned booster (None when it could not be fitted)
    and why each unavailable method is unavailable, and the global champion."""

    settings: ClvSettings
    booster: ClvBooster | None
    unavailable: dict[str, str]
    champion: str

    def resolve(self, method: str) -> str:
        """The method itself when it can score, else the next one down the chain."""
        return fallback.resolve(METHODS, self.unavailable, method, "CLV")


@dataclass
class ClvTrainingResult:
    model: ClvModel
    backtest: (
        dict  # horizon -> {cutoff, metrics: method -> overall, store_metrics: method -> store}
    )
    candidates: dict[str, dict]
    train_seconds: float
    data_fingerprint_frame: pl.DataFrame
    predictions: dict[int, pl.DataFrame] = field(default_factory=dict)
    training_sample: str = ""  # what was trained on (models.sampling)

    @property
    def champion(self) -> str:
        return self.model.champion


class _Data(CutoffFeatures):
    """The churn features at any cutoff (CutoffFeatures) with the purchase days and the
    BTYD fits on them, each cutoff's computed once."""

    def __init__(self, orders, as_of, customers, sessions, settings: ClvSettings):
        super().__init__(
            orders, as_of, customers=customers, sessions=sessions,
            horizon_days=settings.horizon_days,
        )  # fmt: skip
        self.settings = settings
        self.days = daily_values(self.orders)
        self.frames: dict[date, pl.DataFrame] = {}

    def frame(self, cutoff: date) -> pl.DataFrame:
        return _frame_at(self.frames, self.days, self.features(cutoff), cutoff, self.settings)

    def labelled(self, cutoff: date, horizon_days: int) -> pl.DataFrame:
        frame = self.frame(cutoff)
        if frame.is_empty():
            return frame
        return frame.join(
            outcomes(self.days, cutoff, horizon_days), on=["store_id", "customer_id"], how="left"
        ).with_columns(pl.col("actual_orders", "actual_revenue").fill_null(0.0))


def _train_cutoffs(last_labelled: date, settings: ClvSettings) -> list[date]:
    return [
        last_labelled - timedelta(days=k * settings.cutoff_step_days)
        for k in range(settings.n_train_cutoffs)
    ]


def _fit_at(data: _Data, last_labelled: date, seed: int) -> ClvBooster:
    settings = data.settings
    cutoffs, frames = [], []
    for cutoff in _train_cutoffs(last_labelled, settings):
        frame = (
            data.labelled(cutoff, settings.horizon_days) if cutoff > data.first_order_date else None
        )
        if frame is not None and frame.height >= settings.min_customers_per_cutoff:
            frames.append(frame)
            cutoffs.append(cutoff)
    if not frames:
        raise ValueError(
            f"not enough history to train the CLV booster: no cutoff on or before "
            f"{last_labelled} with {settings.min_customers_per_cutoff} customers"
        )
    return fit_booster(frames, settings, seed, cutoffs)


def method_predictions(
    frame: pl.DataFrame, booster: ClvBooster | None, learned: np.ndarray
) -> dict[str, np.ndarray]:
    """Per row, by its method (learned rows: True in `learned`): p_alive, orders_90,
    orders_365, revenue_90, revenue_365, and the rate factor vs BG/NBD (next order date).

    BG/NBD + Gamma-Gamma: the BTYD columns. Learned: the covariate MBG/NBD prior x the
    boosters' factors (booster_factors), its P(alive) from the same prior."""
    out = {
        "p_alive": frame["p_alive"].to_numpy().copy(),
        **{f"orders_{h}": frame[f"btyd_orders_{h}"].to_numpy().copy() for h in (90, 365)},
        **{f"revenue_{h}": frame[f"btyd_revenue_{h}"].to_numpy().copy() for h in (90, 365)},
        "rate_factor": np.ones(frame.height),
    }
    if booster is None or not learned.any():
        return out
    part = frame.filter(pl.Series(learned))
    orders_factor, revenue_factor = booster_factors(booster, part)
    out["p_alive"][learned] = part["prior_p_alive"].to_numpy()
    for h in (90, 365):
        out[f"orders_{h}"][learned] = part[f"prior_orders_{h}"].to_numpy() * orders_factor
        out[f"revenue_{h}"][learned] = part[f"prior_revenue_{h}"].to_numpy() * revenue_factor
    base = np.maximum(part["btyd_orders_90"].to_numpy(), 1e-9)
    out["rate_factor"][learned] = np.clip(out["orders_90"][learned] / base, 0.05, 20.0)
    return out


def apply(
    frame: pl.DataFrame, booster: ClvBooster | None, method: str, horizon: int
) -> pl.DataFrame:
    """frame + pred_orders_h / pred_revenue_h (over `horizon` days: 90 or 365) and the
    365-day predictions, every row by `method`."""
    learned = np.full(frame.height, method == "lightgbm" and booster is not None)
    p = method_predictions(frame, booster, learned)
    return frame.with_columns(
        pred_orders_h=pl.Series(p[f"orders_{horizon}"]),
        pred_revenue_h=pl.Series(p[f"revenue_{horizon}"]),
        pred_orders_365=pl.Series(p["orders_365"]),
        pred_revenue_365=pl.Series(p["revenue_365"]),
    )


def _metrics(frame: pl.DataFrame) -> dict:
    actual_orders = frame["actual_orders"].to_numpy()
    pred_orders = frame["pred_orders_h"].to_numpy()
    return {
        "orders": value_metrics(actual_orders, pred_orders),
        "revenue": value_metrics(
            frame["actual_revenue"].to_numpy(), frame["pred_revenue_h"].to_numpy()
        ),
        "calibration": decile_calibration(actual_orders, pred_orders),
    }


def evaluate_holdout(
    data: _Data, cutoff: date, horizon_days: int, booster: ClvBooster | None
) -> dict | None:
    """Every method on the holdout [cutoff, cutoff + horizon_days): overall and per store;
    the learned model's metrics carry its paired differences against BG/NBD + GG
    ("paired")."""
    frame = data.labelled(cutoff, horizon_days)
    if frame.is_empty():
        return None
    out = {"cutoff": cutoff, "horizon_days": horizon_days, "metrics": {}, "store_metrics": {}}
    predictions = frame.select("store_id", "customer_id", "actual_orders", "actual_revenue")
    base = None
    for method in ("bgnbd_gg", "lightgbm"):  # the baseline first: the others pair with it
        if method == "lightgbm" and booster is None:
            continue
        scored = apply(frame, booster, method, data.settings.horizon_days)
        if horizon_days == 365:
            scored = scored.with_columns(
                pred_orders_h=pl.col("pred_orders_365"), pred_revenue_h=pl.col("pred_revenue_365")
            )
        out["metrics"][method] = _metrics(scored)
        out["store_metrics"][method] = {
            str(store): _metrics(part)
            for (store,), part in scored.group_by("store_id", maintain_order=True)
        }
        if base is None:
            base = scored
        else:
            overall, per_store = paired_differences(scored, base)
            out["metrics"][method]["paired"] = overall
            for store, metrics in out["store_metrics"][method].items():
                metrics["paired"] = per_store[store]
        predictions = predictions.with_columns(
            scored["pred_orders_h"].alias(f"{method}_orders"),
            scored["pred_revenue_h"].alias(f"{method}_revenue"),
        )
    out["predictions"] = predictions
    return out


def pick_champion(backtest: dict) -> tuple[str, str]:
    """The global champion by `learned_beats` (the lifecycle applies the same rule per
    store)."""
    learned, base = flat_metrics(backtest, "lightgbm"), flat_metrics(backtest, "bgnbd_gg")
    if learned is None or base is None:
        return "bgnbd_gg", "the learned model has no backtest: BG/NBD + Gamma-Gamma"
    if learned_beats(learned, base):
        return "lightgbm", "the learned model beats BG/NBD + Gamma-Gamma: " + explain(learned, base)
    return "bgnbd_gg", "BG/NBD + Gamma-Gamma kept: " + explain(learned, base)


def fit(
    orders: pl.DataFrame,
    as_of: date,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    settings: ClvSettings | None = None,
    seed: int = 0,
    population: int | None = None,
) -> ClvTrainingResult:
    """Backtest both candidates on the newest fully observed holdouts (90 days, and 365
    days when the history allows), then fit what scores. Never fails for thin data:
    the learned model is marked unavailable with the reason, BG/NBD + Gamma-Gamma stays.

    `population`: as in models.churn.train (the orders are the sample already)."""
    settings = settings or ClvSettings()
    if settings.horizon_days not in (90, 365):
        raise ValueError(f"ClvSettings.horizon_days must be 90 or 365, got {settings.horizon_days}")
    started = time.perf_counter()
    sample, orders, customers = training_customers(
        orders, customers, population, settings.max_train_customers, seed
    )
    data = _Data(orders, as_of, customers, sessions, settings)
    h = timedelta(days=settings.horizon_days)
    short_cutoff = as_of - h
    long_cutoff = as_of - timedelta(days=365)
    wanted = [
        short_cutoff,
        *_train_cutoffs(short_cutoff - h, settings),
        *_train_cutoffs(short_cutoff, settings),
    ]
    wanted += [long_cutoff, *_train_cutoffs(long_cutoff - h, settings)]
    data.prefetch([c for c in wanted if c > data.first_order_date])
    backtest, predictions, reasons = {}, {}, {}
    for horizon, cutoff in ((90, short_cutoff), (365, long_cutoff)):
        if cutoff <= data.first_order_date:
            continue
        try:
            booster = _fit_at(data, cutoff - h, seed)
        except ValueError as exc:
            booster, reasons[horizon] = None, str(exc)
        result = evaluate_holdout(data, cutoff, horizon, booster)
        if result is not None:
            predictions[horizon] = result.pop("predictions")
            backtest[horizon] = result
    unavailable = {}
    try:
        booster = _fit_at(data, short_cutoff, seed)
    except ValueError as exc:
        booster, unavailable["lightgbm"] = None, f"cannot be fitted: {exc}"
    if booster is not None and "lightgbm" not in backtest.get(90, {}).get("metrics", {}):
        booster = None
        unavailable["lightgbm"] = "cannot be backtested: " + reasons.get(
            90, f"no customer before {short_cutoff}"
        )
    champion, why = (
        pick_champion(backtest)
        if booster is not None
        else (
            "bgnbd_gg",
            "BG/NBD + Gamma-Gamma: the learned model " + unavailable["lightgbm"],
        )
    )
    candidates = fallback.candidates(
        METHODS,
        unavailable,
        champion,
        why,
        # Per holdout horizon (90 and, with the history for it, 365 days).
        metrics=lambda method: {hz: b["metrics"].get(method) for hz, b in backtest.items()},
        store_metrics=lambda method: {
            hz: b["store_metrics"].get(method, {}) for hz, b in backtest.items()
        },
    )
    return ClvTrainingResult(
        model=ClvModel(settings, booster, unavailable, champion),
        backtest=backtest,
        candidates=candidates,
        train_seconds=round(time.perf_counter() - started, 3),
        data_fingerprint_frame=data.orders.select(
            "store_id", "customer_id", "order_id", "order_date"
        ),
        predictions=predictions,
        training_sample=sample.describe(),
    )


def scoring_frame(
    orders: pl.DataFrame,
    as_of: date,
    settings: ClvSettings,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features + BTYD fits at as_of for every customer with a valid order before it."""
    return _Data(orders, as_of, customers, sessions, settings).frame(as_of)


def predict(
    model: ClvModel,
    frame: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    method_of_store: dict[str, str] | None = None,
    default_method: str | None = None,
) -> pl.DataFrame:
    """scores.clv rows from a scoring_frame, each store by its method (default: the
    champion; unavailable methods fall back to BG/NBD + Gamma-Gamma);
    model_version = f"{model_version}/{method}"."""
    if frame.is_empty():
        return empty_clv()
    method = fallback.method_per_row(
        frame["store_id"], model.resolve, method_of_store, default_method or model.champion
    )
    learned = (method == "lightgbm").to_numpy()
    p = method_predictions(frame, model.booster, learned)
    # Median wait to the next purchase of an alive customer at the posterior rate:
    # P(no purchase in t | alive) = (s / (s + t))^k with k = r + x, s = alpha + T (weeks).
    k = frame["rate_shape"].to_numpy()
    s = frame["rate_scale_weeks"].to_numpy()
    wait_days = 7.0 * s * (np.power(2.0, 1.0 / np.maximum(k, 1e-9)) - 1.0) / p["rate_factor"]
    wait_days = np.where(
        wait_days <= model.settings.next_order_max_days, np.ceil(wait_days), np.nan
    )
    return (
        frame.select("store_id", "customer_id")
        .with_columns(
            as_of=pl.lit(as_of),
            p_alive=pl.Series(p["p_alive"]).round(4),
            expected_orders_90d=pl.Series(p["orders_90"]).round(4),
            expected_orders_365d=pl.Series(p["orders_365"]).round(4),
            predicted_revenue_365d_usd=pl.Series(p["revenue_365"]).round(2),
            expected_next_order_date=pl.lit(as_of)
            + pl.duration(days=pl.Series(wait_days).fill_nan(None).cast(pl.Int64)),
            model_version=pl.concat_str([pl.lit(model_version + "/"), method]),
        )
        .select(CLV_COLUMNS)
    )


def score(
    model: ClvModel,
    orders: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    method_of_store: dict[str, str] | None = None,
    default_method: str | None = None,
) -> pl.DataFrame:
    """scoring_frame + predict: scores.clv for every customer with an order before as_of."""
    frame = scoring_frame(orders, as_of, model.settings, customers=customers, sessions=sessions)
    return predict(
        model,
        frame,
        as_of,
        model_version,
        method_of_store=method_of_store,
        default_method=default_method,
    )


def empty_clv() -> pl.DataFrame:
    return pl.DataFrame(schema=CLV_SCHEMA)


def bench_stage(orders, customers=None, sessions=None, *, seed: int = 0, repeats: int = 3) -> dict:
    """CLV speed for benchmarks/stages.py: fit (backtests included) seconds on the given
    staging frames; end-to-end scoring (`score`: features, the per-store BTYD and prior
    refits at the scoring day, prediction) and prediction alone from a prebuilt scoring
    frame, each the best of `repeats` (wall seconds, and the CPU seconds of the process,
    all threads, of that run), as customers/s."""
    as_of = orders["order_date"].max() + timedelta(days=1)
    started = time.perf_counter()
    result = fit(orders, as_of, customers=customers, sessions=sessions, seed=seed)
    fit_seconds = time.perf_counter() - started
    inputs = {"customers": customers, "sessions": sessions}
    best, best_cpu, frame_best = math.inf, math.inf, math.inf
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        frame = scoring_frame(orders, as_of, result.model.settings, **inputs)
        frame_best = min(frame_best, time.perf_counter() - started)
        scores = predict(result.model, frame, as_of, "bench")
        if time.perf_counter() - started < best:
            best, best_cpu = time.perf_counter() - started, time.process_time() - cpu
    predict_best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        scores = predict(result.model, frame, as_of, "bench")
        predict_best = min(predict_best, time.perf_counter() - started)
    return {
        "customers": scores.height,
        "champion": result.champion,
        "fit_seconds": round(fit_seconds, 2),
        "scoring_frame_seconds": round(frame_best, 3),
        "score_seconds": round(best, 3),
        "score_cpu_seconds": round(best_cpu, 3),
        "fit_plus_score_seconds": round(fit_seconds + best, 2),
        "predict_customers_per_second": round(scores.height / predict_best),
        "score_customers_per_second": round(scores.height / best),
    }
