"""Demand's features: history statistics at the forecast origin, lookups at lags
valid for the horizon, and target-day calendar and SKU attributes, built by index
arithmetic on the gap-free daily grid (models/demand.py explains the strategy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from models.demand_history import SERIES_KEY, DemandHistory
from models.events import EVENTS, event_distance_features

ORIGIN_FEATURES = [
    "ma_7",
    "ma_28",
    "ma_91",
    "ma_182",
    "std_28",
    "zero_share_28",
    "censored_share_28",
    "days_since_sale",
    "refund_rate_91",
    "price_28",
    "price_ratio_28_182",
    "discount_share_28",
    "store_ma_28",
    "sku_share_of_store",
    "age_days_at_origin",
]
LOOKUP_FEATURES = [
    "same_weekday_last_week",
    "same_weekday_two_weeks",
    "weekday_mean_4w",
    "weekday_mean_8w",
    "same_day_last_year",
    "ma_28_around_last_year",
    "ma_28_origin_last_year",
]
TARGET_FEATURES = [
    "horizon",
    "weekday",
    "day_of_month",
    "month",
    "day_of_year",
    "public_holiday",
    *[f"event_{e}" for e in EVENTS],
    "country_code",
    "category_code",
    "list_price_usd",
    "margin_share",
    "age_days_at_target",
]
FEATURES = ORIGIN_FEATURES + LOOKUP_FEATURES + TARGET_FEATURES
# Each categorical feature codes a column of the series: a value's index in the sorted
# values seen in training (an unseen value is null).
CODED_COLUMN = {"country_code": "country", "category_code": "category"}
CATEGORICAL = list(CODED_COLUMN)


def _history_features(history: DemandHistory) -> pl.DataFrame:
    """Per store x SKU x day: statistics known at the end of that day (the origin)."""
    # An integer series id (the frame is sorted by series): windows partition on it,
    # much faster than on the two string keys.
    d = history.daily.sort(*SERIES_KEY, "date").with_columns(
        pl.struct(SERIES_KEY).rle_id().alias("_sid")
    )
    y = pl.col("demand").fill_null(0.0)
    observed = pl.col("demand").is_not_null().cast(pl.Float64)

    def rsum(expr: pl.Expr, window: int) -> pl.Expr:
        return expr.rolling_sum(window, min_samples=1).over("_sid")

    def observed_mean(window: int) -> pl.Expr:
        return rsum(y, window) / rsum(observed, window)

    store_level = (
        d.group_by("store_id", "date")
        .agg(y.sum().alias("store_units"))
        .sort("store_id", "date")
        .with_columns(
            pl.col("store_units")
            .rolling_mean(28, min_samples=1)
            .over("store_id")
            .alias("store_ma_28")
        )
        .select("store_id", "date", "store_ma_28")
    )
    d = d.with_columns(
        observed_mean(7).alias("ma_7"),
        observed_mean(28).alias("ma_28"),
        observed_mean(91).alias("ma_91"),
        observed_mean(182).alias("ma_182"),
        (rsum(y * y, 28) / rsum(observed, 28)).alias("_sq_28"),
        (
            rsum((pl.col("demand") == 0).cast(pl.Float64).fill_null(0.0), 28) / rsum(observed, 28)
        ).alias("zero_share_28"),
        (1 - rsum(observed, 28) / rsum(pl.lit(1.0), 28)).alias("censored_share_28"),
        pl.when(pl.col("units") > 0)
        .then(pl.col("date"))
        .forward_fill()
        .over("_sid")
        .alias("_last_sale"),
        (rsum(pl.col("refunded_units"), 91) / rsum(pl.col("units"), 91)).alias("refund_rate_91"),
        (rsum(pl.col("gross_usd"), 28) / rsum(pl.col("units"), 28)).alias("_price_28"),
        (rsum(pl.col("gross_usd"), 182) / rsum(pl.col("units"), 182)).alias("_price_182"),
        (rsum(pl.col("discount_usd"), 28) / rsum(pl.col("gross_usd"), 28)).alias(
            "discount_share_28"
        ),
        pl.col("date").dt.weekday().alias("_weekday"),
    )
    # Same-weekday profile: consecutive rows of one (series, weekday) are 7 days apart.
    by_weekday = ["_sid", "_weekday"]
    d = d.with_columns(
        (
            y.rolling_sum(4, min_samples=1).over(by_weekday)
            / observed.rolling_sum(4, min_samples=1).over(by_weekday)
        ).alias("weekday_mean_4w"),
        (
            y.rolling_sum(8, min_samples=1).over(by_weekday)
            / observed.rolling_sum(8, min_samples=1).over(by_weekday)
        ).alias("weekday_mean_8w"),
    )
    d = d.join(store_level, on=["store_id", "date"], how="left").join(
        history.series.select(*SERIES_KEY, "lifecycle_start"), on=SERIES_KEY, how="left"
    )
    nan_to_null = [
        "ma_7",
        "ma_28",
        "ma_91",
        "ma_182",
        "zero_share_28",
        "refund_rate_91",
        "discount_share_28",
        "weekday_mean_4w",
        "weekday_mean_8w",
    ]
    return d.with_columns(
        *[pl.col(c).fill_nan(None) for c in nan_to_null],
        (pl.col("_sq_28").fill_nan(None) - pl.col("ma_28") ** 2).clip(0.0).sqrt().alias("std_28"),
        (pl.col("date") - pl.col("_last_sale")).dt.total_days().alias("days_since_sale"),
        pl.col("_price_28").fill_nan(None).forward_fill().over("_sid").alias("price_28"),
        pl.col("_price_182").fill_nan(None).forward_fill().over("_sid").alias("_price_182f"),
        (pl.col("ma_28") / pl.col("store_ma_28")).fill_nan(None).alias("sku_share_of_store"),
        (pl.col("date") - pl.col("lifecycle_start")).dt.total_days().alias("age_days_at_origin"),
    ).with_columns(
        (pl.col("price_28") / pl.col("_price_182f")).fill_nan(None).alias("price_ratio_28_182")
    )


@dataclass
class Features:
    """History features computed once per history, reused by backtest and final fit."""

    # One row per store x SKU x day, sorted by series and date, gap-free within a
    # series: the origin features and the demand / level lookups.
    history: pl.DataFrame
    events: pl.DataFrame  # date, country, event_*, public_holiday
    # Per series: its attributes, and where its days start in `history` (_offset,
    # _first = its first date, _days = how many).
    series: pl.DataFrame
    categories: dict[str, list[str]]


LOOKUP_COLUMNS = ["demand", "ma_7", "ma_28", "weekday_mean_4w", "weekday_mean_8w"]


def build_features(history: DemandHistory, horizon_days: int, categories=None) -> Features:
    feats = _history_features(history)
    hist = feats.select(*SERIES_KEY, "date", *dict.fromkeys([*ORIGIN_FEATURES, *LOOKUP_COLUMNS]))
    spans = (
        hist.with_row_index("_row")
        .group_by(SERIES_KEY, maintain_order=True)
        .agg(
            pl.col("_row").first().cast(pl.Int64).alias("_offset"),
            pl.col("date").first().alias("_first"),
            pl.len().cast(pl.Int64).alias("_days"),
            pl.col("date").last().alias("_last"),
        )
    )
    gaps = spans.filter((pl.col("_last") - pl.col("_first")).dt.total_days() + 1 != pl.col("_days"))
    if gaps.height:  # _daily_grid makes every series gap-free; lookups below rely on it
        raise ValueError(f"daily history has gaps, e.g. {gaps.row(0)[:2]}")
    start = history.daily["date"].min() if history.daily.height else history.as_of
    end = history.as_of + timedelta(days=horizon_days + 7)
    events = event_distance_features(start, end, history.series["country"].unique().to_list())
    events = events.with_columns(
        # One signed distance per event: days to the next occurrence when that is the
        # nearer, minus days since the last one otherwise (run-up > 0, hangover < 0).
        pl.when(pl.col(f"days_to_{e}") <= pl.col(f"days_since_{e}"))
        .then(pl.col(f"days_to_{e}"))
        .otherwise(-pl.col(f"days_since_{e}"))
        .alias(f"event_{e}")
        for e in EVENTS
    ).select("date", "country", *[f"event_{e}" for e in EVENTS], "public_holiday")
    if categories is None:
        categories = {
            code: sorted(history.series[column].drop_nulls().unique().to_list())
            for code, column in CODED_COLUMN.items()
        }
    series = history.series.with_columns(
        pl.col(column)
        .replace_strict(
            categories[code],
            list(range(len(categories[code]))),
            default=None,
            return_dtype=pl.Int32,
        )
        .alias(code)
        for code, column in CODED_COLUMN.items()
    ).select(
        *SERIES_KEY,
        "country",
        "country_code",
        "category_code",
        "list_price_usd",
        "margin_share",
        "lifecycle_start",
    )
    series = series.join(spans.drop("_last"), on=SERIES_KEY, how="left")
    # Lookups go by row index (_gather), so the cache keeps only the values, in the
    # precision the design matrix has anyway (float32): half the memory (issue #18).
    values = hist.select(
        pl.col(c).cast(pl.Float32) if hist.schema[c] == pl.Float64 else pl.col(c).cast(pl.Int32)
        for c in dict.fromkeys([*ORIGIN_FEATURES, *LOOKUP_COLUMNS])
    )
    return Features(values, events, series, categories)


def _gather(features: Features, rows: pl.DataFrame, day: pl.Expr, columns: dict[str, str]):
    """Values of `features.history` columns (source -> name) on `day` of each row's series
    (null before its first day or after its last): an index lookup, no join."""
    offset = (day - pl.col("_first")).dt.total_days()
    index = rows.select(
        pl.when((offset >= 0) & (offset < pl.col("_days"))).then(pl.col("_offset") + offset)
    ).to_series()
    source = features.history.select(pl.col(s).alias(t) for s, t in columns.items())
    return rows.hstack(source.select(pl.all().gather(index)))


def with_origin(features: Features, targets: pl.DataFrame) -> pl.DataFrame:
    """targets (store_id, sku, date, horizon) + series attributes + the history
    features at the origin (date - horizon)."""
    rows = targets.join(features.series, on=SERIES_KEY, how="left").with_columns(
        (pl.col("date") - pl.duration(days=pl.col("horizon"))).alias("origin")
    )
    return _gather(features, rows, pl.col("origin"), {f: f for f in ORIGIN_FEATURES})


def design_rows(features: Features, targets: pl.DataFrame) -> pl.DataFrame:
    """targets (store_id, sku, date, horizon) -> one feature row each (+ the lookups)."""
    return complete_design(features, with_origin(features, targets))


def complete_design(features: Features, rows: pl.DataFrame) -> pl.DataFrame:
    """with_origin rows -> the lookups, events and calendar added."""
    # Same weekday in the last week fully observed at the origin.
    same_weekday = pl.col("date") - pl.duration(days=7 * ((pl.col("horizon") + 6) // 7))
    rows = _gather(
        features,
        rows,
        same_weekday,
        {
            "demand": "same_weekday_last_week",
            "weekday_mean_4w": "weekday_mean_4w",
            "weekday_mean_8w": "weekday_mean_8w",
        },
    )
    rows = _gather(
        features, rows, same_weekday - pl.duration(days=7), {"demand": "same_weekday_two_weeks"}
    )
    rows = _gather(
        features, rows, pl.col("date") - pl.duration(days=364), {"demand": "same_day_last_year"}
    )
    # ma_28 ending 350 days back is centred on the same date last year (valid for H <= 350).
    rows = _gather(
        features, rows, pl.col("date") - pl.duration(days=350), {"ma_28": "ma_28_around_last_year"}
    )
    rows = _gather(
        features,
        rows,
        pl.col("origin") - pl.duration(days=364),
        {"ma_28": "ma_28_origin_last_year"},
    )
    return rows.join(features.events, on=["date", "country"], how="left").with_columns(
        pl.col("date").dt.weekday().alias("weekday"),
        pl.col("date").dt.day().alias("day_of_month"),
        pl.col("date").dt.month().alias("month"),
        pl.col("date").dt.ordinal_day().alias("day_of_year"),
        pl.col("public_holiday").cast(pl.Int8),
        (pl.col("date") - pl.col("lifecycle_start")).dt.total_days().alias("age_days_at_target"),
    )


LEVEL_FLOOR = 0.02  # units/day: keeps the ratio finite for series that have not sold lately


def level_at_origin(design: pl.DataFrame) -> np.ndarray:
    """A series' daily level at the origin: the mean of its 28-, 91- and 182-day
    observed means (recent, but steady for slow movers); the longer ones stand in
    when a window has no observed day."""
    level = design.select(
        pl.coalesce(
            (pl.col("ma_28") + pl.col("ma_91") + pl.col("ma_182")) / 3,
            pl.col("ma_91"),
            pl.col("ma_182"),
        )
        .fill_null(0.0)
        .clip(LEVEL_FLOOR)
    )
    return level.to_series().to_numpy().astype(np.float64)


def design_matrix(design: pl.DataFrame, names: list[str]) -> np.ndarray:
    return design.select(pl.col(names).cast(pl.Float32)).to_numpy()


def sample_rows(
    rows: pl.DataFrame, level: np.ndarray, sample_level: float, seed: int
) -> tuple[pl.DataFrame, np.ndarray]:
    """Importance-sample the rows of slow series: keep a row with probability
    min(1, level / sample_level) and weight it by the inverse, so the weighted
    loss stays an unbiased estimate of the full one. The rows dropped carry little
    of it (the loss is weighted by the level: half the rows of a typical catalogue
    hold less than a tenth of the units) and cost as much training time as any."""
    if sample_level <= 0 or rows.height == 0:
        return rows, np.ones(rows.height)
    keep_prob = np.minimum(1.0, level / (sample_level * level.mean()))
    rng = np.random.default_rng([seed, 1])
    keep = rng.random(rows.height) < keep_prob
    return rows.filter(pl.Series(keep)), 1.0 / keep_prob[keep]
