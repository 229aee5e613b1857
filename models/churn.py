"""Churn: P(no order within `horizon_days` after a cutoff), LightGBM + calibration.

Pure: polars frames in (staging.orders, optionally staging.customers and
staging.sessions), polars frames / dataclasses out; no Dagster, no I/O.

Time discipline (nothing at or after `as_of` is ever read):
- cutoffs are `as_of - horizon - k * step`; a cutoff's label needs orders in
  [cutoff, cutoff + horizon), so the newest labelled cutoff is `as_of - horizon`;
- the validation cutoff (early stopping and calibration) is the newest labelled
  one; training cutoffs end at least `horizon` days before it, so no training
  label overlaps the validation window;
- the backtest repeats the recipe one horizon earlier and evaluates on the
  newest labelled cutoff, next to the recency rule and BG/NBD baselines.

Features use whatever exists; orders alone are enough. Among them are BG/NBD
and MBG/NBD summaries fitted per store at each cutoff, and by default the trees
start from the BG/NBD log-odds (LightGBM init_score) and learn corrections to it.
top_reasons sum LightGBM's feature contributions (pred_contrib) per reason a
marketer reads and word the three that raise the risk most.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models import bgnbd

MODEL_NAME = "churn"

NUMERIC_FEATURES = (
    "recency_days",
    "frequency",
    "monetary_usd",
    "aov_usd",
    "last_order_usd",
    "tenure_days",
    "mean_gap_days",
    "gap_spread_days",
    "days_past_usual_cycle",
    "recency_over_usual_cycle",
    "recency_over_store_gap",
    "orders_last_90_days",
    "orders_prior_90_days",
    "order_trend_90_days",
    "spend_trend_90_days",
    "orders_last_365_days",
    "spend_last_365_days",
    "discount_share",
    "refund_share",
    "cod_share",
    "first_order_usd",
    "first_order_discount_share",
    "first_order_refund_share",
    "first_order_cod",
    "accepts_email_marketing",
    "accepts_sms_marketing",
    "ad_personalization_consent",
    "store_repeat_rate",
    "store_sessions_trend",
    "bgnbd_p_alive",
    "bgnbd_p_no_order",
    "bgnbd_expected_orders",
    "mbgnbd_p_alive",
    "mbgnbd_p_no_order",
    "store_season_index",
)
CATEGORICAL_FEATURES = ("first_channel", "market")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES

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

# Cash on delivery in the spellings stores export ("COD", "Cash on Delivery (COD)",
# "cash_on_delivery", "contra entrega", "bayar di tempat"); "Cash App" is not COD.
COD_PATTERN = (
    r"(?i)(^|[^a-z])cod([^a-z]|$)|cash[ _-]*on[ _-]*delivery|contra[ _-]*entrega"
    r"|bayar[ _-]*di[ _-]*tempat|pago[ _-]*contra"
)


@dataclass(frozen=True)
class ChurnSettings:
    """Every knob of the churn model (defaults documented on each field).

    horizon_days: churn = no order within this many days after the cutoff (90).
    cutoff_step_days: spacing of stacked training cutoffs (30).
    n_train_cutoffs: how many training cutoffs to stack (12: a year of monthly
        cutoffs, so every season is in the training set once).
    min_customers_per_cutoff: cutoffs with fewer labelled customers are skipped (50).
    high_risk_above / medium_risk_above: risk_score bands (high > 80, medium > 50).
    value_window_days: value at risk = P(churn) x net spend in this many days (365).
    calibration: 'sigmoid' (Platt, keeps the ranking) or 'isotonic'.
    LightGBM: learning_rate, num_leaves, max_depth, min_data_in_leaf,
    lambda_l2, max_rounds, early_stopping_rounds, num_threads (fixed for determinism).
    min_category_count: rarer channel/market values are grouped as 'other'.
    boost_from_bgnbd: start boosting from the BG/NBD log-odds (init_score), so the
        trees learn corrections to it; with little data the model stays close to it.
    validation_gap_days: training cutoffs end this many days before the validation
        cutoff; None = horizon_days (no training label overlaps the validation window).
    """

    horizon_days: int = 90
    cutoff_step_days: int = 30
    n_train_cutoffs: int = 12
    min_customers_per_cutoff: int = 50
    high_risk_above: float = 80.0
    medium_risk_above: float = 50.0
    value_window_days: int = 365
    calibration: str = "sigmoid"
    learning_rate: float = 0.05
    num_leaves: int = 15
    max_depth: int = 5
    min_data_in_leaf: int = 50
    lambda_l2: float = 1.0
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    num_threads: int = 1
    min_category_count: int = 20
    boost_from_bgnbd: bool = True
    validation_gap_days: int | None = None


# --------------------------------------------------------------------------- features


def prepare_orders(orders: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Valid (non-cancelled) orders strictly before as_of with the columns features need.

    Only store_id, order_id, customer_id, order_date and total_usd are required;
    every other staging column is used when present.
    """
    optional = {
        "is_cancelled": pl.Boolean,
        "refunded_amount_usd": pl.Float64,
        "discount_usd": pl.Float64,
        "subtotal_usd": pl.Float64,
        "payment_method": pl.String,
        "channel": pl.String,
        "ship_country": pl.String,
        "created_at": pl.Datetime,
    }
    frame = orders.with_columns(
        [
            pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in optional.items()
            if name not in orders.columns
        ]
    )
    return (
        frame.lazy()
        .filter((pl.col("order_date") < as_of) & ~pl.col("is_cancelled").fill_null(False))
        .select(
            "store_id",
            "customer_id",
            "order_id",
            pl.col("order_date").cast(pl.Date),
            pl.coalesce("created_at", pl.col("order_date").cast(pl.Datetime)).alias("created_at"),
            total_usd=pl.col("total_usd").fill_null(0.0),
            net_usd=pl.col("total_usd").fill_null(0.0)
            - pl.col("refunded_amount_usd").fill_null(0.0),
            refunded_usd=pl.col("refunded_amount_usd").fill_null(0.0),
            discount_usd=pl.col("discount_usd"),
            subtotal_usd=pl.col("subtotal_usd"),
            is_cod=pl.col("payment_method").str.contains(COD_PATTERN).fill_null(False),
            channel=pl.col("channel"),
            ship_country=pl.col("ship_country"),
        )
        .collect()
    )


