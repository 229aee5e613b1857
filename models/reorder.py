"""The reorder plan: what to order now, per store x SKU, from the demand forecast.

Inputs: the forecast (store_id, sku, date, p10, p50, p90, expected_units; p50
stands in for the mean when expected_units is missing), inventory snapshots,
daily units sold and the ABC classes (all from `models.demand`).

Per store x SKU:
- `on_hand`: the latest snapshot before as_of, summed over warehouses;
  `lead_time_days` from that snapshot (the on-hand-weighted mean over warehouses,
  rounded up; `default_lead_time_days` when missing).
- `days_of_cover`: days until the expected cumulative demand uses up the
  stock, interpolated within the day, extrapolated past the horizon at the
  horizon's mean rate; null when no demand is expected. `stockout_date` is
  as_of + the whole days of cover (empty beyond `max_stockout_days`).
- Safety stock from the forecast quantiles: each day's spread is
  sigma = (p90 - p10) / (2 x 1.2816) (the p10-p90 span of a normal; at least
  the Poisson sqrt(expected units), as whole-unit quantiles of slow movers are
  often 0..0), days are
  summed in variance over lead time + order cycle, times z of the service level
  of the SKU's ABC class (A 98 %, B 95 %, C 90 % by default).
- A (s, S) policy: `reorder_point` = demand over the lead time + its safety
  stock; when on hand is at or below it, `reorder_qty` = demand over lead time +
  order cycle + `safety_stock` - on hand (whole units); otherwise 0. SKUs
  expected to sell less than `min_cycle_demand_units` over lead time + cycle
  are not reordered (dead or dying SKUs at zero stock).
- Stock age, FIFO: goods leave in the order they arrived, so what is on hand now
  is the most recent receipts. Receipts are estimated from consecutive snapshots:
  received = max(0, on_hand_now - on_hand_before + units sold in between).
  On-hand units beyond what was received in the last `aged_days` days are
  older than that (`aged_units`, `aged_stock_flag`). When snapshots do not reach
  back `aged_days` days, the age is unknown and the flag stays False.
- `overstock_flag`: stock on hand with no expected demand, or more than
  `overstock_cover_days` of cover.
Sorted most urgent first: SKUs to reorder now, by how far the stock-out falls
inside the lead time (cover minus lead time), A before B before C, then revenue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.stats import norm

SERIES_KEY = ["store_id", "sku"]
P10_P90_HALF_WIDTH_Z = float(norm.ppf(0.9))  # 1.2816
# forecast_totals: per store x SKU over the forecast's days.
TOTALS_SCHEMA = {
    "store_id": pl.String, "sku": pl.String, "expected": pl.Float64, "low": pl.Float64,
    "high": pl.Float64, "days": pl.Int64,
}  # fmt: skip

PLAN_COLUMNS = [
    "store_id",
    "sku",
    "on_hand",
    "days_of_cover",
    "stockout_date",
    "reorder_qty",
    "abc_class",
    "aged_stock_flag",
    "overstock_flag",
    "lead_time_days",
    "safety_stock",
    "reorder_point",
    "forecast_units_horizon",
    "aged_units",
    "revenue_usd",
    "snapshot_date",
]


@dataclass(frozen=True)
class ReorderSettings:
    service_level_by_class: dict = field(default_factory=lambda: {"A": 0.98, "B": 0.95, "C": 0.90})
    order_cycle_days: int = 28  # days of demand one order should cover beyond the lead time
    default_lead_time_days: int = 14
    aged_days: int = 180
    overstock_cover_days: int = 180
    max_stockout_days: int = 365  # beyond this the stock-out date is left empty
    min_cycle_demand_units: float = 1.0  # no reorder below this demand over lead time + cycle


def latest_stock(inventory: pl.DataFrame, as_of: date, default_lead_time_days: int) -> pl.DataFrame:
    """Latest snapshot before as_of per store x SKU: on_hand (all warehouses), lead time."""
    snaps = inventory.filter(pl.col("snapshot_date") < as_of)
    latest = snaps.group_by(SERIES_KEY).agg(pl.col("snapshot_date").max())
    rows = snaps.join(latest, on=[*SERIES_KEY, "snapshot_date"])
    weight = pl.col("on_hand").clip(0.0)
    lead = pl.col("lead_time_days").cast(pl.Float64)
    return rows.group_by(SERIES_KEY).agg(
        pl.col("snapshot_date").first(),
        pl.col("on_hand").sum(),
        pl.when(weight.sum() > 0)
        .then((lead * weight).sum() / weight.filter(lead.is_not_null()).sum())
        .otherwise(lead.mean())
        .ceil()
        .fill_nan(None)
        .fill_null(default_lead_time_days)
        .cast(pl.Int32)
        .alias("lead_time_days"),
    )


def stock_age(
    inventory: pl.DataFrame, daily_units: pl.DataFrame, as_of: date, aged_days: int = 180
) -> pl.DataFrame:
    """FIFO estimate of stock older than `aged_days` (see the module docstring).

    daily_units: store_id, sku, date, units (every sale, censored days included).
    Returns store_id, sku, received_recent, age_known, aged_units.
    """
    totals = (
        inventory.filter(pl.col("snapshot_date") < as_of)
        .group_by(SERIES_KEY + ["snapshot_date"])
        .agg(pl.col("on_hand").sum())
        .sort(*SERIES_KEY, "snapshot_date")
    )
    cumulative = daily_units.sort(*SERIES_KEY, "date").select(
        *SERIES_KEY,
        pl.col("date").alias("snapshot_date"),
        pl.col("units").cum_sum().over(SERIES_KEY).alias("_sold_to_date"),
    )
    totals = (
        totals.join_asof(
            cumulative,
            on="snapshot_date",
            by=SERIES_KEY,
            strategy="backward",
            check_sortedness=False,  # both sorted by series then date above
        )
        .with_columns(pl.col("_sold_to_date").fill_null(0.0))
        .with_columns(
            (
                pl.col("on_hand")
                - pl.col("on_hand").shift(1).over(SERIES_KEY)
                + pl.col("_sold_to_date")
                - pl.col("_sold_to_date").shift(1).over(SERIES_KEY)
            )
            .clip(0.0)
            .alias("received")
        )
    )
    window_start = as_of - timedelta(days=aged_days)
    return (
        totals.group_by(SERIES_KEY)
        .agg(
            pl.col("on_hand").last().alias("_on_hand"),
            pl.col("received")
            .filter(pl.col("snapshot_date") > window_start)
            .sum()
            .alias("received_recent"),
            (pl.col("snapshot_date").min() <= window_start).alias("age_known"),
        )
        .with_columns(
            pl.when(pl.col("age_known"))
            .then((pl.col("_on_hand") - pl.col("received_recent")).clip(0.0))
            .otherwise(0.0)
            .alias("aged_units")
        )
        .drop("_on_hand")
    )


def daily_sigma(p10: np.ndarray, p90: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Each day's spread of demand: the p10-p90 span of a normal, at least Poisson's
    sqrt(expected units) (whole-unit quantiles of a slow mover are often 0..0, and a
    day's count is never less variable than Poisson)."""
    spread = (np.asarray(p90, dtype=float) - np.asarray(p10, dtype=float)) / (
        2 * P10_P90_HALF_WIDTH_Z
    )
    return np.maximum(np.clip(spread, 0.0, None), np.sqrt(expected))


