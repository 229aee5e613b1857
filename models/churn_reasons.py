"""Churn reasons a marketer reads: LightGBM feature contributions summed per reason,
the three that raise the risk most, worded with the customer's own numbers."""

from __future__ import annotations

import numpy as np
import polars as pl

from models.churn_features import FEATURES

# Feature -> the reason a marketer reads. Contributions are summed per reason, so
# the three reasons shown are three different things, not one idea three times.
REASON_OF_FEATURE = {
    "recency_days": "recency",
    "recency_over_store_gap": "recency",
    "bgnbd_p_alive": "pattern",
    "bgnbd_p_no_order": "pattern",
    "bgnbd_expected_orders": "pattern",
    "mbgnbd_p_alive": "pattern",
    "mbgnbd_p_no_order": "pattern",
    "prior_p_alive": "pattern",
    "prior_p_no_order": "pattern",
    "store_season_index": "store",
    "mean_gap_days": "cycle",
    "gap_spread_days": "cycle",
    "days_past_usual_cycle": "cycle",
    "recency_over_usual_cycle": "cycle",
    "frequency": "frequency",
    "orders_last_365_days": "frequency",
    "orders_last_90_days": "trend",
    "orders_prior_90_days": "trend",
    "order_trend_90_days": "trend",
    "spend_trend_90_days": "trend",
    "monetary_usd": "value",
    "aov_usd": "value",
    "last_order_usd": "value",
    "spend_last_365_days": "value",
    "tenure_days": "tenure",
    "discount_share": "discount",
    "refund_share": "refunds",
    "cod_share": "cod",
    "first_order_usd": "value",
    "first_order_discount_share": "discount",
    "first_order_refund_share": "refunds",
    "first_order_cod": "cod",
    "accepts_email_marketing": "consent",
    "accepts_sms_marketing": "consent",
    "ad_personalization_consent": "consent",
    "store_repeat_rate": "store",
    "store_sessions_trend": "store",
    "first_channel": "channel",
    "market": "market",
}
REASONS = tuple(dict.fromkeys(REASON_OF_FEATURE.values()))


def _int(name: str) -> pl.Expr:
    return pl.col(name).round(0).cast(pl.Int64).cast(pl.String)


def _orders(name: str) -> pl.Expr:
    """'1 order', '3 orders'."""
    return _int(name) + pl.when(pl.col(name).round(0) == 1).then(pl.lit(" order")).otherwise(
        pl.lit(" orders")
    )


def _pct(name: str) -> pl.Expr:
    return (pl.col(name) * 100).round(0).cast(pl.Int64).cast(pl.String) + pl.lit("%")


def _pct_complement(name: str) -> pl.Expr:
    return ((1 - pl.col(name)) * 100).round(0).cast(pl.Int64).cast(pl.String) + pl.lit("%")