def _customer_extras(customers: pl.DataFrame | None) -> pl.DataFrame | None:
    if customers is None or customers.is_empty():
        return None
    wanted = {
        "accepts_email_marketing": pl.Float64,
        "accepts_sms_marketing": pl.Float64,
        "ad_personalization_consent": pl.Float64,
    }
    cols = [pl.col(c).cast(pl.Float64) for c in wanted if c in customers.columns]
    country = (
        [pl.col("country").alias("customer_country")] if "country" in customers.columns else []
    )
    return customers.select("store_id", "customer_id", *cols, *country).unique(
        ["store_id", "customer_id"], keep="first", maintain_order=True
    )


def build_features(
    orders: pl.DataFrame,
    cutoff: date,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    horizon_days: int = 90,
    value_window_days: int = 365,
) -> pl.DataFrame:
    """One row per customer with a valid order before `cutoff`: FEATURES plus
    helper columns (last_order_date, spend_value_window_usd).

    `orders` must come from prepare_orders (already filtered to before as_of);
    rows on or after `cutoff` are ignored here. Many cutoffs at once:
    build_feature_sets (the same numbers, one pass).
    """
    return build_feature_sets(
        orders,
        [cutoff],
        customers=customers,
        sessions=sessions,
        horizon_days=horizon_days,
        value_window_days=value_window_days,
    )[cutoff]


CONSENT_COLUMNS = (
    "accepts_email_marketing",
    "accepts_sms_marketing",
    "ad_personalization_consent",
)


