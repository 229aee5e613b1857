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
the full one (`_sample_rows`; `sample_level=0` keeps every row). On the
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
series and measured on the other).

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

from models.events import EVENTS, event_distance_features

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

SERIES_KEY = ["store_id", "sku"]
BASELINES = ("seasonal_naive", "moving_average_28")

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
CATEGORICAL = ["country_code", "category_code"]


class StaleModelError(ValueError):
    """A saved model needs features this code no longer builds: it must be retrained."""


@dataclass(frozen=True)
class DemandSettings:
    """Settings of one training run (defaults documented in the README)."""

    horizon_days: int = HORIZON_DAYS
    train_days: int = 365  # most recent target days used for training
    num_boost_round: int = NUM_BOOST_ROUND
    interval_coverage: float = 0.8  # target share of actual days inside [p10, p90]
    # Learn demand relative to the series' recent level (see _level), so growth and
    # decline carry into the forecast instead of being averaged away by the trees.
    relative_target: bool = True
    # Training rows whose series level at the origin is below sample_level x the mean
    # level of all training rows are importance-sampled (see _sample_rows); 0 keeps all.
    sample_level: float = 1.5
    features: tuple[str, ...] | None = None  # None: FEATURES
    lgbm_params: dict = field(default_factory=lambda: dict(LGBM_PARAMS))


# --------------------------------------------------------------------------- history


@dataclass
class DemandHistory:
    """Everything the model reads, one row per store x SKU x day before `as_of`."""

    daily: pl.DataFrame  # store_id, sku, date, units, demand, censored, on_hand, ...
    series: (
        pl.DataFrame
    )  # store_id, sku, country, category, list_price_usd, margin_share, launched_at, first_date
    as_of: date
    skipped_stores: dict[str, str]  # store_id -> why it has no forecast
    notes: dict[str, str]  # store_id -> caveat (e.g. no inventory: no censoring)


def prepare_history(
    orders: pl.DataFrame,
    order_lines: pl.DataFrame,
    inventory: pl.DataFrame,
    products: pl.DataFrame,
    stores: pl.DataFrame,
    as_of: date,
) -> DemandHistory:
    """Staging frames (docs/architecture.md columns) -> DemandHistory (data < as_of).

    Stores without order lines are skipped with a reason; stores without
    inventory snapshots are forecast uncensored and noted.
    """
    orders = orders.filter(pl.col("order_date") < as_of)
    inventory = inventory.filter(pl.col("snapshot_date") < as_of)
    known_stores = sorted(
        set(stores["store_id"].to_list() if "store_id" in stores.columns else [])
        | set(orders["store_id"].to_list())
    )
    sales = _daily_sales(orders, order_lines)
    stock = (
        inventory.group_by("store_id", "sku", pl.col("snapshot_date").alias("date"))
        .agg(pl.col("on_hand").sum())
        .sort("store_id", "sku", "date")
    )
    stores_with_sales = set(sales["store_id"].unique().to_list())
    stores_with_stock = set(stock["store_id"].unique().to_list())
    skipped = {
        s: "no order lines before as_of: demand needs order_lines for this store "
        "(add an order_lines / Shopify line-item export to its landing folder)"
        for s in known_stores
        if s not in stores_with_sales
    }
    notes = {
        s: "no inventory snapshots: stock-outs cannot be detected, so demand is not "
        "censored and the reorder plan skips this store"
        for s in sorted(stores_with_sales - stores_with_stock)
    }
    sales = sales.filter(pl.col("store_id").is_in(list(stores_with_sales)))
    stock = stock.filter(pl.col("store_id").is_in(list(stores_with_sales)))
    daily = _daily_grid(sales, stock, as_of)
    series = _series_attributes(daily, products, stores)
    return DemandHistory(
        daily=daily, series=series, as_of=as_of, skipped_stores=skipped, notes=notes
    )


def _daily_sales(orders: pl.DataFrame, order_lines: pl.DataFrame) -> pl.DataFrame:
    kept = orders.filter(~pl.col("is_cancelled").fill_null(False)).select(
        "store_id",
        "order_id",
        pl.col("order_date").alias("date"),
        # Share of the order refunded; the units stay in demand, refunds are their own signal.
        pl.when(pl.col("financial_status").str.to_lowercase() == "refunded")
        .then(1.0)
        .when(pl.col("subtotal") > 0)
        .then((pl.col("refunded_amount").fill_null(0) / pl.col("subtotal")).clip(0.0, 1.0))
        .otherwise(0.0)
        .alias("refund_share"),
    )
    lines = order_lines.filter((pl.col("quantity") > 0) & pl.col("sku").is_not_null()).join(
        kept, on=["store_id", "order_id"], how="inner"
    )
    gross = pl.col("quantity") * pl.col("unit_price_usd").fill_null(0)
    return (
        lines.group_by("store_id", "sku", "date")
        .agg(
            pl.col("quantity").sum().alias("units"),
            (pl.col("quantity") * pl.col("refund_share")).sum().alias("refunded_units"),
            gross.sum().alias("gross_usd"),
            pl.col("line_discount_usd").fill_null(0).sum().alias("discount_usd"),
        )
        .with_columns((pl.col("gross_usd") - pl.col("discount_usd")).alias("revenue_usd"))
    )