def forecast_totals(forecast: pl.DataFrame) -> pl.DataFrame:
    """Per store x SKU, the forecast summed over its days: `expected` units (daily
    expected units add up; daily medians and quantiles do not) and an 80 % band
    `low`..`high` = expected -/+ 1.2816 x the days' spreads added in variance (as the
    safety stock adds them), `days` covered. expected_units falls back to p50."""
    mean_column = "expected_units" if "expected_units" in forecast.columns else "p50"
    expected = np.clip(forecast[mean_column].fill_null(0.0).to_numpy().astype(float), 0.0, None)
    sigma = daily_sigma(
        forecast["p10"].fill_null(0.0).to_numpy(),
        forecast["p90"].fill_null(0.0).to_numpy(),
        expected,
    )
    half = P10_P90_HALF_WIDTH_Z * pl.col("_variance").sqrt()
    return (
        forecast.select(*SERIES_KEY, "date")
        .with_columns(pl.Series("_expected", expected), pl.Series("_variance", sigma**2))
        .group_by(SERIES_KEY, maintain_order=True)
        .agg(
            pl.col("_expected").sum().alias("expected"),
            pl.col("_variance").sum(),
            pl.col("date").n_unique().cast(pl.Int64).alias("days"),
        )
        .select(
            *SERIES_KEY,
            "expected",
            (pl.col("expected") - half).clip(0.0).alias("low"),
            (pl.col("expected") + half).alias("high"),
            "days",
        )
        .cast(TOTALS_SCHEMA)
    )