class OrderHistory:
    """prepare_orders output indexed once, for features at any number of cutoffs.

    Orders are sorted by customer and day and carry per-customer running sums, so a
    customer's orders before a cutoff are a prefix of their rows: every feature at
    every cutoff is read off the prefix ends (found by binary search), in one
    vectorised pass instead of a group-by per cutoff. First / last order (by
    created_at, order_id) come from running minima / maxima of the creation rank,
    so they stay exact even where created_at and order_date disagree.
    """

    # Running sums (per customer, in day order); the first is the money the windows use.
    _SUMS = (
        "net_usd",
        "total_usd",
        "refunded_usd",
        "discount_usd",
        "subtotal_usd",
        "discount_known",
        "is_cod",
        "new_day",
        "gap",
        "gap_squared",
    )

    def __init__(self, orders: pl.DataFrame):
        self.orders = orders
        # Creation order first: its position is the creation rank of each order.
        by_creation = orders.sort(
            "store_id", "customer_id", "created_at", "order_id", maintain_order=True
        )
        self.n = n = by_creation.height
        first_row = pl.int_range(pl.len()) == 0
        cid = (
            by_creation.select(
                (
                    first_row
                    | pl.col("store_id").ne_missing(pl.col("store_id").shift())
                    | pl.col("customer_id").ne_missing(pl.col("customer_id").shift())
                )
                .cast(pl.Int64)
                .cum_sum()
                - 1
            )
            .to_series()
            .to_numpy()
        )
        day = by_creation["order_date"].cast(pl.Int32).to_numpy().astype(np.int64)
        self.first_day = int(day.min()) if n else 0
        self.width = int(day.max()) - self.first_day + 2 if n else 1
        keys = cid * self.width + (day - self.first_day)
        # Day order within a customer (ties keep the creation order): rank -> position.
        rank = np.argsort(keys, kind="stable")
        self.position_of_rank = np.empty(n, dtype=np.int64)
        self.position_of_rank[rank] = np.arange(n)
        frame = by_creation[rank]
        self._keys, cid, day = keys[rank], cid[rank], day[rank]
        self.starts = np.flatnonzero(np.diff(cid, prepend=-1))
        self.customers = frame.select("store_id", "customer_id")[self.starts]
        store_change = self.customers.select(
            pl.col("store_id").ne_missing(pl.col("store_id").shift()).fill_null(True)
        ).to_series()
        self.store_code = store_change.cast(pl.Int64).cum_sum().to_numpy() - 1
        self.cid = cid
        self.day = day
        starts_mask = np.zeros(n, dtype=bool)
        starts_mask[self.starts] = True
        new_day = starts_mask.copy()
        new_day[1:] |= day[1:] != day[:-1]
        gap = np.where(new_day & ~starts_mask, day - np.roll(day, 1), 0).astype(np.float64)
        columns = frame.select(
            "net_usd",
            "total_usd",
            "refunded_usd",
            pl.col("discount_usd").fill_null(0.0),
            pl.col("subtotal_usd").fill_null(0.0),
            pl.col("discount_usd").is_not_null().alias("discount_known"),
            "is_cod",
        ).cast(pl.Float64)
        values = np.column_stack(
            [*(columns[name].to_numpy() for name in columns.columns), new_day, gap, gap * gap]
        ).astype(np.float64)
        self.values = {name: values[:, j].copy() for j, name in enumerate(self._SUMS[:7])}
        market_rank = np.where(
            frame["ship_country"].is_not_null().to_numpy(), rank.astype(np.float64), np.inf
        )
        minima = np.column_stack([rank.astype(np.float64), market_rank])
        # Running sums / minima restart at each customer: walk the rows level by level
        # (the k-th order of every customer at once), so each sum adds in row order.
        within = np.arange(n) - np.repeat(self.starts, np.diff([*self.starts, n]))
        by_level = np.argsort(within, kind="stable")
        level_ends = np.cumsum(np.bincount(within)) if n else np.array([], dtype=np.int64)
        for begin, end in zip(level_ends[:-1], level_ends[1:], strict=False):
            rows = by_level[begin:end]
            values[rows] += values[rows - 1]
            minima[rows] = np.minimum(minima[rows], minima[rows - 1])
        self.sums = values
        self.first_rank = minima[:, 0].astype(np.int64)
        self.last_rank = np.maximum.accumulate(rank) if n else rank  # segments ascend
        self.market_rank = minima[:, 1]
        self.nullable = frame.select("discount_usd", "subtotal_usd", "channel", "ship_country")
        self._ends: dict[int, np.ndarray] = {}

    def prefix_ends(self, days: list[int], block: int = 1 << 16) -> dict[int, np.ndarray]:
        """Per day: per customer, the end (exclusive) of their rows with order_date < day.

        Counted, not searched: each order falls between two of the sorted days, and a
        running count over those slots gives every customer's prefix end at every day
        (customers in blocks, so memory stays small)."""
        wanted = np.array(sorted(set(days)), dtype=np.int64)
        n_customers = self.starts.size
        ends = np.empty((wanted.size, n_customers), dtype=np.int64)
        slot = np.searchsorted(wanted, self.day, side="right")
        bounds = [*self.starts[::block], self.n]
        for i, (row_begin, row_end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            first = i * block
            width = min(block, n_customers - first)
            local = self.cid[row_begin:row_end] - first
            counts = np.bincount(
                slot[row_begin:row_end] * width + local, minlength=(wanted.size + 1) * width
            ).reshape(wanted.size + 1, width)
            ends[:, first : first + width] = (
                np.cumsum(counts[:-1], axis=0) + self.starts[first : first + width]
            )
        return {int(day): ends[j] for j, day in enumerate(wanted)}

    def _net(self, end: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Net spend over a customer's rows [start_of_customer, end)."""
        return np.where(end > start, self.sums[np.maximum(end - 1, 0), 0], 0.0)

    def base_features(
        self, cutoffs: list[date], value_window_days: int
    ) -> tuple[pl.DataFrame, np.ndarray, list[int], np.ndarray]:
        """The per-customer aggregates of every cutoff, stacked (cutoff-major, then
        store_id, customer_id), the customer index of each row, the rows per cutoff
        and the first row of each (cutoff, store) segment."""
        backs = (0, 90, 180, 365, value_window_days)
        days = [(cutoff - _EPOCH).days for cutoff in cutoffs]
        ends = self.prefix_ends([day - back for day in days for back in backs])
        parts = []
        for k, day in enumerate(days):
            ids = np.flatnonzero(ends[day] > self.starts)
            parts.append((np.full(ids.size, k), ids, *(ends[day - back][ids] for back in backs)))
        position, ids, end, end90, end180, end365, end_value = (
            np.concatenate([p[i] for p in parts]) for i in range(7)
        )
        cut = np.array(days, dtype=np.int64)[position]
        start = self.starts[ids]
        last = end - 1
        sums = dict(zip(self._SUMS, self.sums[last].T, strict=True))  # every end > start
        first_pos = self.position_of_rank[self.first_rank[last]]
        last_pos = self.position_of_rank[self.last_rank[last]]
        market_rank = self.market_rank[last]
        has_market = np.isfinite(market_rank)
        market_pos = self.position_of_rank[np.where(has_market, market_rank, 0).astype(np.int64)]
        frequency = (end - start).astype(np.float64)
        order_days = sums["new_day"]
        gaps = order_days - 1
        gap_sum, gap_squares = sums["gap"], sums["gap_squared"]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_gap = np.where(gaps >= 1, gap_sum / gaps, np.nan)
            variance = (gap_squares - gap_sum * gap_sum / gaps) / (gaps - 1)
            spread = np.where(gaps >= 2, np.sqrt(np.maximum(variance, 0.0)), np.nan)
        net, net90 = sums["net_usd"], self._net(end90, start)
        net180, net365 = self._net(end180, start), self._net(end365, start)
        first = self.nullable.select(
            first_discount_usd=pl.col("discount_usd").gather(first_pos),
            first_subtotal_usd=pl.col("subtotal_usd").gather(first_pos),
            first_channel=pl.col("channel").gather(first_pos),
            market=pl.col("ship_country").gather(market_pos),
        )
        values = self.values
        frame = pl.DataFrame(
            {
                "cutoff": pl.Series(cut, dtype=pl.Int32).cast(pl.Date),
                "first_order_date": pl.Series(self.day[first_pos], dtype=pl.Int32).cast(pl.Date),
                "last_order_date": pl.Series(self.day[last], dtype=pl.Int32).cast(pl.Date),
                "frequency": frequency,
                "order_days": order_days,
                "monetary_usd": net,
                "last_order_usd": values["net_usd"][last_pos],
                "total_usd": sums["total_usd"],
                "refunded_usd": sums["refunded_usd"],
                "discount_usd": sums["discount_usd"],
                "subtotal_usd": sums["subtotal_usd"],
                "discount_known": sums["discount_known"] > 0,
                "cod_share": sums["is_cod"] / frequency,
                "first_order_usd": values["total_usd"][first_pos],
                "first_refunded_usd": values["refunded_usd"][first_pos],
                "first_order_cod": values["is_cod"][first_pos],
                "orders_last_90_days": (end - end90).astype(np.float64),
                "orders_prior_90_days": (end90 - end180).astype(np.float64),
                "spend_last_90": net - net90,
                "spend_prior_90": net90 - net180,
                "orders_last_365_days": (end - end365).astype(np.float64),
                "spend_last_365_days": net - net365,
                "spend_value_window_usd": net - self._net(end_value, start),
                "mean_gap_days": mean_gap,
                "gap_spread_days": spread,
            },
        ).with_columns(
            first.get_column("first_discount_usd"),
            first.get_column("first_subtotal_usd"),
            first.get_column("first_channel"),
            pl.when(pl.Series(has_market)).then(first.get_column("market")).alias("market"),
            pl.col("mean_gap_days", "gap_spread_days").fill_nan(None),
        )
        # (cutoff, store) segments: contiguous, as rows are cutoff-major, then by store.
        segment_key = position * (int(self.store_code.max()) + 1) + self.store_code[ids]
        segments = np.flatnonzero(np.diff(segment_key, prepend=-1))
        return frame, ids, [p[1].size for p in parts], segments


_EPOCH = date(1970, 1, 1)


def build_feature_sets(
    orders: pl.DataFrame | OrderHistory,
    cutoffs: list[date],
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    horizon_days: int = 90,
    value_window_days: int = 365,
) -> dict[date, pl.DataFrame]:
    """build_features at every cutoff in one vectorised pass: {cutoff: features}.

    Each frame equals build_features(orders, cutoff, ...) (one row per customer with
    a valid order before the cutoff, sorted by store_id, customer_id; an empty frame
    when there is none). `orders` from prepare_orders, or an OrderHistory of it.
    """
    history = orders if isinstance(orders, OrderHistory) else OrderHistory(orders)
    cutoffs = list(dict.fromkeys(cutoffs))
    if history.n == 0 or not cutoffs:
        return {cutoff: pl.DataFrame() for cutoff in cutoffs}
    base, ids, sizes, segments = history.base_features(cutoffs, value_window_days)
    c = pl.col("cutoff")
    features = base.with_columns(
        history.customers.select(
            pl.col("store_id").gather(ids), pl.col("customer_id").gather(ids)
        ).get_columns()
    ).with_columns(
        recency_days=(c - pl.col("last_order_date")).dt.total_days().cast(pl.Float64),
        tenure_days=(c - pl.col("first_order_date")).dt.total_days().cast(pl.Float64),
        aov_usd=pl.col("total_usd") / pl.col("frequency"),
        discount_share=pl.when(pl.col("discount_known") & (pl.col("subtotal_usd") > 0))
        .then(pl.col("discount_usd") / pl.col("subtotal_usd"))
        .otherwise(None),
        refund_share=pl.when(pl.col("total_usd") > 0)
        .then(pl.col("refunded_usd") / pl.col("total_usd"))
        .otherwise(None),
        first_order_discount_share=pl.when(
            pl.col("first_discount_usd").is_not_null() & (pl.col("first_subtotal_usd") > 0)
        )
        .then(pl.col("first_discount_usd") / pl.col("first_subtotal_usd"))
        .otherwise(None),
        first_order_refund_share=pl.when(pl.col("first_order_usd") > 0)
        .then(pl.col("first_refunded_usd") / pl.col("first_order_usd"))
        .otherwise(None),
        order_trend_90_days=pl.col("orders_last_90_days") - pl.col("orders_prior_90_days"),
        spend_trend_90_days=(pl.col("spend_last_90") + 1.0).log()
        - (pl.col("spend_prior_90") + 1.0).log(),
    )
    features = features.with_columns(
        days_past_usual_cycle=pl.col("recency_days") - pl.col("mean_gap_days"),
        recency_over_usual_cycle=pl.col("recency_days") / pl.col("mean_gap_days").clip(1.0),
    )
    # Store context: how often this store's customers come back at all, and the
    # store's typical gap, so recency means the same thing in fast and slow stores.
    lengths = np.diff([*segments, base.height])
    order_days = base["order_days"].to_numpy()
    mean_gap = base["mean_gap_days"].to_numpy(allow_copy=True).astype(np.float64)
    repeat_rate = np.add.reduceat((order_days > 1).astype(np.float64), segments) / lengths
    median_gap = np.array(
        [
            np.median(gap[~np.isnan(gap)]) if not np.isnan(gap).all() else float(horizon_days)
            for gap in np.split(mean_gap, segments[1:])
        ]
    )
    stores = (
        features.select("cutoff", "store_id")[segments]
        .join(
            _session_trends(sessions, cutoffs),
            on=["cutoff", "store_id"],
            how="left",
            maintain_order="left",
        )
        .join(
            _season_indexes(history.orders, cutoffs, horizon_days),
            on=["cutoff", "store_id"],
            how="left",
            maintain_order="left",
        )
    )
    features = features.with_columns(
        store_repeat_rate=pl.Series(np.repeat(repeat_rate, lengths)),
        store_median_gap=pl.Series(np.repeat(np.maximum(median_gap, 1.0), lengths)),
        store_sessions_trend=pl.Series(
            np.repeat(stores["store_sessions_trend"].to_numpy(), lengths)
        ).fill_nan(None),
        store_season_index=pl.Series(
            np.repeat(stores["store_season_index"].to_numpy(), lengths)
        ).fill_nan(None),
    ).with_columns(recency_over_store_gap=pl.col("recency_days") / pl.col("store_median_gap"))
    extras = _customer_extras(customers)
    if extras is not None:
        per_customer = history.customers.join(
            extras, on=["store_id", "customer_id"], how="left", maintain_order="left"
        ).drop("store_id", "customer_id")
        features = features.with_columns(per_customer.select(pl.all().gather(ids)).get_columns())
        if "customer_country" in features.columns:
            features = features.with_columns(market=pl.coalesce("market", "customer_country"))
    features = features.with_columns(
        [
            pl.lit(None, dtype=pl.Float64).alias(col)
            for col in CONSENT_COLUMNS
            if col not in features.columns
        ]
    )
    features = _with_bgnbd(features, horizon_days, segments)
    selected = features.select(
        "store_id",
        "customer_id",
        *[pl.col(name).cast(pl.Float64) for name in NUMERIC_FEATURES],
        *[pl.col(name).cast(pl.String) for name in CATEGORICAL_FEATURES],
        "last_order_date",
        "spend_value_window_usd",
    )
    out, offset = {}, 0
    for cutoff, n_rows in zip(cutoffs, sizes, strict=True):
        out[cutoff] = selected.slice(offset, n_rows) if n_rows else pl.DataFrame()
        offset += n_rows
    return out


def _season_indexes(orders: pl.DataFrame, cutoffs: list[date], horizon_days: int) -> pl.DataFrame:
    """Per cutoff and store: orders in the horizon-long window one year before the
    coming horizon, over orders in the horizon before that (null without a year of
    history). A seasonal store heading into its peak gets > 1."""
    cuts = pl.DataFrame({"cutoff": cutoffs}, schema={"cutoff": pl.Date})
    year_ago = pl.col("cutoff") - pl.duration(days=365)
    behind_start = year_ago - pl.duration(days=horizon_days)
    ahead_end = year_ago + pl.duration(days=horizon_days)
    daily = orders.group_by("store_id", "order_date").agg(n=pl.len())
    stores = orders.group_by("store_id").agg(first=pl.col("order_date").min())
    counts = (
        daily.join(cuts, how="cross")
        .filter((pl.col("order_date") >= behind_start) & (pl.col("order_date") < ahead_end))
        .group_by("cutoff", "store_id")
        .agg(
            ahead=pl.col("n").filter(pl.col("order_date") >= year_ago).sum().cast(pl.Float64),
            behind=pl.col("n").filter(pl.col("order_date") < year_ago).sum().cast(pl.Float64),
        )
    )
    return (
        stores.join(cuts, how="cross")
        .join(counts, on=["cutoff", "store_id"], how="left")
        .select(
            "cutoff",
            "store_id",
            store_season_index=pl.when((pl.col("first") <= behind_start) & (pl.col("behind") > 0))
            .then(pl.col("ahead") / pl.col("behind"))
            .otherwise(None),
        )
    )


def _session_trends(sessions: pl.DataFrame | None, cutoffs: list[date]) -> pl.DataFrame:
    """Per cutoff and store: sessions in the 30 days before the cutoff over the 30 before."""
    schema = {"cutoff": pl.Date, "store_id": pl.String, "store_sessions_trend": pl.Float64}
    if sessions is None or sessions.is_empty():
        return pl.DataFrame(schema=schema)
    cuts = pl.DataFrame({"cutoff": cutoffs}, schema={"cutoff": pl.Date})
    days_before = (pl.col("cutoff") - pl.col("date")).dt.total_days()
    # Days older than 60 before every cutoff count for nothing (a store seen only
    # then gets a null trend either way).
    daily = (
        sessions.filter(pl.col("date") >= min(cutoffs) - timedelta(days=60))
        .group_by("store_id", "date")
        .agg(pl.col("sessions").sum())
    )
    return (
        daily.join(cuts, how="cross")
        .filter((pl.col("date") < pl.col("cutoff")) & (days_before <= 60))
        .group_by("cutoff", "store_id")
        .agg(
            last_30=pl.col("sessions").filter(days_before <= 30).sum().cast(pl.Float64),
            prior_30=pl.col("sessions").filter(days_before > 30).sum().cast(pl.Float64),
        )
        .select(
            "cutoff",
            "store_id",
            store_sessions_trend=pl.when(pl.col("prior_30") > 0)
            .then(pl.col("last_30") / pl.col("prior_30"))
            .otherwise(None),
        )
        .cast({"store_id": pl.String})
    )


def bgnbd_summary(features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) in weeks from a feature frame (repeat order days, span, age)."""
    x = features["frequency_days"].to_numpy().astype(float) - 1.0
    T = features["tenure_days"].to_numpy().astype(float) / bgnbd.DAYS_PER_WEEK
    t_x = T - features["recency_days"].to_numpy().astype(float) / bgnbd.DAYS_PER_WEEK
    return x, t_x, T


BGNBD_COLUMNS = (
    "mbgnbd_p_alive",
    "mbgnbd_p_no_order",
    "bgnbd_p_alive",
    "bgnbd_p_no_order",
    "bgnbd_expected_orders",
)


def _bgnbd_columns(x, t_x, T, horizon_weeks: float) -> dict[str, np.ndarray]:
    """BG/NBD and MBG/NBD fitted on one store's customers at one cutoff, and their
    P(alive), P(no order in the horizon) and expected orders per customer."""
    params = bgnbd.fit(x, t_x, T)
    mbg = bgnbd.fit(x, t_x, T, variant="mbg")
    return {
        "mbgnbd_p_alive": bgnbd.p_alive(mbg, x, t_x, T, "mbg"),
        "mbgnbd_p_no_order": bgnbd.p_no_purchase(mbg, x, t_x, T, horizon_weeks, "mbg"),
        "bgnbd_p_alive": bgnbd.p_alive(params, x, t_x, T),
        "bgnbd_p_no_order": bgnbd.p_no_purchase(params, x, t_x, T, horizon_weeks),
        "bgnbd_expected_orders": bgnbd.expected_purchases(params, x, t_x, T, horizon_weeks),
    }


def _with_bgnbd(features: pl.DataFrame, horizon_days: int, segments: np.ndarray) -> pl.DataFrame:
    """BG/NBD fitted per cutoff and store on the same history (`segments`: the first
    row of each cutoff x store, rows contiguous): P(alive), P(no order), E[orders]."""
    horizon_weeks = horizon_days / bgnbd.DAYS_PER_WEEK
    x, t_x, T = bgnbd_summary(
        features.select(
            "recency_days", "tenure_days", frequency_days=pl.col("order_days").cast(pl.Float64)
        )
    )
    bounds = [*segments.tolist(), features.height]
    out = {name: np.empty(features.height) for name in BGNBD_COLUMNS}
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        part = _bgnbd_columns(x[start:end], t_x[start:end], T[start:end], horizon_weeks)
        for name in BGNBD_COLUMNS:
            out[name][start:end] = part[name]
    return features.with_columns(**{name: pl.Series(name, out[name]) for name in BGNBD_COLUMNS})


def churn_labels(orders: pl.DataFrame, cutoff: date, horizon_days: int) -> pl.DataFrame:
    """store_id, customer_id, ordered_in_horizon for customers ordering in [cutoff, cutoff+h)."""
    end = cutoff + timedelta(days=horizon_days)
    return (
        orders.filter((pl.col("order_date") >= cutoff) & (pl.col("order_date") < end))
        .select("store_id", "customer_id")
        .unique()
        .with_columns(ordered_in_horizon=pl.lit(True))
    )


class FeatureCache:
    """Features and labels per cutoff, computed once and shared by fit and backtest."""

    def __init__(
        self,
        orders: pl.DataFrame,
        as_of: date,
        *,
        customers: pl.DataFrame | None = None,
        sessions: pl.DataFrame | None = None,
        settings: ChurnSettings,
    ):
        self.as_of = as_of
        self.orders = prepare_orders(orders, as_of)
        self.customers = customers
        self.sessions = (
            sessions.filter(pl.col("date") < as_of)
            if sessions is not None and not sessions.is_empty()
            else None
        )
        self.settings = settings
        self.history = OrderHistory(self.orders)
        self._features: dict[date, pl.DataFrame] = {}

    def prefetch(self, cutoffs: list[date]) -> None:
        """Build the features of every cutoff not cached yet, in one vectorised pass."""
        missing = [c for c in dict.fromkeys(cutoffs) if c not in self._features]
        if missing:
            self._features.update(
                build_feature_sets(
                    self.history,
                    missing,
                    customers=self.customers,
                    sessions=self.sessions,
                    horizon_days=self.settings.horizon_days,
                    value_window_days=self.settings.value_window_days,
                )
            )

    def features(self, cutoff: date) -> pl.DataFrame:
        self.prefetch([cutoff])
        return self._features[cutoff]

    def labelled(self, cutoff: date) -> pl.DataFrame:
        """Features at `cutoff` with `churned` (1 = no order within the horizon)."""
        if cutoff + timedelta(days=self.settings.horizon_days) > self.as_of:
            raise ValueError(
                f"cutoff {cutoff} + {self.settings.horizon_days} days is after as_of {self.as_of}: "
                "its label is not observed yet"
            )
        features = self.features(cutoff)
        if features.is_empty():
            return features
        labels = churn_labels(self.orders, cutoff, self.settings.horizon_days)
        return (
            features.join(labels, on=["store_id", "customer_id"], how="left")
            .with_columns(
                churned=(~pl.col("ordered_in_horizon").fill_null(False)).cast(pl.Int8),
                cutoff=pl.lit(cutoff),
            )
            .drop("ordered_in_horizon")
        )


# ------------------------------------------------------------------------ the model


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
        return trees + init_margin(features, self.settings)

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
    columns = [features[name].cast(pl.Float64).to_numpy() for name in NUMERIC_FEATURES]
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


def init_margin(features: pl.DataFrame, settings: ChurnSettings) -> np.ndarray:
    """The starting log-odds: BG/NBD's P(no order) when boosting from it, else 0."""
    if not settings.boost_from_bgnbd:
        return np.zeros(features.height)
    return _logit(features["bgnbd_p_no_order"].fill_null(0.5).to_numpy())


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
    `last_labelled + horizon`. Training labels end before the validation cutoff."""
    validation = last_labelled
    gap = settings.validation_gap_days
    newest_train = validation - timedelta(days=settings.horizon_days if gap is None else gap)
    train = [
        newest_train - timedelta(days=k * settings.cutoff_step_days)
        for k in range(settings.n_train_cutoffs)
    ]
    return train, validation


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
        if part.height >= settings.min_customers_per_cutoff:
            train_parts.append(part)
            kept_cutoffs.append(cutoff)
    validation = cache.labelled(validation_cutoff)
    if not train_parts or validation.height < settings.min_customers_per_cutoff:
        raise ValueError(
            f"not enough history to train churn as of {cache.as_of}: need orders before "
            f"{min(train_cutoffs)} and at least {settings.min_customers_per_cutoff} customers per "
            f"cutoff (horizon {settings.horizon_days} days); use a later as_of or a shorter horizon"
        )
    _require_both_outcomes(validation, validation_cutoff, settings.horizon_days)
    train = pl.concat(train_parts, how="vertical_relaxed")
    vocab = category_vocab(train, settings.min_category_count)
    x_train, y_train = encode(train, vocab), train["churned"].to_numpy()
    x_valid, y_valid = encode(validation, vocab), validation["churned"].to_numpy()
    categorical = [FEATURES.index(name) for name in CATEGORICAL_FEATURES]
    init_train, init_valid = init_margin(train, settings), init_margin(validation, settings)
    train_set = lgb.Dataset(
        x_train,
        y_train,
        init_score=init_train,
        feature_name=list(FEATURES),
        categorical_feature=categorical,
    )
    valid_set = lgb.Dataset(x_valid, y_valid, init_score=init_valid, reference=train_set)
    booster = lgb.train(
        lightgbm_params(settings, seed),
        train_set,
        num_boost_round=settings.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
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
        feature_importance={
            name: round(float(g), 2) for name, g in zip(FEATURES, gains, strict=True)
        },
    )


# ---------------------------------------------------------------------- prediction


def predict(
    model: ChurnModel,
    features: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    explain: bool = True,
) -> pl.DataFrame:
    """scores.churn rows for a feature frame built at `as_of` (build_features).

    top_reasons come from LightGBM's feature contributions (pred_contrib, computed
    by tree_contributions); explain=False leaves them empty for the fastest runs.
    """
    if features.is_empty():
        return empty_scores()
    settings = model.settings
    matrix = encode(features, model.vocab)
    start = init_margin(features, settings)
    margin = model.booster.predict(
        matrix, num_iteration=model.best_iteration, raw_score=True, num_threads=settings.num_threads
    )
    probability = model.calibrate(margin + start)
    contributions = (
        tree_contributions(model.booster, matrix, model.best_iteration, settings.num_threads)[
            :, : len(FEATURES)
        ]
        if explain
        else None
    )
    if explain and settings.boost_from_bgnbd:
        # The BG/NBD starting point is part of the score: credit its deviation from
        # the training average to the 'buying pattern' reason (bgnbd_p_no_order).
        pattern = FEATURES.index("bgnbd_p_no_order")
        contributions[:, pattern] += start - model.mean_init_margin
    risk_score = np.rint(probability * 100.0)
    scored = features.with_columns(
        churn_probability=pl.Series(probability).round(4),
        risk_score=pl.Series(risk_score).cast(pl.Int16),
    )
    scored = scored.with_columns(
        risk_band=pl.when(pl.col("risk_score") > settings.high_risk_above)
        .then(pl.lit("high"))
        .when(pl.col("risk_score") > settings.medium_risk_above)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("low")),
        top_reasons=top_reasons(scored, contributions, settings.horizon_days)
        if explain
        else pl.lit(None, dtype=pl.String),
        value_at_risk_usd=(
            pl.col("churn_probability") * pl.col("spend_value_window_usd").clip(0.0)
        ).round(2),
        as_of=pl.lit(as_of),
        model_version=pl.lit(model_version),
    )
    return scored.select(SCORE_COLUMNS)


SCORE_COLUMNS = (
    "store_id",
    "customer_id",
    "as_of",
    "churn_probability",
    "risk_score",
    "risk_band",
    "top_reasons",
    "value_at_risk_usd",
    "model_version",
)


def empty_scores() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "store_id": pl.String,
            "customer_id": pl.String,
            "as_of": pl.Date,
            "churn_probability": pl.Float64,
            "risk_score": pl.Int16,
            "risk_band": pl.String,
            "top_reasons": pl.String,
            "value_at_risk_usd": pl.Float64,
            "model_version": pl.String,
        }
    )


def _tree_nodes(node: dict, found: list[dict]) -> None:
    if "split_feature" not in node:
        return
    found.append(node)
    _tree_nodes(node["left_child"], found)
    _tree_nodes(node["right_child"], found)


# LightGBM treats |x| <= kZeroThreshold as zero in a split with missing_type 'Zero'.
_LGBM_ZERO = 1e-35


def _goes_left(column: np.ndarray, node: dict) -> np.ndarray:
    """LightGBM's NumericalDecision for every row: True where the row goes left."""
    missing = node["missing_type"]
    nan = np.isnan(column)
    value = np.where(nan, 0.0, column) if missing != "NaN" else column
    left = value <= float(node["threshold"])
    if missing == "Zero":
        default = (value >= -_LGBM_ZERO) & (value <= _LGBM_ZERO)
    elif missing == "NaN":
        default = nan
    else:
        return left
    return np.where(default, bool(node["default_left"]), left)


def _category_digits(column: np.ndarray) -> tuple[np.ndarray, int]:
    """A small non-negative integer per distinct category code (NaN its own)."""
    nan = np.isnan(column)
    finite = column[~nan]
    if finite.size and (
        finite.min() < 0 or np.any(finite != np.floor(finite)) or finite.max() > 1e6
    ):
        _, digits = np.unique(np.where(nan, -1.0, column), return_inverse=True)
        return digits.astype(np.int64), int(digits.max()) + 1
    top = int(finite.max()) + 1 if finite.size else 0
    return np.where(nan, top, column).astype(np.int64), top + 1


def _group_rows(key: np.ndarray, radix: int) -> tuple[np.ndarray, np.ndarray]:
    """(one row of each distinct key, the group of every row)."""
    n_rows = key.size
    if radix <= max(4 * n_rows, 1 << 16):
        present = np.zeros(radix, dtype=bool)
        present[key] = True
        labels = np.cumsum(present) - 1
        inverse = labels[key]
        first_row = np.empty(int(labels[-1]) + 1, dtype=np.int64)
        first_row[inverse] = np.arange(n_rows)  # any row of a group stands for it
        return first_row, inverse
    _, first_row, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first_row, inverse.reshape(-1)


def tree_contributions(
    booster: lgb.Booster, matrix: np.ndarray, num_iteration: int, num_threads: int = 1
) -> np.ndarray:
    """Exactly LightGBM's `pred_contrib=True` output, computed many times faster.

    TreeSHAP values of one tree depend on a row only through the side it takes at
    each of that tree's splits. Rows are therefore grouped per tree by their
    decisions at every split (LightGBM's own rule: threshold, missing type and
    default direction; categorical splits group by the category code itself);
    LightGBM computes the contributions once per group and tree, and the per-tree
    results are added up (SHAP values are additive over trees).
    """
    n_rows, n_features = matrix.shape
    trees = booster.dump_model(num_iteration=num_iteration)["tree_info"]
    columns: dict[int, np.ndarray] = {}
    digits: dict[int, tuple[np.ndarray, int]] = {}

    def column(feature: int) -> np.ndarray:
        if feature not in columns:
            columns[feature] = np.ascontiguousarray(matrix[:, feature], dtype=np.float64)
        return columns[feature]

    total = np.zeros((n_features + 1, n_rows))  # transposed: contiguous row adds
    for tree_index, tree in enumerate(trees):
        nodes: list[dict] = []
        _tree_nodes(tree["tree_structure"], nodes)
        key = np.zeros(n_rows, dtype=np.int64)
        radix = 1
        categorical = sorted({n["split_feature"] for n in nodes if n["decision_type"] != "<="})
        parts = [
            (_goes_left(column(n["split_feature"]), n), 2)
            for n in nodes
            if n["decision_type"] == "<="
        ]
        for feature in categorical:
            if feature not in digits:
                digits[feature] = _category_digits(column(feature))
            parts.append(digits[feature])
        for values, n_values in parts:
            if radix > np.iinfo(np.int64).max // max(n_values, 1):
                raise OverflowError("too many split groups to key in int64")
            key += values.astype(np.int64) * radix
            radix *= n_values
        first_row, inverse = _group_rows(key, radix)
        per_group = booster.predict(
            matrix[first_row],
            start_iteration=tree_index,
            num_iteration=1,
            pred_contrib=True,
            num_threads=num_threads,
        )
        # Only the tree's own split features (and the expected value) are non-zero.
        for feature in [*sorted({n["split_feature"] for n in nodes}), n_features]:
            total[feature] += per_group[:, feature][inverse]
    return total.T


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
            _pct_complement("bgnbd_p_no_order"),
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


# ------------------------------------------------------------------------ backtest


def classification_metrics(
    y: np.ndarray, score: np.ndarray, probability: np.ndarray | None
) -> dict:
    """AUC, PR-AUC (churn = positive), Brier (None without probabilities), top-decile lift."""
    y = np.asarray(y, dtype=float)
    n_top = max(1, int(math.ceil(0.1 * y.size)))
    top = np.argsort(-np.asarray(score), kind="stable")[:n_top]
    base_rate = float(y.mean())
    return {
        "auc": round(float(roc_auc_score(y, score)), 4),
        "pr_auc": round(float(average_precision_score(y, score)), 4),
        "brier": round(float(brier_score_loss(y, probability)), 4)
        if probability is not None
        else None,
        "lift_top_decile": round(float(y[top].mean() / base_rate), 4) if base_rate > 0 else None,
        "churn_rate": round(base_rate, 4),
        "n_customers": int(y.size),
    }


@dataclass
class BacktestResult:
    """Model and baselines evaluated on one fully observed cutoff."""

    cutoff: date
    horizon_days: int
    metrics: dict
    baseline_metrics: dict[str, dict]
    predictions: pl.DataFrame  # store_id, customer_id, churned, model + baseline scores

    @property
    def best_baseline_auc(self) -> float:
        return max(m["auc"] for m in self.baseline_metrics.values())

    @property
    def best_baseline_brier(self) -> float:
        return min(m["brier"] for m in self.baseline_metrics.values() if m["brier"] is not None)

    def beats_baselines(self, min_auc_gain: float = 0.0) -> tuple[bool, str]:
        """(approved, reason): the model must beat the best baseline's AUC and Brier."""
        auc, brier = self.metrics["auc"], self.metrics["brier"]
        auc_ok = auc >= self.best_baseline_auc + min_auc_gain and auc > self.best_baseline_auc
        brier_ok = brier < self.best_baseline_brier
        reason = (
            f"AUC {auc:.4f} vs best baseline {self.best_baseline_auc:.4f}; "
            f"Brier {brier:.4f} vs best baseline {self.best_baseline_brier:.4f} "
            f"(cutoff {self.cutoff}, {self.metrics['n_customers']} customers)"
        )
        return auc_ok and brier_ok, ("approved: " if auc_ok and brier_ok else "rejected: ") + reason


def evaluate(model: ChurnModel, cache: FeatureCache, test_cutoff: date) -> BacktestResult:
    """Score the test cutoff with the model and both baselines.

    Baselines: days since last order (Brier from an isotonic map fitted on the
    model's own validation cutoff, so it gets the same information) and BG/NBD
    P(no order in horizon) fitted per store on history before the cutoff.
    """
    test = cache.labelled(test_cutoff)
    _require_both_outcomes(test, test_cutoff, cache.settings.horizon_days)
    y = test["churned"].to_numpy()
    probability = model.calibrate(model.raw_margin(test))
    validation = cache.labelled(model.validation_cutoff)
    recency_map = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
        validation["recency_days"].to_numpy(), validation["churned"].to_numpy()
    )
    recency = test["recency_days"].to_numpy()
    recency_probability = recency_map.predict(recency)
    bgnbd_probability = test["bgnbd_p_no_order"].to_numpy()
    predictions = test.select("store_id", "customer_id", "churned").with_columns(
        model_probability=pl.Series(probability),
        recency_days=pl.Series(recency),
        recency_probability=pl.Series(recency_probability),
        bgnbd_probability=pl.Series(bgnbd_probability),
    )
    return BacktestResult(
        cutoff=test_cutoff,
        horizon_days=cache.settings.horizon_days,
        metrics=classification_metrics(y, probability, probability),
        baseline_metrics={
            "recency": classification_metrics(y, recency, recency_probability),
            "bgnbd": classification_metrics(y, bgnbd_probability, bgnbd_probability),
        },
        predictions=predictions,
    )


