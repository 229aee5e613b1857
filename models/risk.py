"""Churn risk a marketer can act on: a score and band relative to the store's
customers who are still worth saving.

The calibrated churn probability stays what it is (P(no order within the horizon)).
With a 90-day horizon and a majority of one-time buyers that probability is high
for nearly everyone, so a band cut on it ("high" = P > 0.8) would hold most of a
store. Instead:

- plausibly active customers are those who ordered within `active_window_days`
  (default 365) before as_of, or whose P(alive) is at least `min_p_alive` when a
  P(alive) column is given and the threshold is set;
- `risk_score` (0-100) is the customer's percentile of churn probability among the
  plausibly active customers of the same store (100 = the most at risk);
- `risk_band`: "high" when risk_score > `high_risk_above` (80: the top ~20 % at
  risk), "medium" when > `medium_risk_above` (50), else "low"; customers who are
  no longer plausibly active get band "lapsed" and no risk score (they are
  win-back material, not the at-risk list).

So "risk score > 80" still means "top of the at-risk list", now of each store.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

RISK_BANDS = ("high", "medium", "low", "lapsed")


@dataclass(frozen=True)
class RiskSettings:
    """active_window_days: ordered within this many days = plausibly active (365).
    min_p_alive: also plausibly active when P(alive) >= this (None = recency only).
    high_risk_above / medium_risk_above: risk_score thresholds of the bands (80 / 50)."""

    active_window_days: int = 365
    min_p_alive: float | None = None
    high_risk_above: float = 80.0
    medium_risk_above: float = 50.0


def plausibly_active(
    recency_days: pl.Expr, p_alive: pl.Expr | None, settings: RiskSettings
) -> pl.Expr:
    """True for customers still worth saving (see the module docstring)."""
    active = recency_days < settings.active_window_days
    if p_alive is not None and settings.min_p_alive is not None:
        active = active | (p_alive.fill_null(0.0) >= settings.min_p_alive)
    return active.fill_null(False)


def risk_score(probability: pl.Expr, active: pl.Expr, store: str = "store_id") -> pl.Expr:
    """0-100 percentile of `probability` among the active customers of each store
    (ties share their average rank); null for customers who are not active."""
    masked = pl.when(active).then(probability)
    rank = masked.rank("average").over(store)
    count = masked.count().over(store)
    return pl.when(active).then((100.0 * rank / count).ceil().clip(0, 100).cast(pl.Int16))


def risk_band(score: pl.Expr, active: pl.Expr, settings: RiskSettings) -> pl.Expr:
    """'high' / 'medium' / 'low' by risk_score, 'lapsed' for customers not active."""
    return (
        pl.when(~active)
        .then(pl.lit("lapsed"))
        .when(score > settings.high_risk_above)
        .then(pl.lit("high"))
        .when(score > settings.medium_risk_above)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("low"))
    )


def assign_risk(
    frame: pl.DataFrame,
    settings: RiskSettings | None = None,
    *,
    probability: str = "churn_probability",
    recency: str = "recency_days",
    p_alive: str | None = None,
) -> pl.DataFrame:
    """`frame` (store_id, the probability and recency columns, optionally P(alive))
    with risk_score and risk_band added."""
    settings = settings or RiskSettings()
    active = plausibly_active(
        pl.col(recency), pl.col(p_alive) if p_alive and p_alive in frame.columns else None, settings
    )
    return (
        frame.with_columns(_active=active)
        .with_columns(risk_score=risk_score(pl.col(probability), pl.col("_active")))
        .with_columns(risk_band=risk_band(pl.col("risk_score"), pl.col("_active"), settings))
        .drop("_active")
    )


def value_at_risk(predicted_revenue_365d: pl.Expr, churn_probability: pl.Expr) -> pl.Expr:
    """Value at risk (USD) = predicted 365-day revenue (CLV model) x churn probability."""
    return (predicted_revenue_365d.clip(0.0) * churn_probability).round(2)


def band_shares(scores: pl.DataFrame) -> pl.DataFrame:
    """Per store: plausibly active customers and the share of them in each band."""
    active = scores.filter(pl.col("risk_band") != "lapsed")
    return (
        active.group_by("store_id")
        .agg(
            active_customers=pl.len(),
            high_share=(pl.col("risk_band") == "high").mean(),
            medium_share=(pl.col("risk_band") == "medium").mean(),
            low_share=(pl.col("risk_band") == "low").mean(),
        )
        .join(scores.group_by("store_id").agg(customers=pl.len()), on="store_id", how="right")
        .sort("store_id")
    )
