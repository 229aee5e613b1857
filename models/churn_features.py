"""Churn features: one row per customer and cutoff from the order history, plus labels.

Pure: polars frames in (staging.orders, optionally staging.customers and
staging.sessions), polars frames out; no Dagster, no I/O. Nothing on or after a
cutoff is read for that cutoff's features; labels read [cutoff, cutoff + horizon).

Features use whatever exists; orders alone are enough. Among them are BG/NBD and
MBG/NBD summaries fitted per store at each cutoff (models.bgnbd).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from models import bgnbd
from models.churn_prior import PRIOR_EXPECTATION_COLUMNS, PRIOR_SHIFT_COLUMNS, prior_columns

if TYPE_CHECKING:
    from models.churn import ChurnSettings

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
# The covariate MBG/NBD (models.bgnbd.fit_covariates) fitted per store and cutoff on
# how each customer's first order went: the prior the trees start from (init_score).
# Computed by build_feature_sets(with_prior=True) only: it is a model fit, not a
# dataframe feature, so the feature benchmarks compare NUMERIC_FEATURES without it.
PRIOR_FEATURES = ("prior_p_alive", "prior_p_no_order")
FEATURES = NUMERIC_FEATURES + PRIOR_FEATURES + CATEGORICAL_FEATURES

# Cash on delivery in the spellings stores export ("COD", "Cash on Delivery (COD)",
# "cash_on_delivery", "contra entrega", "bayar di tempat"); "Cash App" is not COD.
COD_PATTERN = (
    r"(?i)(^|[^a-z])cod([^a-z]|$)|cash[ _-]*on[ _-]*delivery|contra[ _-]*entrega"
    r"|bayar[ _-]*di[ _-]*tempat|pago[ _-]*contra"
)


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


def sessions_before(sessions: pl.DataFrame | None, as_of: date) -> pl.DataFrame | None:
    """Session days strictly before as_of; None when there are no sessions at all."""
    if sessions is None or sessions.is_empty():
        return None
    return sessions.filter(pl.col("date") < as_of)


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
    with_prior: bool = True,
) -> pl.DataFrame:
    """One row per customer with a valid order before `cutoff`: FEATURES plus
    helper columns (last_order_date, spend_value_window_usd) and, with_prior, the
    covariate MBG/NBD prior (PRIOR_FEATURES) and order_days.

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
        with_prior=with_prior,
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
    with_prior: bool = False,
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
    if base.height == 0:  # nobody had ordered before any of the cutoffs
        return {cutoff: pl.DataFrame() for cutoff in cutoffs}
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
    mbg_fits: list[bgnbd.BgNbdParams] = []
    features = _with_bgnbd(features, horizon_days, segments, mbg_fits)
    extra = []
    if with_prior:
        features = prior_columns(features, horizon_days, segments, mbg_fits)
        extra = [
            *PRIOR_FEATURES,
            *PRIOR_SHIFT_COLUMNS,
            *PRIOR_EXPECTATION_COLUMNS,
            pl.col("order_days").cast(pl.Float64),
        ]
    selected = features.select(
        "store_id",
        "customer_id",
        *[pl.col(name).cast(pl.Float64) for name in NUMERIC_FEATURES],
        *[pl.col(name).cast(pl.String) for name in CATEGORICAL_FEATURES],
        "last_order_date",
        "spend_value_window_usd",
        *extra,
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


def _bgnbd_columns(x, t_x, T, horizon_weeks: float) -> dict:
    """BG/NBD and MBG/NBD fitted on one store's customers at one cutoff, and their
    P(alive), P(no order in the horizon) and expected orders per customer; "mbg" is the
    MBG/NBD fit itself (the covariate prior starts from it)."""
    params = bgnbd.fit(x, t_x, T)
    mbg = bgnbd.fit(x, t_x, T, variant="mbg")
    return {
        "mbg": mbg,
        "mbgnbd_p_alive": bgnbd.p_alive(mbg, x, t_x, T, "mbg"),
        "mbgnbd_p_no_order": bgnbd.p_no_purchase(mbg, x, t_x, T, horizon_weeks, "mbg"),
        "bgnbd_p_alive": bgnbd.p_alive(params, x, t_x, T),
        "bgnbd_p_no_order": bgnbd.p_no_purchase(params, x, t_x, T, horizon_weeks),
        "bgnbd_expected_orders": bgnbd.expected_purchases(params, x, t_x, T, horizon_weeks),
    }


def _with_bgnbd(
    features: pl.DataFrame,
    horizon_days: int,
    segments: np.ndarray,
    mbg_fits: list[bgnbd.BgNbdParams] | None = None,
) -> pl.DataFrame:
    """BG/NBD fitted per cutoff and store on the same history (`segments`: the first
    row of each cutoff x store, rows contiguous): P(alive), P(no order), E[orders].
    The MBG/NBD fit of each segment is appended to `mbg_fits` when given."""
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
        if mbg_fits is not None:
            mbg_fits.append(part["mbg"])
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


class CutoffFeatures:
    """One set of orders (prepared before as_of) and its features at any cutoff, each
    cutoff's built once: what churn (FeatureCache) and CLV share."""

    def __init__(
        self,
        orders: pl.DataFrame,
        as_of: date,
        *,
        customers: pl.DataFrame | None = None,
        sessions: pl.DataFrame | None = None,
        horizon_days: int,
        value_window_days: int = 365,
    ):
        self.as_of = as_of
        self.orders = prepare_orders(orders, as_of)
        self.customers = customers
        self.sessions = sessions_before(sessions, as_of)
        self.history = OrderHistory(self.orders)
        self.first_order_date = self.orders["order_date"].min() if self.orders.height else as_of
        self._horizon_days = horizon_days
        self._value_window_days = value_window_days
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
                    horizon_days=self._horizon_days,
                    value_window_days=self._value_window_days,
                    with_prior=True,
                )
            )

    def features(self, cutoff: date) -> pl.DataFrame:
        self.prefetch([cutoff])
        return self._features[cutoff]


class FeatureCache(CutoffFeatures):
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
        super().__init__(
            orders, as_of, customers=customers, sessions=sessions,
            horizon_days=settings.horizon_days, value_window_days=settings.value_window_days,
        )  # fmt: skip
        self.settings = settings

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