def _cover_and_demand(
    forecast: pl.DataFrame, stock: pl.DataFrame, z_by_series: pl.DataFrame, config: ReorderSettings
) -> pl.DataFrame:
    """Per series: days of cover, demand and safety stock over lead time (+ order cycle)."""
    rows = []
    mean_column = "expected_units" if "expected_units" in forecast.columns else "p50"
    fc = (
        forecast.sort(*SERIES_KEY, "date")
        .join(stock.select(*SERIES_KEY, "on_hand", "lead_time_days"), on=SERIES_KEY, how="inner")
        .join(z_by_series, on=SERIES_KEY, how="left")
    )
    for (store, sku), g in fc.group_by(SERIES_KEY, maintain_order=True):
        # Daily expected units add up over a lead time; daily medians do not.
        expected = np.clip(g[mean_column].to_numpy().astype(float), 0.0, None)
        sigma = daily_sigma(g["p10"].to_numpy(), g["p90"].to_numpy(), expected)
        on_hand = float(g["on_hand"][0])
        lead = int(g["lead_time_days"][0])
        z = float(g["z"][0])
        cycle = lead + config.order_cycle_days
        rows.append(
            {
                "store_id": store,
                "sku": sku,
                "days_of_cover": _days_of_cover(expected, on_hand),
                "forecast_units_horizon": float(expected.sum()),
                "reorder_point": _sum_over(expected, lead)
                + z * math.sqrt(_sum_over(sigma**2, lead)),
                "safety_stock": z * math.sqrt(_sum_over(sigma**2, cycle)),
                "_demand_lead_cycle": _sum_over(expected, cycle),
            }
        )
    schema = {
        "store_id": pl.String,
        "sku": pl.String,
        "days_of_cover": pl.Float64,
        "forecast_units_horizon": pl.Float64,
        "reorder_point": pl.Float64,
        "safety_stock": pl.Float64,
        "_demand_lead_cycle": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _sum_over(daily: np.ndarray, days: int) -> float:
    """Sum of the first `days` values; past the horizon, the horizon's mean per day."""
    if len(daily) == 0 or days <= 0:
        return 0.0
    inside = float(daily[:days].sum())
    extra = max(0, days - len(daily))
    return inside + extra * float(daily.mean())


def _days_of_cover(expected: np.ndarray, on_hand: float) -> float | None:
    if on_hand <= 0:
        return 0.0
    cumulative = np.cumsum(expected)
    if len(expected) and cumulative[-1] >= on_hand:
        day = int(np.searchsorted(cumulative, on_hand))  # first day the stock runs out
        before = cumulative[day - 1] if day else 0.0
        return float(day + (on_hand - before) / expected[day])
    rate = float(expected.mean()) if len(expected) else 0.0
    if rate <= 0:
        return None
    return float(len(expected) + (on_hand - cumulative[-1]) / rate)


def reorder_plan(
    forecast: pl.DataFrame,
    inventory: pl.DataFrame,
    daily_units: pl.DataFrame,
    abc: pl.DataFrame,
    as_of: date,
    config: ReorderSettings | None = None,
) -> pl.DataFrame:
    """The plan (PLAN_COLUMNS), most urgent reorders first.

    Covers SKUs with an inventory snapshot in stores that have a forecast.
    """
    config = config or ReorderSettings()
    stock = latest_stock(inventory, as_of, config.default_lead_time_days)
    # A store without a forecast (no order lines) has no demand to plan against; inside
    # a forecast store, a SKU without a forecast row simply has no sales history.
    stock = stock.filter(pl.col("store_id").is_in(forecast["store_id"].unique().implode()))
    if stock.is_empty():
        return empty_plan()
    ages = stock_age(inventory, daily_units, as_of, config.aged_days)
    classes = (
        stock.select(SERIES_KEY)
        .join(abc, on=SERIES_KEY, how="left")
        .with_columns(pl.col("abc_class").fill_null("C"), pl.col("revenue_usd").fill_null(0.0))
    )
    z = classes.select(
        *SERIES_KEY,
        pl.col("abc_class")
        .replace_strict(
            {k: float(norm.ppf(v)) for k, v in config.service_level_by_class.items()},
            default=float(norm.ppf(0.95)),
            return_dtype=pl.Float64,
        )
        .alias("z"),
    )
    cover = _cover_and_demand(forecast, stock, z, config)
    plan = (
        stock.join(classes, on=SERIES_KEY, how="left")
        .join(ages.select(*SERIES_KEY, "aged_units"), on=SERIES_KEY, how="left")
        .join(cover, on=SERIES_KEY, how="left")
        .with_columns(
            pl.col("aged_units").fill_null(0.0),
            # No forecast row = no sales history: no expected demand.
            pl.col("forecast_units_horizon").fill_null(0.0),
            pl.col("reorder_point").fill_null(0.0),
            pl.col("safety_stock").fill_null(0.0),
            pl.col("_demand_lead_cycle").fill_null(0.0),
            pl.when(pl.col("on_hand") <= 0)
            .then(0.0)
            .otherwise(pl.col("days_of_cover"))
            .alias("days_of_cover"),
        )
    )
    # Below the reorder point, and enough expected demand over lead time + cycle to be
    # worth a unit: a dead SKU sitting at zero stock is not a reorder.
    needs_order = (pl.col("on_hand") <= pl.col("reorder_point")) & (
        pl.col("_demand_lead_cycle") >= config.min_cycle_demand_units
    )
    plan = plan.with_columns(
        pl.when(needs_order)
        .then(
            (pl.col("_demand_lead_cycle") + pl.col("safety_stock") - pl.col("on_hand").clip(0.0))
            .clip(0.0)
            .ceil()
        )
        .otherwise(0.0)
        .alias("reorder_qty"),
        (pl.lit(as_of) + pl.duration(days=pl.col("days_of_cover").floor().cast(pl.Int64))).alias(
            "stockout_date"
        ),
        (pl.col("aged_units") >= 1).alias("aged_stock_flag"),
        (
            (pl.col("on_hand") > 0)
            & (
                pl.col("days_of_cover").is_null()
                | (pl.col("days_of_cover") > config.overstock_cover_days)
            )
        ).alias("overstock_flag"),
    )
    return sort_plan(plan)


def sort_plan(plan: pl.DataFrame) -> pl.DataFrame:
    """Most urgent first: reorders before the rest, then the least slack (days of cover
    beyond the lead time), A before B before C, more revenue first; store and SKU make
    the order total, so plans made store by store and sorted together are the same."""
    slack = (pl.col("days_of_cover") - pl.col("lead_time_days")).fill_null(float("inf"))
    return (
        plan.with_columns(slack.alias("_slack"))
        .sort(
            [
                pl.col("reorder_qty") > 0,
                "_slack",
                "abc_class",
                "revenue_usd",
                "store_id",
                "sku",
            ],
            descending=[True, False, False, True, False, False],
        )
        .select(PLAN_COLUMNS)
    )


def empty_plan() -> pl.DataFrame:
    """A plan with no rows and the plan's columns and types."""
    return pl.DataFrame(schema=_plan_schema())


def _plan_schema() -> dict:
    return {
        "store_id": pl.String,
        "sku": pl.String,
        "on_hand": pl.Float64,
        "days_of_cover": pl.Float64,
        "stockout_date": pl.Date,
        "reorder_qty": pl.Float64,
        "abc_class": pl.String,
        "aged_stock_flag": pl.Boolean,
        "overstock_flag": pl.Boolean,
        "lead_time_days": pl.Int32,
        "safety_stock": pl.Float64,
        "reorder_point": pl.Float64,
        "forecast_units_horizon": pl.Float64,
        "aged_units": pl.Float64,
        "revenue_usd": pl.Float64,
        "snapshot_date": pl.Date,
    }