def _daily_grid(sales: pl.DataFrame, stock: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Every day of every series from its first sale or snapshot to as_of - 1."""
    last_day = as_of - timedelta(days=1)
    spans = (
        pl.concat([sales.select(*SERIES_KEY, "date"), stock.select(*SERIES_KEY, "date")])
        .group_by(SERIES_KEY)
        .agg(pl.col("date").min().alias("first_date"))
    )
    grid = (
        spans.with_columns(
            pl.date_ranges(pl.col("first_date"), pl.lit(last_day), interval="1d").alias("date")
        )
        .explode("date")
        .drop_nulls("date")
    )
    grid = grid.join(sales, on=[*SERIES_KEY, "date"], how="left").join(
        stock, on=[*SERIES_KEY, "date"], how="left"
    )
    zero_fill = ["units", "refunded_units", "gross_usd", "discount_usd", "revenue_usd"]
    grid = grid.sort(*SERIES_KEY, "date").with_columns(
        *[pl.col(c).fill_null(0.0) for c in zero_fill],
        # Snapshots may skip days; the last one stands until the next.
        pl.col("on_hand").forward_fill().over(SERIES_KEY),
    )
    return grid.with_columns(
        (pl.col("on_hand").is_not_null() & (pl.col("on_hand") <= 0)).alias("censored")
    ).with_columns(
        pl.when(pl.col("censored")).then(None).otherwise(pl.col("units")).alias("demand")
    )


def _series_attributes(
    daily: pl.DataFrame, products: pl.DataFrame, stores: pl.DataFrame
) -> pl.DataFrame:
    series = daily.group_by(SERIES_KEY).agg(pl.col("first_date").first()).sort(SERIES_KEY)
    if products.height:
        attrs = products.select(
            "store_id",
            "sku",
            pl.col("category").cast(pl.String),
            pl.col("price_usd").cast(pl.Float64).alias("list_price_usd"),
            pl.when(pl.col("price_usd") > 0)
            .then(1 - pl.col("unit_cost_usd") / pl.col("price_usd"))
            .alias("margin_share"),
            pl.col("launched_at").cast(pl.Date),
        ).unique(SERIES_KEY, keep="last")
        series = series.join(attrs, on=SERIES_KEY, how="left")
    else:
        series = series.with_columns(
            pl.lit(None, pl.String).alias("category"),
            pl.lit(None, pl.Float64).alias("list_price_usd"),
            pl.lit(None, pl.Float64).alias("margin_share"),
            pl.lit(None, pl.Date).alias("launched_at"),
        )
    countries = (
        stores.select("store_id", pl.col("country").cast(pl.String)).unique("store_id")
        if stores.height and "country" in stores.columns
        else pl.DataFrame(schema={"store_id": pl.String, "country": pl.String})
    )
    return series.join(countries, on="store_id", how="left").with_columns(
        pl.col("country").fill_null("??"),
        # Lifecycle starts at launch when known, else at the first sale or snapshot.
        pl.min_horizontal("launched_at", "first_date").alias("lifecycle_start"),
    )


# --------------------------------------------------------------------------- features


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
class _Features:
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


def _build_features(history: DemandHistory, horizon_days: int, categories=None) -> _Features:
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
            "country_code": sorted(history.series["country"].drop_nulls().unique().to_list()),
            "category_code": sorted(history.series["category"].drop_nulls().unique().to_list()),
        }
    series = history.series.with_columns(
        pl.col("country")
        .replace_strict(
            categories["country_code"],
            list(range(len(categories["country_code"]))),
            default=None,
            return_dtype=pl.Int32,
        )
        .alias("country_code"),
        pl.col("category")
        .replace_strict(
            categories["category_code"],
            list(range(len(categories["category_code"]))),
            default=None,
            return_dtype=pl.Int32,
        )
        .alias("category_code"),
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
    return _Features(hist, events, series, categories)


def _gather(features: _Features, rows: pl.DataFrame, day: pl.Expr, columns: dict[str, str]):
    """Values of `features.history` columns (source -> name) on `day` of each row's series
    (null before its first day or after its last): an index lookup, no join."""
    offset = (day - pl.col("_first")).dt.total_days()
    index = rows.select(
        pl.when((offset >= 0) & (offset < pl.col("_days"))).then(pl.col("_offset") + offset)
    ).to_series()
    source = features.history.select(pl.col(s).alias(t) for s, t in columns.items())
    return rows.hstack(source.select(pl.all().gather(index)))


def _with_origin(features: _Features, targets: pl.DataFrame) -> pl.DataFrame:
    """targets (store_id, sku, date, horizon) + series attributes + the history
    features at the origin (date - horizon)."""
    rows = targets.join(features.series, on=SERIES_KEY, how="left").with_columns(
        (pl.col("date") - pl.duration(days=pl.col("horizon"))).alias("origin")
    )
    return _gather(features, rows, pl.col("origin"), {f: f for f in ORIGIN_FEATURES})


def _design(features: _Features, targets: pl.DataFrame) -> pl.DataFrame:
    """targets (store_id, sku, date, horizon) -> one feature row each (+ the lookups)."""
    return _complete_design(features, _with_origin(features, targets))


def _complete_design(features: _Features, rows: pl.DataFrame) -> pl.DataFrame:
    """_with_origin rows -> the lookups, events and calendar added."""
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


def _level(design: pl.DataFrame) -> np.ndarray:
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


def _matrix(design: pl.DataFrame, names: list[str]) -> np.ndarray:
    return design.select(pl.col(names).cast(pl.Float32)).to_numpy()


def _sample_rows(
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
    _features: _Features | None = None,
) -> DemandModel:
    """Train on target days strictly before `cutoff` (default: history.as_of)."""
    config = config or DemandSettings()
    cutoff = cutoff or history.as_of
    features = _features or _build_features(history, config.horizon_days)
    targets = _training_targets(history, cutoff, config, seed)
    if targets.height == 0:
        raise ValueError(
            f"no observed store x SKU days before {cutoff}: demand needs order lines "
            "(and some days in stock) before the cutoff"
        )
    rows = _with_origin(features, targets)
    level = _level(rows)
    rows, weight = _sample_rows(rows, level, config.sample_level, seed)
    design = _complete_design(features, rows)
    params = {**config.lgbm_params, "seed": seed}
    label = design["demand"].to_numpy().astype(np.float64)
    if config.relative_target:
        level = _level(design)
        # Weighting by the level keeps the loss in units: big sellers count more.
        label, weight = label / level, weight * level
    names = list(config.features or FEATURES)
    dataset = lgb.Dataset(
        _matrix(design, names),
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
    _features: _Features | None = None,
    _keep_design: bool = False,
) -> pl.DataFrame:
    """Forecast cutoff .. cutoff + H - 1 (default cutoff: history.as_of) for every series.

    Returns store_id, sku, date, horizon, p10, p50, p90 (quantiles of the day's
    units) and expected_units (the mean: sum it over days, e.g. for a lead time).
    Uses history strictly before the cutoff only.
    """
    cutoff = cutoff or history.as_of
    horizon = model.config.horizon_days
    features = _features or _build_features(history, horizon, model.categories)
    targets = _forecast_targets(history, cutoff, horizon)
    design = _design(features, targets)
    missing = [f for f in model.features if f not in design.columns]
    if missing:
        raise StaleModelError(
            f"demand model trained on features this code no longer builds ({missing[:3]}...): "
            "retrain it (materialize demand_model)"
        )
    mean = model.booster.predict(
        _matrix(design, model.features), num_threads=model.config.lgbm_params.get("num_threads", 1)
    )
    if model.config.relative_target:
        mean = mean * _level(design)
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
    pieces = []
    for part in (0, 1):
        calib = frame.filter(pl.col("_half") != part)
        evaluate = frame.filter(pl.col("_half") == part)
        cal = calibrate_interval(
            calib["expected_units"].to_numpy(), calib["actual"].to_numpy(), target
        )
        low, median, high = cal.quantiles(evaluate["expected_units"].to_numpy())
        pieces.append(
            evaluate.with_columns(
                pl.Series("p10", low), pl.Series("p50", median), pl.Series("p90", high)
            )
        )
    full = calibrate_interval(
        frame["expected_units"].to_numpy(), frame["actual"].to_numpy(), target
    )
    return pl.concat(pieces).drop("_half").sort(*SERIES_KEY, "date"), full


def backtest(
    history: DemandHistory,
    config: DemandSettings | None = None,
    seed: int = 0,
    _features: _Features | None = None,
) -> tuple[DemandBacktest, DemandModel]:
    """Train before as_of - H, forecast the last full horizon, score against baselines.

    Returns the backtest and the model trained for it (its interval calibrated).
    """
    config = config or DemandSettings()
    features = _features or _build_features(history, config.horizon_days)
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
    features = _build_features(history, config.horizon_days)
    result, _backtest_model = backtest(history, config, seed, _features=features)
    final = fit(history, history.as_of, config, seed, interval=result.interval, _features=features)
    return DemandTraining(model=final, backtest=result)
