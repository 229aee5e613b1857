"""Demand forecasting: daily units per store x SKU, `horizon_days` ahead, p10/p50/p90.

Data. `prepare_history` turns staging orders, order lines and inventory snapshots
into one row per store x SKU x day: units ordered (cancelled orders out; refunded
units kept, also counted separately as `refunded_units`, since a refund does not
undo the demand), revenue, discount, and the on-hand stock. A day whose snapshot
shows no stock (on_hand <= 0) is *censored*: the sales we saw are a lower bound,
not the demand, so `demand` is null there. Censored days are never a training
target nor an evaluation point, and every rolling statistic averages observed
days only (a stock-out does not drag the level down).

Strategy: **direct, one global LightGBM model, horizon as a feature.** Each
training row pairs a target day t with a forecast origin o = t - h, where the
horizon h (1..H) is drawn per row from a seeded generator. All history features
are computed at the origin (rolling means, weekday profile, price, refunds,
store level) or at lags of at least h from t (same weekday in the last observed
week, t - 364 for the seasonal year), so every feature a training row sees is
one the forecast would also have at that horizon. At prediction time the origin
is the day before the cutoff and h = 1..H. Versus recursive forecasting this
avoids feeding predictions back (errors do not compound, and 28 steps cost one
predict call); versus one model per horizon it is one model to train and store.
Target-day features are known in advance: calendar, the per-market event
calendar (`models.events`; one signed distance per event: days to its next
occurrence when that is nearer, else minus the days since the last one, so a
tree sees run-up and hangover in one column), SKU attributes (category, list
price, margin, age since launch). History lookups are index arithmetic on the
gap-free daily grid (a series' day d sits at its offset + d), not joins.

Training rows. Every observed target day of the last `train_days` is a
candidate, but the loss is weighted by the series level (below), so the rows
of slow series carry little of it: on a typical catalogue half the rows hold
under a tenth of the weight, yet every row costs the same training time.
Rows whose level is below `sample_level` x the mean level are therefore
importance-sampled: kept with probability level / (sample_level x mean level)
and weighted by the inverse, so the weighted loss is an unbiased estimate of
the full one (`sample_rows`; `sample_level=0` keeps every row). On the
benchmark sample this keeps ~a third of the rows at the same accuracy.

Objective: Tweedie (counts with many zeros and a heavy tail). The booster learns
demand relative to the series' level at the origin (the mean of its 28-, 91-
and 182-day observed means), weighted by that level so the loss stays in units:
trees cannot extrapolate, so a growing or fading SKU keeps its trend instead of
being pulled back to levels seen in training. Level x prediction gives the
expected units of a day (`expected_units`). Around that mean sits a
negative binomial whose size is fitted on the backtest; p10/p50/p90 are its
quantiles. p50 is the true median, the point forecast WAPE and MASE score (an
absolute-error metric is minimised by the median; for slow movers it is often
0). Sums over days (lead-time demand, the reorder plan) use `expected_units`,
since medians do not add up. The p10/p90 tail levels are calibrated per
forecast-size bin so that [p10, p90] holds ~80 % of observed days (split
conformal: the coverage reported is cross-fitted, calibrated on one half of the
series and measured on the other; when one half is empty, a store with a single SKU,
in sample).

Backtest: train strictly before `as_of - H`, forecast the last full horizon
before as_of, and compare WAPE, bias, MASE and p10-p90 coverage with the
seasonal naive (same weekday in the last observed week) and the 28-day moving
average, overall, by store and by ABC class. The metrics of `expected_units`
(`wape_expected_units`, `bias_expected_units`) are reported next to them: the
baselines are mean-like forecasts, and part of p50's WAPE edge is that it is a
median.

Public API: `prepare_history`, `fit`, `predict`, `backtest`, `train` (backtest +
final fit), `abc_classes`, `forecast_metrics`, `calibrate_interval`,
`LGBM_PARAMS` / `NUM_BOOST_ROUND` (the LightGBM settings as plain values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl
from scipy.stats import nbinom

from models.demand_features import (
    CATEGORICAL,
    FEATURES,
    Features,
    build_features,
    complete_design,
    design_matrix,
    design_rows,
    level_at_origin,
    sample_rows,
    with_origin,
)
from models.demand_history import SERIES_KEY, DemandHistory, concat_histories, prepare_history
from models.sampling import sample_keys

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "SERIES_KEY",
    "DemandHistory",
    "concat_histories",
    "prepare_history",
]

MODEL_NAME = "demand"
HORIZON_DAYS = 28

# LightGBM settings, a plain dict so a benchmark can hand mlforecast the same ones.
LGBM_PARAMS: dict = {
    "objective": "tweedie",
    "tweedie_variance_power": 1.2,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 300,
    "feature_fraction": 0.6,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "num_threads": 1,  # OpenMP spin-waits make 2+ threads far slower on a shared box
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
NUM_BOOST_ROUND = 200

BASELINES = ("seasonal_naive", "moving_average_28")


class StaleModelError(ValueError):
    """A saved model needs features this code no longer builds: it must be retrained."""


@dataclass(frozen=True)
class DemandSettings:
    """Settings of one training run (defaults documented in the README)."""

    horizon_days: int = HORIZON_DAYS
    train_days: int = 365  # most recent target days used for training
    num_boost_round: int = NUM_BOOST_ROUND
    interval_coverage: float = 0.8  # target share of actual days inside [p10, p90]
    # Learn demand relative to the series' recent level (see level_at_origin), so growth and
    # decline carry into the forecast instead of being averaged away by the trees.
    relative_target: bool = True
    # Training rows whose series level at the origin is below sample_level x the mean
    # level of all training rows are importance-sampled (see sample_rows); 0 keeps all.
    sample_level: float = 1.5
    # The global model trains and is backtested on at most about this many store x SKU
    # series, drawn per store (models.sampling; None = all): memory stays bounded however
    # many stores there are. Every series is still forecast.
    max_train_series: int | None = 8_000
    features: tuple[str, ...] | None = None  # None: FEATURES
    lgbm_params: dict = field(default_factory=lambda: dict(LGBM_PARAMS))


# --------------------------------------------------------------------------- model


@dataclass
class IntervalCalibration:
    """Negative binomial around the point forecast, with calibrated quantile levels.

    `dispersion` is the NB size k (variance = mu + mu^2 / k), fitted by
    likelihood. Daily counts are discrete, so the nominal 10 %/90 % quantiles
    cover more than 80 % at low volume and less at high volume: the forecasts
    are cut into bins by their mean (`bin_edges`) and each bin gets the lower
    tail level (`lower_levels`; upper = 1 - lower) whose coverage is nearest
    `target_coverage` on the backtest.
    """

    dispersion: float = 1e4
    bin_edges: list[float] = field(default_factory=list)  # inner edges on the mean
    lower_levels: list[float] = field(default_factory=lambda: [0.1])
    target_coverage: float = 0.8

    def levels(self, mean: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(np.asarray(self.bin_edges, dtype=float), mean, side="right")
        return np.asarray(self.lower_levels, dtype=float)[bins]

    def quantiles(self, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p10, p50 (the median), p90 of each day's predictive distribution."""
        mean = np.clip(np.asarray(mean, dtype=float), 1e-9, None)
        p = self.dispersion / (self.dispersion + mean)
        level = self.levels(mean)
        low = nbinom.ppf(level, self.dispersion, p)
        median = nbinom.ppf(0.5, self.dispersion, p)
        high = nbinom.ppf(1 - level, self.dispersion, p)
        return low, median, high