@dataclass
class TrainingResult:
    """The production model (trained up to as_of) and the backtest of its recipe."""

    model: ChurnModel
    backtest: BacktestResult
    backtest_model: ChurnModel
    approved: bool
    reason: str
    train_seconds: float
    data_fingerprint_frame: pl.DataFrame  # the production training labels (for the card)


def backtest_cutoff(as_of: date, settings: ChurnSettings) -> date:
    """The newest cutoff whose horizon is fully observed before as_of."""
    return as_of - timedelta(days=settings.horizon_days)


def train(
    orders: pl.DataFrame,
    as_of: date,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    settings: ChurnSettings | None = None,
    seed: int = 0,
    min_auc_gain: float = 0.0,
) -> TrainingResult:
    """Backtest the recipe on the newest fully observed cutoff, then fit the model
    that will score (same recipe, one horizon later). Deterministic for a seed."""
    settings = settings or ChurnSettings()
    started = time.perf_counter()
    cache = FeatureCache(orders, as_of, customers=customers, sessions=sessions, settings=settings)
    test_cutoff = backtest_cutoff(as_of, settings)
    needed = [test_cutoff]
    for last_labelled in (test_cutoff - timedelta(days=settings.horizon_days), test_cutoff):
        train_cutoffs, validation_cutoff = plan_cutoffs(last_labelled, settings)
        needed += [*train_cutoffs, validation_cutoff]
    cache.prefetch(needed)
    backtest_model = fit_at(
        cache, test_cutoff - timedelta(days=settings.horizon_days), seed=seed, settings=settings
    )
    result = evaluate(backtest_model, cache, test_cutoff)
    model = fit_at(cache, test_cutoff, seed=seed, settings=settings)
    approved, reason = result.beats_baselines(min_auc_gain)
    fingerprint_frame = pl.concat(
        [
            cache.labelled(c).select("store_id", "customer_id", "cutoff", "churned")
            for c in model.train_cutoffs
        ]
    )
    return TrainingResult(
        model=model,
        backtest=result,
        backtest_model=backtest_model,
        approved=approved,
        reason=reason,
        train_seconds=round(time.perf_counter() - started, 3),
        data_fingerprint_frame=fingerprint_frame,
    )


def score(
    model: ChurnModel,
    orders: pl.DataFrame,
    as_of: date,
    model_version: str,
    *,
    customers: pl.DataFrame | None = None,
    sessions: pl.DataFrame | None = None,
    explain: bool = True,
) -> pl.DataFrame:
    """Score every customer with an order before as_of (features built at as_of)."""
    settings = model.settings
    prepared = prepare_orders(orders, as_of)
    if sessions is not None and not sessions.is_empty():
        sessions = sessions.filter(pl.col("date") < as_of)
    features = build_features(
        prepared,
        as_of,
        customers=customers,
        sessions=sessions,
        horizon_days=settings.horizon_days,
        value_window_days=settings.value_window_days,
    )
    return predict(model, features, as_of, model_version, explain=explain)
