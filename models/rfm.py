"""RFM scores, the 11-segment map, the 4-tier lifecycle stage and an action per segment.

Pure: a polars frame of orders in, one row per (store_id, customer_id) out. All
thresholds, windows, weights, the segment grid and the action map are fields of
`RfmSettings` (the Dagster asset exposes the same fields as run config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

SEGMENTS = (
    "Champions",
    "Loyal Customers",
    "Potential Loyalists",
    "New Customers",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)
ACTIONS = (
    "welcome offer",
    "VIP early access",
    "win-back gift",
    "reactivation care",
    "reduce spend",
)
LIFECYCLE_STAGES = ("new", "active", "high_value", "churned")

# The common R x FM grid (FM = weighted mean of the F and M scores, rounded).
# (segment, r_min, r_max, fm_min, fm_max); together they tile the 5 x 5 grid once.
DEFAULT_SEGMENT_GRID: tuple[tuple[str, int, int, int, int], ...] = (
    ("Champions", 5, 5, 4, 5),
    ("Loyal Customers", 3, 4, 4, 5),
    ("Potential Loyalists", 4, 5, 2, 3),
    ("New Customers", 5, 5, 1, 1),
    ("Promising", 4, 4, 1, 1),
    ("Need Attention", 3, 3, 3, 3),
    ("About to Sleep", 3, 3, 1, 2),
    ("At Risk", 1, 2, 3, 4),
    ("Can't Lose Them", 1, 2, 5, 5),
    ("Hibernating", 2, 2, 1, 2),
    ("Lost", 1, 1, 1, 2),
)

DEFAULT_SEGMENT_ACTIONS: dict[str, str] = {
    "Champions": "VIP early access",
    "Loyal Customers": "VIP early access",
    "Potential Loyalists": "welcome offer",
    "New Customers": "welcome offer",
    "Promising": "welcome offer",
    "Need Attention": "reactivation care",
    "About to Sleep": "reactivation care",
    "At Risk": "win-back gift",
    "Can't Lose Them": "win-back gift",
    "Hibernating": "reduce spend",
    "Lost": "reduce spend",
}

OUTPUT_SCHEMA = {
    "store_id": pl.String,
    "customer_id": pl.String,
    "recency_days": pl.Int32,
    "frequency": pl.Int32,
    "monetary_usd": pl.Float64,
    "r_score": pl.Int8,
    "f_score": pl.Int8,
    "m_score": pl.Int8,
    "fm_score": pl.Int8,
    "rfm_cell": pl.String,
    "segment": pl.String,
    "lifecycle_stage": pl.String,
    "action": pl.String,
    "first_order_date": pl.Date,
    "last_order_date": pl.Date,
    "spend_last_window_usd": pl.Float64,
}
OUTPUT_COLUMNS = tuple(OUTPUT_SCHEMA)


@dataclass(frozen=True)
class RfmSettings:
    """Every knob of the RFM step (defaults documented on each field).

    lookback_days: window for frequency and monetary; None = the whole history.
    f_weight, m_weight: weights of the F and M scores in FM (the grid's x axis).
    new_within_days: a first order this recent makes a customer 'new'.
    churned_after_days: no order for longer than this makes a customer 'churned'.
    high_value_usd / high_value_window_days: net spend above this within the window
        makes a customer 'high_value' (default > 500 USD in the last 365 days).
    segment_grid: (segment, r_min, r_max, fm_min, fm_max) rules, first match wins.
    segment_actions: recommended action per segment.
    """

    lookback_days: int | None = None
    f_weight: float = 1.0
    m_weight: float = 1.0
    new_within_days: int = 90
    churned_after_days: int = 180
    high_value_usd: float = 500.0
    high_value_window_days: int = 365
    segment_grid: tuple[tuple[str, int, int, int, int], ...] = DEFAULT_SEGMENT_GRID
    segment_actions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEGMENT_ACTIONS))

    def validate(self) -> None:
        if self.f_weight < 0 or self.m_weight < 0 or self.f_weight + self.m_weight <= 0:
            raise ValueError("f_weight and m_weight must be >= 0 and not both 0")
        covered = {
            (r, fm)
            for _, r0, r1, f0, f1 in self.segment_grid
            for r in range(r0, r1 + 1)
            for fm in range(f0, f1 + 1)
        }
        missing = sorted({(r, fm) for r in range(1, 6) for fm in range(1, 6)} - covered)
        if missing:
            raise ValueError(
                f"segment_grid leaves R/FM cells without a segment: {missing}; "
                "add rules so every (r_score, fm_score) from 1 to 5 is covered"
            )
        unmapped = sorted({s for s, *_ in self.segment_grid} - set(self.segment_actions))
        if unmapped:
            raise ValueError(f"segment_actions has no action for segments {unmapped}")


def valid_orders(orders: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Non-cancelled orders strictly before as_of, with net revenue (total - refunds) in USD."""
    frame = orders.lazy()
    if "is_cancelled" in orders.columns:
        frame = frame.filter(~pl.col("is_cancelled").fill_null(False))
    refunded = (
        pl.col("refunded_amount_usd").fill_null(0.0)
        if "refunded_amount_usd" in orders.columns
        else pl.lit(0.0)
    )
    return (
        frame.filter(pl.col("order_date") < as_of)
        .with_columns(net_usd=(pl.col("total_usd").fill_null(0.0) - refunded))
        .collect()
    )


def quintile_score(value: pl.Expr, by: str = "store_id") -> pl.Expr:
    """1..5 by the share of the store's customers with a strictly lower value.

    Ties get the same score (rank 'min'), so two customers with one order each
    never land in different F quintiles.
    """
    rank = value.rank("min").over(by)
    n = pl.len().over(by)
    return (1 + ((rank - 1) * 5 // n)).clip(1, 5).cast(pl.Int8)


def score_rfm(
    orders: pl.DataFrame, as_of: date, settings: RfmSettings | None = None
) -> pl.DataFrame:
    """One row per customer with at least one valid order before as_of.

    orders: staging.orders columns store_id, customer_id, order_date, total_usd
    (refunded_amount_usd and is_cancelled used when present).
    Columns: see OUTPUT_COLUMNS (recency_days >= 1: an order the day before as_of).
    """
    settings = settings or RfmSettings()
    settings.validate()
    valid = valid_orders(orders, as_of)
    if valid.is_empty():
        return empty_rfm()

    in_lookback = (
        pl.col("order_date") >= pl.lit(as_of) - pl.duration(days=settings.lookback_days)
        if settings.lookback_days
        else pl.lit(True)
    )
    in_value_window = pl.col("order_date") >= pl.lit(as_of) - pl.duration(
        days=settings.high_value_window_days
    )
    per_customer = valid.group_by("store_id", "customer_id").agg(
        first_order_date=pl.col("order_date").min(),
        last_order_date=pl.col("order_date").max(),
        frequency=pl.col("order_id").filter(in_lookback).n_unique()
        if "order_id" in valid.columns
        else in_lookback.sum(),
        monetary_usd=pl.col("net_usd").filter(in_lookback).sum(),
        spend_last_window_usd=pl.col("net_usd").filter(in_value_window).sum(),
    )
    total_weight = settings.f_weight + settings.m_weight
    scored = per_customer.with_columns(
        recency_days=(pl.lit(as_of) - pl.col("last_order_date")).dt.total_days().cast(pl.Int32),
        frequency=pl.col("frequency").cast(pl.Int32),
        monetary_usd=pl.col("monetary_usd").round(2),
        spend_last_window_usd=pl.col("spend_last_window_usd").round(2),
    ).with_columns(
        # Higher is better for every score, so recency is ranked on its negative.
        r_score=quintile_score(-pl.col("recency_days")),
        f_score=quintile_score(pl.col("frequency")),
        m_score=quintile_score(pl.col("monetary_usd")),
    )
    scored = scored.with_columns(
        fm_score=(
            (
                settings.f_weight * pl.col("f_score").cast(pl.Float64)
                + settings.m_weight * pl.col("m_score").cast(pl.Float64)
            )
            / total_weight
            + 0.5
        )
        .floor()
        .clip(1, 5)
        .cast(pl.Int8)
    )
    scored = scored.with_columns(
        rfm_cell=pl.format("{}{}{}", "r_score", "f_score", "m_score"),
        segment=_segment_expr(settings.segment_grid),
    ).with_columns(
        lifecycle_stage=_lifecycle_expr(settings, as_of),
        action=pl.col("segment").replace_strict(
            settings.segment_actions, default=None, return_dtype=pl.String
        ),
    )
    return scored.select(OUTPUT_COLUMNS).sort("store_id", "customer_id")


def _segment_expr(grid) -> pl.Expr:
    r, fm = pl.col("r_score"), pl.col("fm_score")
    expr = None
    for segment, r0, r1, f0, f1 in grid:
        condition = r.is_between(r0, r1) & fm.is_between(f0, f1)
        expr = (pl.when(condition) if expr is None else expr.when(condition)).then(pl.lit(segment))
    return expr.otherwise(None).alias("segment")


def _lifecycle_expr(settings: RfmSettings, as_of: date) -> pl.Expr:
    """churned > high_value > new > active (first match wins)."""
    tenure_days = (pl.lit(as_of) - pl.col("first_order_date")).dt.total_days()
    return (
        pl.when(pl.col("recency_days") > settings.churned_after_days)
        .then(pl.lit("churned"))
        .when(pl.col("spend_last_window_usd") > settings.high_value_usd)
        .then(pl.lit("high_value"))
        .when(tenure_days <= settings.new_within_days)
        .then(pl.lit("new"))
        .otherwise(pl.lit("active"))
    )


def empty_rfm() -> pl.DataFrame:
    return pl.DataFrame(schema=OUTPUT_SCHEMA)


def segment_summary(rfm: pl.DataFrame) -> pl.DataFrame:
    """Customers, value and mean recency per store x segment (for metadata and reports)."""
    return (
        rfm.group_by("store_id", "segment", "action")
        .agg(
            customers=pl.len(),
            monetary_usd=pl.col("monetary_usd").sum().round(2),
            mean_recency_days=pl.col("recency_days").mean().round(1),
        )
        .sort("store_id", "customers", descending=[False, True])
    )