def reason_texts(horizon_days: int) -> dict[str, pl.Expr]:
    """One sentence per reason, filled with the customer's own numbers."""
    single_order = pl.col("mean_gap_days").is_null()
    return {
        "recency": pl.format("No order for {} days", _int("recency_days")),
        "pattern": pl.format(
            "Their buying pattern gives only a {} chance of ordering in the next {} days",
            _pct_complement("prior_p_no_order"),
            pl.lit(str(horizon_days)),
        ),
        "cycle": pl.when(single_order)
        .then(pl.lit("Has not set a buying rhythm yet (one purchase so far)"))
        .when(pl.col("days_past_usual_cycle") > 0)
        .then(
            pl.format(
                "{} days past their usual {}-day reorder cycle",
                _int("days_past_usual_cycle"),
                _int("mean_gap_days"),
            )
        )
        .otherwise(pl.format("Reorders slowly, about every {} days", _int("mean_gap_days"))),
        "frequency": pl.when(pl.col("frequency") <= 1)
        .then(pl.lit("Only one order so far"))
        .otherwise(pl.format("Only {} orders so far", _int("frequency"))),
        "trend": pl.when(
            (pl.col("orders_last_90_days") == 0) & (pl.col("orders_prior_90_days") == 0)
        )
        .then(pl.lit("No orders in the last 6 months"))
        .when(pl.col("orders_last_90_days") < pl.col("orders_prior_90_days"))
        .then(
            pl.format(
                "Buying less: {} in the last 90 days vs {} in the 90 days before",
                _orders("orders_last_90_days"),
                _int("orders_prior_90_days"),
            )
        )
        # Not fewer than before, yet the trend still raised the risk: say what it is.
        .otherwise(pl.format("Only {} in the last 90 days", _orders("orders_last_90_days"))),
        "value": pl.format("Has spent {} USD in total", _int("monetary_usd")),
        "tenure": pl.when(pl.col("tenure_days") <= 90)
        .then(pl.format("New customer: first order {} days ago", _int("tenure_days")))
        .otherwise(pl.format("First order was {} days ago", _int("tenure_days"))),
        "discount": pl.format("Buys on discount ({} of order value)", _pct("discount_share")),
        "refunds": pl.format("Returned or refunded {} of their spend", _pct("refund_share")),
        "cod": pl.when(pl.col("cod_share") > 0)
        .then(pl.lit("Pays cash on delivery"))
        .otherwise(pl.lit("Payment method (not cash on delivery)")),
        "consent": pl.when(pl.col("accepts_email_marketing") == 0)
        .then(pl.lit("Not subscribed to email marketing"))
        .otherwise(pl.lit("Email marketing consent")),
        "store": pl.when(pl.col("store_sessions_trend") < 1)
        .then(
            pl.format(
                "Store traffic is down {} on the month before",
                _pct_complement("store_sessions_trend"),
            )
        )
        .otherwise(pl.lit("Few of this store's customers buy again")),
        "channel": pl.format(
            "Came in through {}", pl.col("first_channel").fill_null("an unknown channel")
        ),
        "market": pl.format("Ships to {}", pl.col("market").fill_null("an unknown market")),
    }


def top_reasons(
    features: pl.DataFrame, contributions: np.ndarray, horizon_days: int, k: int = 3
) -> pl.Series:
    """The k reasons that push this customer's churn risk up most, '; '-joined.

    Contributions (LightGBM pred_contrib, log-odds) are summed per reason first;
    only reasons that raise the risk are listed.
    """
    n_rows = features.height
    reason_index = {reason: i for i, reason in enumerate(REASONS)}
    by_reason = np.zeros((len(REASONS), n_rows))  # one contiguous row per reason
    for j, name in enumerate(FEATURES):
        by_reason[reason_index[REASON_OF_FEATURE[name]]] += contributions[:, j]
    # The k largest per row, largest first, ties to the earlier reason (as a stable
    # descending sort); -1 = no reason that raises the risk at this rank.
    ranks = np.full((k, n_rows), -1, dtype=np.int64)
    remaining = by_reason.copy()
    rows = np.arange(n_rows)
    for i in range(min(k, len(REASONS))):
        best = np.argmax(remaining, axis=0)
        value = remaining[best, rows]
        ranks[i] = np.where(value > 0, best, -1)
        remaining[best, rows] = -np.inf
    texts = reason_texts(horizon_days)
    # Each reason's sentence only for the rows that show it, placed at its rank.
    ranked = [pl.Series(f"_rank{i}", [None] * n_rows, dtype=pl.String) for i in range(k)]
    for reason, r in reason_index.items():
        slots, hits = np.nonzero(ranks == r)
        if hits.size == 0:
            continue
        expr = texts[reason]
        sentences = (
            features.select(list(dict.fromkeys(expr.meta.root_names())))[hits]
            .select(expr.alias("_text"))
            .to_series()
        )
        for i in range(k):
            at = slots == i
            if at.any():
                ranked[i] = ranked[i].scatter(hits[at], sentences.filter(pl.Series(at)))
    joined = pl.select(
        pl.concat_str(ranked, separator="; ", ignore_nulls=True).alias("top_reasons")
    ).with_columns(
        top_reasons=pl.when(pl.col("top_reasons") == "")
        .then(pl.lit("No strong churn signal"))
        .otherwise(pl.col("top_reasons"))
    )
    return joined["top_reasons"]