DISPERSION_GRID = np.concatenate([np.logspace(-1.5, 2.5, 17), [1e4]])
LEVEL_GRID = np.round(np.arange(0.01, 0.50, 0.01), 2)
INTERVAL_BINS = 4  # forecast-mean bins with their own quantile level
MIN_POINTS_PER_BIN = 200


def calibrate_interval(mean: np.ndarray, actual: np.ndarray, target: float) -> IntervalCalibration:
    """Fit the NB size by likelihood, then per mean-bin the tail level nearest target."""
    mean = np.clip(np.asarray(mean, dtype=float), 1e-9, None)
    actual = np.round(np.asarray(actual, dtype=float))
    if len(mean) == 0:
        return IntervalCalibration(target_coverage=target)
    loglik = [nbinom.logpmf(actual, k, k / (k + mean)).sum() for k in DISPERSION_GRID]
    k = float(DISPERSION_GRID[int(np.argmax(loglik))])
    p = k / (k + mean)
    cdf_at = nbinom.cdf(actual, k, p)  # y >= ppf(a)  <=>  F(y) >= a
    cdf_below = nbinom.cdf(actual - 1, k, p)  # y <= ppf(1-a)  <=>  F(y-1) < 1-a
    n_bins = max(1, min(INTERVAL_BINS, len(mean) // MIN_POINTS_PER_BIN))
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bins = np.searchsorted(edges, mean, side="right")
    levels = []
    for b in range(len(edges) + 1):
        inside = bins == b
        if not inside.any():
            levels.append(0.1)
            continue
        coverage = np.array(
            [np.mean((cdf_at[inside] >= a) & (cdf_below[inside] < 1 - a)) for a in LEVEL_GRID]
        )
        # Nearest to target; ties go to the wider interval (smaller tail level).
        levels.append(float(LEVEL_GRID[int(np.argmin(np.abs(coverage - target)))]))
    return IntervalCalibration(k, [float(e) for e in edges], levels, target)


@dataclass
class DemandModel:
    """A trained model: the booster plus everything predict needs."""

    booster: lgb.Booster
    config: DemandSettings
    seed: int
    trained_through: date  # last target day seen in training
    categories: dict[str, list[str]]
    interval: IntervalCalibration
    features: list[str]
    train_rows: int  # rows the booster was trained on (after sampling)
    target_days: int = 0  # observed target days in the training window (before sampling)

    def feature_importance(self) -> pl.DataFrame:
        gain = self.booster.feature_importance(importance_type="gain")
        return pl.DataFrame({"feature": self.features, "gain": gain.astype(float)}).sort(
            "gain", descending=True
        )


def _training_targets(
    history: DemandHistory, cutoff: date, config: DemandSettings, seed: int
) -> pl.DataFrame:
    start = cutoff - timedelta(days=config.train_days)
    targets = (
        history.daily.filter(
            (pl.col("date") >= start) & (pl.col("date") < cutoff) & pl.col("demand").is_not_null()
        )
        .select(*SERIES_KEY, "date", "demand")
        .sort(*SERIES_KEY, "date")
    )
    rng = np.random.default_rng(seed)
    targets = targets.with_columns(
        pl.Series("horizon", rng.integers(1, config.horizon_days + 1, targets.height), pl.Int32)
    )
    first = history.daily.group_by(SERIES_KEY).agg(pl.col("date").min().alias("_first"))
    # The origin must lie inside the series' history, as it always does when forecasting.
    return (
        targets.join(first, on=SERIES_KEY)
        .filter(pl.col("date") - pl.duration(days=pl.col("horizon")) >= pl.col("_first"))
        .drop("_first")
    )


def fit(
    history: DemandHistory,
    cutoff: date | None = None,
    config: DemandSettings | None = None,
    seed: int = 0,
    interval: IntervalCalibration | None = None,
    _features: Features | None = None,
) -> DemandModel:
    """Train on target days strictly before `cutoff` (default: history.as_of)."""
    config = config or DemandSettings()
    cutoff = cutoff or history.as_of
    features = _features or build_features(history, config.horizon_days)
    targets = _training_targets(history, cutoff, config, seed)
    if targets.height == 0:
        raise ValueError(
            f"no observed store x SKU days before {cutoff}: demand needs order lines "
            "(and some days in stock) before the cutoff"
        )
    rows = with_origin(features, targets)
    level = level_at_origin(rows)
    rows, weight = sample_rows(rows, level, config.sample_level, seed)
    design = complete_design(features, rows)
    params = {**config.lgbm_params, "seed": seed}
    label = design["demand"].to_numpy().astype(np.float64)
    if config.relative_target:
        level = level_at_origin(design)
        # Weighting by the level keeps the loss in units: big sellers count more.
        label, weight = label / level, weight * level
    names = list(config.features or FEATURES)
    dataset = lgb.Dataset(
        design_matrix(design, names),
        label=label.astype(np.float32),
        weight=weight.astype(np.float32),
        feature_name=names,
        categorical_feature=[c for c in CATEGORICAL if c in names],
        free_raw_data=True,
        params={"max_bin": params.get("max_bin", 255), "verbose": -1},
    )
    booster = lgb.train(params, dataset, num_boost_round=config.num_boost_round)
    return DemandModel(
        booster=booster,
        config=config,
        seed=seed,
        trained_through=cutoff - timedelta(days=1),
        categories=features.categories,
        interval=interval or IntervalCalibration(target_coverage=config.interval_coverage),
        features=names,
        train_rows=design.height,
        target_days=targets.height,
    )


def _forecast_targets(history: DemandHistory, cutoff: date, horizon_days: int) -> pl.DataFrame:
    """Every series alive at the cutoff x the next horizon_days days."""
    series = (
        history.daily.filter(pl.col("date") < cutoff).select(SERIES_KEY).unique().sort(SERIES_KEY)
    )
    steps = pl.DataFrame(
        {"horizon": list(range(1, horizon_days + 1))}, schema={"horizon": pl.Int32}
    )
    return series.join(steps, how="cross").with_columns(
        (pl.lit(cutoff) + pl.duration(days=pl.col("horizon") - 1)).alias("date")
    )


def predict(
    model: DemandModel,
    history: DemandHistory,
    cutoff: date | None = None,
    _features: Features | None = None,
    _keep_design: bool = False,
) -> pl.DataFrame:
    """Forecast cutoff .. cutoff + H - 1 (default cutoff: history.as_of) for every series.

    Returns store_id, sku, date, horizon, p10, p50, p90 (quantiles of the day's
    units) and expected_units (the mean: sum it over days, e.g. for a lead time).
    Uses history strictly before the cutoff only.
    """
    cutoff = cutoff or history.as_of
    horizon = model.config.horizon_days
    features = _features or build_features(history, horizon, model.categories)
    targets = _forecast_targets(history, cutoff, horizon)
    design = design_rows(features, targets)
    missing = [f for f in model.features if f not in design.columns]
    if missing:
        raise StaleModelError(
            f"demand model trained on features this code no longer builds ({missing[:3]}...): "
            "retrain it (materialize demand_model)"
        )
    mean = model.booster.predict(
        design_matrix(design, model.features),
        num_threads=model.config.lgbm_params.get("num_threads", 1),
    )
    if model.config.relative_target:
        mean = mean * level_at_origin(design)
    low, median, high = model.interval.quantiles(mean)
    out = design.with_columns(
        pl.Series("p10", low, pl.Float64),
        pl.Series("p50", median, pl.Float64),
        pl.Series("p90", high, pl.Float64),
        pl.Series("expected_units", mean, pl.Float64),
    )
    keep = [*SERIES_KEY, "date", "horizon", "p10", "p50", "p90", "expected_units"]
    if _keep_design:
        keep += ["same_weekday_last_week", "ma_28"]
    return out.select(keep).sort(*SERIES_KEY, "date")


# --------------------------------------------------------------------------- evaluation


def abc_classes(history: DemandHistory, as_of: date | None = None, days: int = 365) -> pl.DataFrame:
    """ABC class per store x SKU by revenue over `days` before as_of: A = first 80 %
    of the store's revenue, B = next 15 %, C = the last 5 % (and SKUs without revenue)."""
    as_of = as_of or history.as_of
    revenue = (
        history.daily.filter(
            (pl.col("date") < as_of) & (pl.col("date") >= as_of - timedelta(days=days))
        )
        .group_by(SERIES_KEY)
        .agg(pl.col("revenue_usd").sum().clip(0.0))
    )
    all_series = history.daily.select(SERIES_KEY).unique()
    revenue = all_series.join(revenue, on=SERIES_KEY, how="left").with_columns(
        pl.col("revenue_usd").fill_null(0.0)
    )
    ranked = revenue.sort(["store_id", "revenue_usd", "sku"], descending=[False, True, False])
    share_before = (
        (pl.col("revenue_usd").cum_sum() - pl.col("revenue_usd")) / pl.col("revenue_usd").sum()
    ).over("store_id")
    return ranked.with_columns(share_before.fill_nan(1.0).alias("_before")).select(
        *SERIES_KEY,
        "revenue_usd",
        pl.when((pl.col("_before") < 0.80) & (pl.col("revenue_usd") > 0))
        .then(pl.lit("A"))
        .when((pl.col("_before") < 0.95) & (pl.col("revenue_usd") > 0))
        .then(pl.lit("B"))
        .otherwise(pl.lit("C"))
        .alias("abc_class"),
    )


def mase_scale(history: DemandHistory, cutoff: date, days: int = 365) -> pl.DataFrame:
    """Per series: mean |y_t - y_(t-7)| over observed pairs before the cutoff (MASE denominator)."""
    d = history.daily.filter(
        (pl.col("date") < cutoff) & (pl.col("date") >= cutoff - timedelta(days=days + 7))
    ).sort(*SERIES_KEY, "date")
    return (
        d.with_columns(
            (pl.col("demand") - pl.col("demand").shift(7).over(SERIES_KEY)).abs().alias("_diff")
        )
        .group_by(SERIES_KEY)
        .agg(pl.col("_diff").mean().fill_null(0.0).alias("mase_scale"))
    )


def forecast_metrics(
    frame: pl.DataFrame, forecast: str, lower: str | None = None, upper: str | None = None
) -> dict:
    """WAPE, bias, MASE (pooled: sum |error| / sum of the series' naive scale), coverage.

    `frame` has actual, mase_scale and the forecast columns, observed days only.
    """
    actual = frame["actual"].to_numpy().astype(float)
    pred = frame[forecast].to_numpy().astype(float)
    total = actual.sum()
    abs_err = np.abs(actual - pred).sum()
    scale = frame["mase_scale"].fill_null(0.0).to_numpy().sum()
    result = {
        "wape": float(abs_err / total) if total > 0 else None,
        "bias": float((pred - actual).sum() / total) if total > 0 else None,
        "mase": float(abs_err / scale) if scale > 0 else None,
        "actual_units": float(total),
        "forecast_units": float(pred.sum()),
        "days": int(len(actual)),
    }
    if lower and upper:
        lo = frame[lower].to_numpy()
        hi = frame[upper].to_numpy()
        result["coverage_p10_p90"] = (
            float(np.mean((actual >= lo) & (actual <= hi))) if len(actual) else None
        )
    return result


@dataclass
class DemandBacktest:
    """The last full horizon before as_of: model and baselines side by side."""

    cutoff: date
    as_of: date
    horizon_days: int
    metrics: dict
    baseline_metrics: dict[str, dict]
    by_store: pl.DataFrame  # store_id, method, wape, bias, mase, coverage_p10_p90, ...
    by_abc: pl.DataFrame  # abc_class, method, ...
    predictions: pl.DataFrame  # store_id, sku, date, actual, censored, p10, p50, p90, baselines
    interval: IntervalCalibration
    baseline_intervals: dict[str, IntervalCalibration] = field(default_factory=dict)

    @property
    def best_baseline(self) -> str:
        return min(self.baseline_metrics, key=lambda b: self.baseline_metrics[b]["wape"] or np.inf)

    @property
    def beats_baselines(self) -> bool:
        wape = self.metrics.get("wape")
        best = self.baseline_metrics[self.best_baseline].get("wape")
        return wape is not None and best is not None and wape < best

    def table(self) -> pl.DataFrame:
        """One row per method: the overall comparison."""
        rows = [{"method": "lightgbm", **self.metrics}] + [
            {"method": name, **values} for name, values in self.baseline_metrics.items()
        ]
        return pl.DataFrame(rows, infer_schema_length=None)


def _grouped_metrics(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    rows = []
    for (key,), group in frame.group_by([by], maintain_order=True):
        rows.append({by: key, "method": "lightgbm", **forecast_metrics(group, "p50", "p10", "p90")})
        for baseline in BASELINES:
            rows.append({by: key, "method": baseline, **forecast_metrics(group, baseline)})
    return pl.DataFrame(rows, infer_schema_length=None).sort(by, "method")


def _cross_fitted_intervals(
    frame: pl.DataFrame, target: float, seed: int
) -> tuple[pl.DataFrame, IntervalCalibration]:
    """p10/p50/p90 for each backtest point from a calibration on the *other* half of the series."""
    half = (pl.concat_str(SERIES_KEY).hash(seed) % 2).alias("_half")
    frame = frame.with_columns(half)
    full = calibrate_interval(
        frame["expected_units"].to_numpy(), frame["actual"].to_numpy(), target
    )
    pieces = []
    for part in (0, 1):
        calib = frame.filter(pl.col("_half") != part)
        evaluate = frame.filter(pl.col("_half") == part)
        # A store with one SKU (or two that hash alike) has no other half to calibrate
        # on: its points are calibrated on themselves, in sample, rather than left to an
        # uncalibrated default that made p50 and the interval depend on the seed.
        cal = (
            calibrate_interval(
                calib["expected_units"].to_numpy(), calib["actual"].to_numpy(), target
            )
            if calib.height
            else full
        )
        low, median, high = cal.quantiles(evaluate["expected_units"].to_numpy())
        pieces.append(
            evaluate.with_columns(
                pl.Series("p10", low), pl.Series("p50", median), pl.Series("p90", high)
            )
        )
    return pl.concat(pieces).drop("_half").sort(*SERIES_KEY, "date"), full


def backtest(
    history: DemandHistory,
    config: DemandSettings | None = None,
    seed: int = 0,
    _features: Features | None = None,
) -> tuple[DemandBacktest, DemandModel]:
    """Train before as_of - H, forecast the last full horizon, score against baselines.

    Returns the backtest and the model trained for it (its interval calibrated).
    """
    config = config or DemandSettings()
    features = _features or build_features(history, config.horizon_days)
    cutoff = history.as_of - timedelta(days=config.horizon_days)
    model = fit(history, cutoff, config, seed, _features=features)
    forecast = predict(model, history, cutoff, _features=features, _keep_design=True)
    actual = history.daily.filter(pl.col("date") >= cutoff).select(
        *SERIES_KEY, "date", pl.col("demand").alias("actual"), "censored", "units"
    )
    frame = (
        forecast.join(actual, on=[*SERIES_KEY, "date"], how="inner")
        .with_columns(
            pl.col("ma_28").fill_null(0.0).alias("moving_average_28"),
            # A censored or missing last-week value falls back to the moving average.
            pl.coalesce("same_weekday_last_week", "ma_28", pl.lit(0.0)).alias("seasonal_naive"),
        )
        .drop("same_weekday_last_week", "ma_28")
        .join(mase_scale(history, cutoff), on=SERIES_KEY, how="left")
        .join(abc_classes(history, cutoff), on=SERIES_KEY, how="left")
    )
    observed = frame.filter(pl.col("actual").is_not_null())
    observed, interval = _cross_fitted_intervals(observed, config.interval_coverage, seed)
    model.interval = interval
    metrics = forecast_metrics(observed, "p50", "p10", "p90")
    expected = forecast_metrics(observed, "expected_units")
    metrics.update(
        wape_expected_units=expected["wape"],
        bias_expected_units=expected["bias"],
        mase_expected_units=expected["mase"],
        expected_units=expected["forecast_units"],
        censored_days_excluded=int(frame.height - observed.height),
    )
    baseline_metrics = {b: forecast_metrics(observed, b) for b in BASELINES}
    # A baseline that scores a store (its champion) needs its own p10/p90 too: the same
    # negative binomial, calibrated on its own backtest errors.
    baseline_intervals = {
        b: calibrate_interval(
            observed[b].to_numpy(), observed["actual"].to_numpy(), config.interval_coverage
        )
        for b in BASELINES
    }
    # The stored predictions use the calibration on all observed backtest days.
    low, median, high = interval.quantiles(frame["expected_units"].to_numpy())
    predictions = frame.with_columns(
        pl.Series("p10", low), pl.Series("p50", median), pl.Series("p90", high)
    ).select(
        *SERIES_KEY,
        "date",
        "horizon",
        "actual",
        "units",
        "censored",
        "p10",
        "p50",
        "p90",
        "expected_units",
        *BASELINES,
        "abc_class",
    )
    result = DemandBacktest(
        cutoff=cutoff,
        as_of=history.as_of,
        horizon_days=config.horizon_days,
        metrics=metrics,
        baseline_metrics=baseline_metrics,
        by_store=_grouped_metrics(observed, "store_id"),
        by_abc=_grouped_metrics(observed, "abc_class"),
        predictions=predictions,
        interval=interval,
        baseline_intervals=baseline_intervals,
    )
    return result, model


@dataclass
class DemandTraining:
    """A final model (trained on everything before as_of) and the backtest behind it."""

    model: DemandModel
    backtest: DemandBacktest

    @property
    def approved(self) -> bool:
        return self.backtest.beats_baselines


def train(
    history: DemandHistory, config: DemandSettings | None = None, seed: int = 0
) -> DemandTraining:
    """Backtest, then refit on all history before as_of with the backtest's interval."""
    config = config or DemandSettings()
    features = build_features(history, config.horizon_days)
    result, _backtest_model = backtest(history, config, seed, _features=features)
    final = fit(history, history.as_of, config, seed, interval=result.interval, _features=features)
    return DemandTraining(model=final, backtest=result)


# --------------------------------------------------------------------------- candidates

LEARNED = "lightgbm"
# Champion and challengers, simplest first (DESIGN §5): a method only displaces a
# simpler one by beating it.
METHODS = ("moving_average_28", "seasonal_naive", LEARNED)


def baseline_forecast(
    history: DemandHistory,
    method: str,
    horizon_days: int,
    interval: IntervalCalibration | None = None,
    cutoff: date | None = None,
) -> pl.DataFrame:
    """The seasonal naive (same weekday, last observed week; else the 28-day mean) or
    the 28-day moving average from `cutoff` (default history.as_of), in predict's
    columns; p10/p50/p90 from `interval` around the baseline's value."""
    if method not in BASELINES:
        raise ValueError(f"unknown demand baseline {method!r}; one of {BASELINES}")
    cutoff = cutoff or history.as_of
    features = build_features(history, horizon_days)
    design = design_rows(features, _forecast_targets(history, cutoff, horizon_days))
    mean = (
        pl.coalesce("same_weekday_last_week", "ma_28", pl.lit(0.0))
        if method == "seasonal_naive"
        else pl.col("ma_28").fill_null(0.0)
    )
    design = design.with_columns(mean.cast(pl.Float64).alias("expected_units"))
    calibration = interval or IntervalCalibration(target_coverage=0.8)
    low, median, high = calibration.quantiles(design["expected_units"].to_numpy())
    return (
        design.with_columns(
            pl.Series("p10", low, pl.Float64),
            pl.Series("p50", median, pl.Float64),
            pl.Series("p90", high, pl.Float64),
        )
        .select(*SERIES_KEY, "date", "horizon", "p10", "p50", "p90", "expected_units")
        .sort(*SERIES_KEY, "date")
    )


@dataclass
class DemandArtifact:
    """What the model store keeps: the LightGBM model (None when it could not be
    trained) and the baselines' calibrated intervals; scores with any method."""

    model: DemandModel | None
    baseline_intervals: dict[str, IntervalCalibration]
    horizon_days: int

    def forecast(self, history: DemandHistory, method: str) -> pl.DataFrame:
        if method == LEARNED:
            if self.model is None:
                raise ValueError("no LightGBM model was trained")
            return predict(self.model, history)
        return baseline_forecast(
            history, method, self.horizon_days, self.baseline_intervals.get(method)
        )


@dataclass
class DemandCandidates:
    """Every candidate's backtest, overall and per store, and the artifact."""

    artifact: DemandArtifact
    overall: dict[str, dict]
    per_store: dict[str, dict[str, dict]]
    unavailable: dict[str, str]
    training: DemandTraining | None  # None when LightGBM could not be trained
    training_sample: str = ""  # the series trained and backtested on


def history_for_store(history: DemandHistory, store_id: str) -> DemandHistory:
    """One store's part of a history (a global model scores store by store)."""
    mine = pl.col("store_id") == store_id
    return DemandHistory(
        daily=history.daily.filter(mine),
        series=history.series.filter(mine),
        as_of=history.as_of,
        skipped_stores={k: v for k, v in history.skipped_stores.items() if k == store_id},
        notes={k: v for k, v in history.notes.items() if k == store_id},
    )


# A store keeps at least this many of its series (or all) in a training sample.
MIN_SERIES_PER_STORE = 50


def history_for_series(history: DemandHistory, keys: pl.DataFrame) -> DemandHistory:
    """The part of a history of the given (store_id, sku) series."""
    return DemandHistory(
        daily=history.daily.join(keys, on=SERIES_KEY, how="semi", maintain_order="left"),
        series=history.series.join(keys, on=SERIES_KEY, how="semi", maintain_order="left"),
        as_of=history.as_of,
        skipped_stores=history.skipped_stores,
        notes=history.notes,
    )


def train_candidates(
    history: DemandHistory, config: DemandSettings | None = None, seed: int = 0
) -> DemandCandidates:
    """LightGBM and both baselines, backtested on the last full horizon. When there is
    too little history for LightGBM (or for any backtest), the baselines still forecast
    (unevaluated) and LightGBM is listed as unavailable with the reason."""
    config = config or DemandSettings()
    keys, total = sample_keys(
        history.series, "sku", config.max_train_series, seed, MIN_SERIES_PER_STORE
    )
    sample = f"all {total:,} series"
    if keys is not None:
        history = history_for_series(history, keys)
        sample = f"a sample of {keys.height:,} of {total:,} series (drawn per store)"
    try:
        training = train(history, config, seed)
    except ValueError as exc:
        reason = f"too little history for a {config.horizon_days}-day backtest ({exc})"
        return DemandCandidates(
            DemandArtifact(None, {}, config.horizon_days),
            {b: {} for b in BASELINES},
            {},
            {LEARNED: reason},
            None,
            sample,
        )
    bt = training.backtest
    overall = {LEARNED: {**bt.metrics, "n": bt.metrics["days"]}}
    overall |= {b: {**m, "n": m["days"]} for b, m in bt.baseline_metrics.items()}
    per_store: dict[str, dict[str, dict]] = {}
    for row in bt.by_store.iter_rows(named=True):
        metrics = {k: v for k, v in row.items() if k not in ("store_id", "method")}
        per_store.setdefault(row["store_id"], {})[row["method"]] = {**metrics, "n": row["days"]}
    artifact = DemandArtifact(training.model, bt.baseline_intervals, config.horizon_days)
    return DemandCandidates(artifact, overall, per_store, {}, training, sample)
