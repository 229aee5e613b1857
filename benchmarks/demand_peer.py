"""Demand benchmark: our model (`models.demand`) next to Nixtla mlforecast.

Both sides start from the same `DemandHistory` (`models.demand.prepare_history`
on the staged orders, order lines, inventory, products and stores, strictly
before as_of = latest order date + 1 day), backtest the same window (train on
days before cutoff = as_of - 28, forecast cutoff .. as_of - 1) and are scored
on the same evaluation rows: every store x SKU with history before the cutoff
x every day of the window, minus the censored stock-out days (`demand` null),
exactly the rows `models.demand.backtest` scores. Loading and
`prepare_history` are shared set-up and are not timed; fit + predict is the
timed part (`work_seconds`, wall; `work_cpu_seconds`, this process's CPU),
repeated `repeats` times, the fastest kept (the machine is shared).

Ours: `models.demand.backtest` (features, fit before the cutoff, predict the
28 days, interval calibration, metrics; the public API, so the time is a
slight over-count of fit + predict). Its training rows are the target days of
the same window, the rows of slow series importance-sampled (`train_rows` of
`target_days`; `DemandSettings.sample_level`). `wape` is the backtest's own WAPE of the
published point forecast (p50, the median of the negative binomial, its
interval calibrated on the other half of the series), `wape_mean` that of the
mean (`expected_units`).

mlforecast: the setup an experienced user writes for a 28-day daily forecast
with one global LightGBM model, mlforecast's default **recursive** strategy:

- target `y` = units sold per day (mlforecast needs a gap-free, null-free
  target; it has no notion of censoring, so stock-out days enter as the sales
  seen, usually 0 — ours treats them as unknown; that is part of what is
  compared);
- lags 1, 7, 14, 21, 28 and 364 (yesterday, the same weekday 1-4 weeks back,
  the same day last year); lag transforms on lag 1: rolling mean 7/28/91 and
  rolling std 28; on lag 7: the 4-week same-weekday mean
  (SeasonalRollingMean(7, 4)); recursive prediction makes every lag valid for
  all 28 steps;
- date features dayofweek, day, month, dayofyear (ours has the same calendar
  plus the market-event calendar of `models.events`, which mlforecast does not
  get: that domain knowledge is ours);
- static features: country, category (pandas categoricals, LightGBM native
  categoricals as in ours) and list price;
- the same LightGBM settings: `LGBMRegressor(**LGBM_PARAMS,
  n_estimators=NUM_BOOST_ROUND, random_state=seed)` (Tweedie, same learning
  rate, leaves, bagging, num_threads=1 — and mlforecast's own feature
  computation on num_threads=1 too), trained on the same window of target
  days as ours (the last `DemandSettings.train_days` days before the cutoff,
  via `preprocess` + `fit_models`; earlier days only feed the lags);
  `dropna=False` so that young SKUs (no lag 364 yet) stay in training —
  LightGBM handles the missing lags.

mlforecast's point forecast is the Tweedie mean, so `wape_mean` is the
like-for-like accuracy comparison; `wape` (ours p50 vs its mean) is the
comparison of what each would publish.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from models import demand

SERIES_KEY = demand.SERIES_KEY
HORIZON = demand.HORIZON_DAYS

MLF_LAGS = [1, 7, 14, 21, 28, 364]
MLF_DATE_FEATURES = ["dayofweek", "day", "month", "dayofyear"]
MLF_STATIC = ["country", "category", "list_price_usd"]


# --------------------------------------------------------------------------- data


def load_history(warehouse: Path, as_of: date | None = None) -> demand.DemandHistory:
    """Staging tables (read-only) -> DemandHistory, read exactly as the demand asset
    reads them; as_of defaults to latest order + 1 day."""
    import duckdb

    from storepulse.inputs import demand as demand_inputs
    from storepulse.warehouse import scalar

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        if as_of is None:
            as_of = scalar(con, "select max(order_date) from staging.orders") + timedelta(days=1)
        return demand_inputs.load_history(con, as_of)
    finally:
        con.close()


def backtest_cutoff(history: demand.DemandHistory, horizon: int = HORIZON) -> date:
    return history.as_of - timedelta(days=horizon)


def evaluation_rows(history: demand.DemandHistory, horizon: int = HORIZON) -> pl.DataFrame:
    """store_id, sku, date, actual: the observed (uncensored) days of the backtest
    window for every series with history before the cutoff."""
    cutoff = backtest_cutoff(history, horizon)
    alive = history.daily.filter(pl.col("date") < cutoff).select(SERIES_KEY).unique()
    return (
        history.daily.filter((pl.col("date") >= cutoff) & pl.col("demand").is_not_null())
        .join(alive, on=SERIES_KEY, how="semi")
        .select(*SERIES_KEY, "date", pl.col("demand").alias("actual"))
        .sort(*SERIES_KEY, "date")
    )


def wape(frame: pl.DataFrame, forecast: str) -> float:
    total = frame["actual"].sum()
    return float((frame["actual"] - frame[forecast]).abs().sum() / total)


def bias(frame: pl.DataFrame, forecast: str) -> float:
    return float((frame[forecast] - frame["actual"]).sum() / frame["actual"].sum())


@dataclass
class PeerResult:
    """One side of the comparison: its timed part and its scored rows."""

    name: str
    fit_predict_seconds: float  # fastest repeat
    fit_predict_cpu_seconds: float
    repeat_seconds: list[float]
    scored: pl.DataFrame  # store_id, sku, date, actual, point, mean (evaluation rows only)
    extra: dict
    booster: object = None  # the trained lightgbm.Booster (tests compare the settings)

    def summary(self) -> dict:
        return {
            # work_seconds: what run.py's time ratio compares (the timed part only).
            "work_seconds": round(self.fit_predict_seconds, 3),
            "work_cpu_seconds": round(self.fit_predict_cpu_seconds, 3),
            "repeat_seconds": self.repeat_seconds,
            "wape": round(wape(self.scored, "point"), 4),
            "wape_mean": round(wape(self.scored, "mean"), 4),
            "bias_mean": round(bias(self.scored, "mean"), 4),
            "eval_rows": self.scored.height,
            "eval_units": float(self.scored["actual"].sum()),
            **self.extra,
        }


def _best(times: list[tuple[float, float]]) -> tuple[float, float, list[float]]:
    """(wall, cpu) of the fastest repeat (the least disturbed by a busy machine), all walls."""
    wall, cpu = min(times)
    return wall, cpu, [round(t, 3) for t, _ in times]


# --------------------------------------------------------------------------- ours


def run_ours(
    history: demand.DemandHistory,
    config: demand.DemandSettings | None = None,
    seed: int = 0,
    repeats: int = 1,
) -> PeerResult:
    config = config or demand.DemandSettings()
    times = []
    for _ in range(repeats):  # deterministic: every repeat gives the same model
        started, cpu = time.perf_counter(), time.process_time()
        result, model = demand.backtest(history, config, seed)
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    eval_rows = evaluation_rows(history, config.horizon_days)
    # backtest's own metrics use the cross-fitted p50; its stored predictions the
    # p50 calibrated on all backtest days. Score both on the shared rows.
    scored = eval_rows.join(
        result.predictions.select(
            *SERIES_KEY,
            "date",
            pl.col("p50").alias("point"),
            pl.col("expected_units").alias("mean"),
        ),
        on=[*SERIES_KEY, "date"],
        how="left",
    )
    if scored["mean"].null_count():
        raise RuntimeError("our backtest has no forecast for some evaluation rows")
    extra = {
        # The backtest's own WAPE: p50 from an interval calibration fitted on the other
        # half of the series (out of sample), on exactly these rows (backtest_days_scored).
        "wape": round(result.metrics["wape"], 4),
        # p50 from the calibration on all backtest days (the stored predictions).
        "wape_p50_full_calibration": round(wape(scored, "point"), 4),
        "wape_backtest_expected_units": round(result.metrics["wape_expected_units"], 4),
        "backtest_days_scored": result.metrics["days"],
        "censored_days_excluded": result.metrics["censored_days_excluded"],
        "train_rows": model.train_rows,
        "target_days": model.target_days,
        "num_threads": config.lgbm_params.get("num_threads"),
        "num_boost_round": config.num_boost_round,
    }
    return PeerResult("ours", *_best(times), scored, extra, model.booster)


# --------------------------------------------------------------------------- mlforecast


def mlforecast_input(history: demand.DemandHistory, cutoff: date):
    """Long pandas frame (unique_id, ds, y + static features) of the days before the cutoff."""
    series = history.series.select(
        *SERIES_KEY,
        pl.col("country").fill_null("??"),
        pl.col("category").fill_null("unknown"),
        "list_price_usd",
    )
    frame = (
        history.daily.filter(pl.col("date") < cutoff)
        .select(*SERIES_KEY, "date", pl.col("units").cast(pl.Float64).alias("y"))
        .join(series, on=SERIES_KEY, how="left")
        .with_columns(
            pl.concat_str(SERIES_KEY, separator="|").alias("unique_id"),
            pl.col("date").cast(pl.Datetime("ns")).alias("ds"),
        )
        .sort("unique_id", "ds")
        .select("unique_id", "ds", "y", *MLF_STATIC)
        .to_pandas()
    )
    for col in ("country", "category"):
        frame[col] = frame[col].astype("category")
    return frame


def mlforecast_model(seed: int = 0, num_boost_round: int = demand.NUM_BOOST_ROUND):
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, RollingStd, SeasonalRollingMean

    params = dict(demand.LGBM_PARAMS)
    return MLForecast(
        models={
            "lgbm": lgb.LGBMRegressor(**params, n_estimators=num_boost_round, random_state=seed)
        },
        freq="D",
        lags=MLF_LAGS,
        lag_transforms={
            1: [RollingMean(7), RollingMean(28), RollingMean(91), RollingStd(28)],
            7: [SeasonalRollingMean(season_length=7, window_size=4)],
        },
        date_features=MLF_DATE_FEATURES,
        num_threads=params.get("num_threads", 1),
    )


def run_mlforecast(
    history: demand.DemandHistory,
    config: demand.DemandSettings | None = None,
    seed: int = 0,
    repeats: int = 1,
) -> PeerResult:
    config = config or demand.DemandSettings()
    cutoff = backtest_cutoff(history, config.horizon_days)
    prep_started = time.perf_counter()
    frame = mlforecast_input(history, cutoff)
    prep_seconds = time.perf_counter() - prep_started

    times = []
    for _ in range(repeats):  # deterministic: every repeat gives the same model
        fcst = mlforecast_model(seed, config.num_boost_round)
        started, cpu = time.perf_counter(), time.process_time()
        train = fcst.preprocess(frame, static_features=MLF_STATIC, dropna=False)
        # The same target days as ours: the last train_days before the cutoff.
        train = train[train["ds"] >= np.datetime64(cutoff - timedelta(days=config.train_days))]
        X = train.drop(columns=["unique_id", "ds", "y"])
        fcst.fit_models(X, train["y"].to_numpy())
        with warnings.catch_warnings():
            # "Found null values in lag364, ...": young SKUs; LightGBM handles missing values.
            warnings.filterwarnings("ignore", message="Found null values", category=UserWarning)
            forecast = fcst.predict(h=config.horizon_days)
        times.append((time.perf_counter() - started, time.process_time() - cpu))

    ids = history.series.select(
        *SERIES_KEY, pl.concat_str(SERIES_KEY, separator="|").alias("unique_id")
    )
    predicted = (
        pl.from_pandas(forecast[["unique_id", "ds", "lgbm"]])
        .select(
            "unique_id",
            pl.col("ds").cast(pl.Date).alias("date"),
            pl.col("lgbm").clip(0.0).alias("mean"),
        )
        .join(ids, on="unique_id", how="left")
        .with_columns(pl.col("mean").alias("point"))
    )
    scored = evaluation_rows(history, config.horizon_days).join(
        predicted, on=[*SERIES_KEY, "date"], how="left"
    )
    if scored["mean"].null_count():
        raise RuntimeError("mlforecast has no forecast for some evaluation rows")
    extra = {
        "prep_seconds": round(prep_seconds, 3),
        "train_rows": len(train),
        "features": list(X.columns),
        "num_threads": fcst.models["lgbm"].get_params().get("num_threads"),
        "num_boost_round": config.num_boost_round,
        "strategy": "recursive",
    }
    return PeerResult("mlforecast", *_best(times), scored, extra, fcst.models_["lgbm"].booster_)
