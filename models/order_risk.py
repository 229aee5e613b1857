"""Orders to review before shipping: rules a merchant understands plus an
unsupervised score (scikit-learn's IsolationForest), each flagged order with reasons.

Pure: orders and customers in (polars), one row per scored order out. No I/O.

Everything an order's score uses was known when the merchant would review it: the
order itself, the store's earlier orders and accounts, and what happened within
`review_lag_hours` after it (other orders of a burst, accounts opened that day).
Never the order's own outcome (refund, chargeback, cancellation): that is what
the score is meant to foresee.

Rules (points add up to a 0-100 risk score; thresholds are settings):

| rule | fires when | points |
|---|---|---|
| burst | at least `burst_min_orders` small orders (bottom quarter of the store's baskets) from new accounts (first order, or opened within a day) within `burst_window_minutes`, a count with Poisson p below `burst_p_value` given the rest of that day and the store's hour-of-day pattern; or `account_burst_orders` orders from one account within an hour | 55 |
| country mismatch | billing country differs from shipping country on a first order of at least `mismatch_basket_ratio` x the store's median order | 40, +15 when shipped to a country the store rarely ships to (under `unusual_destination_share` of its orders) |
| big first order | a first order at least `big_basket_ratio` x the store's median order | 20 |
| COD refusals | cash on delivery from a customer who refused COD parcels before (cancelled COD orders known before this order) | 30 after one refusal, 55 after two or more, times the share of their earlier COD orders they refused |
| shared phone | the account's phone is shared by at least `shared_phone_accounts` accounts (one fewer: a weaker signal) | 50, +5 per extra account (up to +20); 25 for one fewer |
| unusual | IsolationForest anomaly in the store's top `anomaly_top_share`, scaled | up to `anomaly_points` (30) |

A store whose order times carry no time of day (a dates-only export: `stores_without_clock`)
gets neither burst rule nor an hour of day: minutes and hours are unknown there.

An order is flagged at `flag_score` (default 50): one strong rule, or weaker ones together. Precision matters more than
recall: a merchant reviews the top of the list, not thousands of orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.stats import poisson

MODEL_VERSION = "order_risk:rules+isolation_forest:v1"
SCORE_SCHEMA = {
    "store_id": pl.String, "order_id": pl.String, "customer_id": pl.String,
    "created_at": pl.Datetime("us"), "total_usd": pl.Float64, "payment_method": pl.String,
    "risk_score": pl.Float64, "flagged": pl.Boolean, "flags": pl.String, "rules": pl.String,
    "anomaly_percentile": pl.Float64, "to_review": pl.Boolean, "model_version": pl.String,
}  # fmt: skip
FEATURES = (
    "log_total_usd", "basket_ratio", "is_first_order", "log_account_age_hours",
    "account_orders_1h", "burst_orders", "country_mismatch", "unusual_destination", "is_cod",
    "prior_cod_refusals", "accounts_sharing_phone", "hour_of_day",
)  # fmt: skip
FEATURE_WORDS = {
    "log_total_usd": "order value", "basket_ratio": "basket size against the store's usual",
    "is_first_order": "first order", "log_account_age_hours": "account age",
    "account_orders_1h": "orders from this account within an hour",
    "burst_orders": "small orders from new accounts around it",
    "country_mismatch": "billing and shipping countries differ",
    "unusual_destination": "ships to a country the store rarely ships to",
    "is_cod": "cash on delivery", "prior_cod_refusals": "refused COD parcels before",
    "accounts_sharing_phone": "accounts sharing the phone", "hour_of_day": "time of day",
}  # fmt: skip


@dataclass(frozen=True)
class RiskSettings:
    """Rule thresholds and score weights (the Dagster asset exposes them as run config)."""

    lookback_days: int = 90  # orders scored: the last N days before as_of
    review_days: int = 3  # orders_to_review.csv: open orders of the last N days
    review_lag_hours: int = 24  # what a reviewer knows after an order
    flag_score: float = 50.0
    small_basket_quantile: float = 0.25
    burst_window_minutes: int = 60
    burst_min_orders: int = 4
    # A burst is a count this unlikely (Poisson) given the day's other small orders
    # from new accounts and the store's hour-of-day pattern.
    burst_p_value: float = 1e-4
    account_burst_orders: int = 3
    mismatch_basket_ratio: float = 1.5
    big_basket_ratio: float = 4.0
    shared_phone_accounts: int = 4
    unusual_destination_share: float = 0.01
    anomaly_top_share: float = 0.05
    anomaly_points: float = 30.0
    min_orders_for_anomaly: int = 50
    n_estimators: int = 200
    seed: int = 0

    def validate(self) -> None:
        if self.lookback_days < 1 or self.review_days < 1:
            raise ValueError("lookback_days and review_days must be at least 1")
        if not 0 < self.anomaly_top_share < 1:
            raise ValueError("anomaly_top_share must be between 0 and 1")
        if self.shared_phone_accounts < 2:
            raise ValueError("shared_phone_accounts must be at least 2")


def _window_counts(
    group: np.ndarray,
    t: np.ndarray,
    query_group: np.ndarray,
    query_t: np.ndarray,
    before: int,
    after: int,
) -> np.ndarray:
    """For each query: events of the same group with time in [t - before, t + after]."""
    if t.size == 0:
        return np.zeros(query_t.size, dtype=np.int64)
    span = int(max(t.max(), query_t.max()) - min(t.min(), query_t.min()) + before + after + 10)
    base = min(t.min(), query_t.min()) - before - 5
    keys = np.sort(group.astype(np.int64) * span + (t - base))
    q = query_group.astype(np.int64) * span + (query_t - base)
    return np.searchsorted(keys, q + after, "right") - np.searchsorted(keys, q - before, "left")


# Orders whose export carries dates only (every order at midnight, or at one clock time
# shifted by daylight saving) have no time of day: counting orders "within an hour" would
# read each day's orders as one burst. Such a store's burst rules and hour of day are off.
CLOCKLESS_SHARE = 0.9
CLOCKLESS_MIN_ORDERS = 20


def stores_without_clock(orders: pl.DataFrame) -> set[str]:
    """Stores of at least CLOCKLESS_MIN_ORDERS orders where CLOCKLESS_SHARE of them fall on
    one or two times of day (to the second): their timestamps carry no time of day."""
    if orders.is_empty():
        return set()
    at = pl.col("created_at").cast(pl.Datetime("us"))
    times = (
        orders.filter(pl.col("created_at").is_not_null())
        .group_by("store_id", (at - at.dt.truncate("1d")).alias("_time"))
        .len()
        .with_columns(pl.col("len").sum().over("store_id").alias("_orders"))
        .sort("len", descending=True)
        .group_by("store_id")
        .agg(pl.col("len").head(2).sum().alias("_top"), pl.col("_orders").first())
    )
    clockless = times.filter(
        (pl.col("_orders") >= CLOCKLESS_MIN_ORDERS)
        & (pl.col("_top") >= CLOCKLESS_SHARE * pl.col("_orders"))
    )
    return set(clockless["store_id"].to_list())


def order_features(
    orders: pl.DataFrame,
    customers: pl.DataFrame,
    store_countries: dict[str, str],
    as_of: date,
    settings: RiskSettings = RiskSettings(),
) -> pl.DataFrame:
    """Per order (all orders before as_of, cancelled ones too): the features the
    rules and the anomaly score read.

    orders: store_id, order_id, customer_id, created_at, total_usd, payment_method,
    ship_country, billing_country, cancelled_at. customers: store_id, customer_id,
    phone, created_at.
    """
    lag = settings.review_lag_hours * 3600
    o = (
        orders.filter(pl.col("created_at").cast(pl.Date) < as_of)
        .with_columns(
            pl.col("created_at").cast(pl.Datetime("us")),
            pl.col("cancelled_at").cast(pl.Datetime("us")),
            pl.col("payment_method").str.to_lowercase(),
        )
        .sort("store_id", "created_at", "order_id")
        .with_row_index("_i")
    )
    c = customers.select(
        "store_id",
        "customer_id",
        pl.col("phone").cast(pl.String),
        pl.col("created_at").cast(pl.Datetime("us")).alias("account_created_at"),
    ).unique(["store_id", "customer_id"], keep="first")
    o = o.join(c, on=["store_id", "customer_id"], how="left", maintain_order="left")
    t = (o["created_at"].dt.epoch("s")).to_numpy()
    store_codes = o["store_id"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    cust_key = (o["store_id"] + "\x1f" + o["customer_id"]).cast(pl.Categorical)
    cust_codes = cust_key.to_physical().to_numpy().astype(np.int64)

    first_seen = o.group_by("store_id", "customer_id").agg(
        pl.col("created_at").min().alias("_first_order_at")
    )
    o = o.join(first_seen, on=["store_id", "customer_id"], how="left", maintain_order="left")
    prior = (
        o.select(pl.col("_i").rank("ordinal").over("store_id", "customer_id") - 1)
        .to_series()
        .to_numpy()
    )
    opened = pl.min_horizontal(
        pl.col("account_created_at").fill_null(pl.col("_first_order_at")), pl.col("_first_order_at")
    )
    o = o.with_columns(
        pl.Series("prior_orders", prior.astype(np.int64)),
        ((pl.col("created_at") - opened).dt.total_seconds() / 3600)
        .clip(0)
        .alias("account_age_hours"),
    )
    age = o["account_age_hours"].to_numpy()
    is_first = prior == 0
    new_account = is_first | (age < 24)

    # Baskets: the store's median and small-basket cut from valid orders before as_of.
    valid = o.filter(pl.col("cancelled_at").is_null())
    medians = valid.group_by("store_id").agg(
        pl.col("total_usd").median().alias("_median"),
        pl.col("total_usd").quantile(settings.small_basket_quantile).alias("_small"),
    )
    o = o.join(medians, on="store_id", how="left", maintain_order="left")
    total = o["total_usd"].fill_null(0.0).to_numpy()
    small = total <= o["_small"].fill_null(0.0).to_numpy()

    # Bursts: small orders from new accounts around each order, against what the rest of
    # that day and the store's hour-of-day pattern would lead one to expect.
    half = settings.burst_window_minutes * 30
    sn = small & new_account
    burst = _window_counts(store_codes[sn], t[sn], store_codes, t, half, half)
    day_codes = store_codes * 100_000 + (t // 86_400)
    per_day = pl.DataFrame({"d": day_codes[sn]}).group_by("d").len()
    daily = dict(zip(per_day["d"].to_list(), per_day["len"].to_list(), strict=True))
    day_count = np.array([daily.get(int(d), 0) for d in day_codes], dtype=float)
    hours = o["created_at"].dt.hour().to_numpy()
    # The hour-of-day pattern of these orders themselves (new customers' first orders
    # keep other hours than repeat orders).
    hour_share = (
        pl.DataFrame({"s": store_codes[sn], "h": hours[sn]})
        .group_by("s", "h")
        .len()
        .with_columns((pl.col("len") / pl.col("len").sum().over("s")).alias("share"))
    )
    share_of = {(s, h): v for s, h, v in hour_share.select("s", "h", "share").iter_rows()}
    hour_factor = np.array(
        [
            share_of.get((int(s), int(h)), 1 / 24) * 24
            for s, h in zip(store_codes, hours, strict=True)
        ]
    )
    window_share = settings.burst_window_minutes / (24 * 60)
    others = np.maximum(day_count - burst, 0.0)
    expected = np.maximum(others / max(1e-9, 1 - window_share) * window_share * hour_factor, 0.05)
    burst_p = poisson.sf(np.maximum(burst - 1, 0), expected)
    account_1h = _window_counts(cust_codes, t, cust_codes, t, 3600, 3600)

    # COD refusals known before the order: earlier COD orders of the customer that were
    # cancelled (refused at the door) before this order was placed.
    cod = (o["payment_method"] == "cod").fill_null(False).to_numpy()
    refused = cod & o["cancelled_at"].is_not_null().to_numpy()
    refusal_t = o["cancelled_at"].dt.epoch("s").to_numpy()
    prior_refusals = _window_counts(
        cust_codes[refused], refusal_t[refused], cust_codes, t - 1, 10**10, 0
    )
    prior_cod = _window_counts(cust_codes[cod], t[cod], cust_codes, t - 1, 10**10, 0)

    # Accounts sharing the phone, opened by the time of review.
    phone = o["phone"].str.replace_all(r"\D", "").to_numpy()
    accounts = (
        o.select(
            "store_id",
            "customer_id",
            pl.col("phone").str.replace_all(r"\D", ""),
            opened.alias("_opened"),
        )
        .filter(pl.col("phone").is_not_null() & (pl.col("phone") != ""))
        .group_by("store_id", "customer_id", "phone")
        .agg(pl.col("_opened").min())
    )
    sharing = np.zeros(o.height, dtype=np.int64)
    if accounts.height:
        phone_key = (accounts["store_id"] + "\x1f" + accounts["phone"]).to_list()
        lookup = {k: i for i, k in enumerate(dict.fromkeys(phone_key))}
        group = np.array([lookup[k] for k in phone_key], dtype=np.int64)
        opened_t = accounts["_opened"].dt.epoch("s").to_numpy()
        order_phone_key = [
            lookup.get(f"{s}\x1f{p}", -1) if p else -1
            for s, p in zip(o["store_id"].to_list(), phone, strict=True)
        ]
        q = np.array(order_phone_key, dtype=np.int64)
        has = q >= 0
        sharing[has] = _window_counts(group, opened_t, q[has], t[has] + lag, 10**10, 0)

    # Destinations: countries the store ships to in fewer than 1 % of its orders.
    share = (
        valid.group_by("store_id", "ship_country")
        .len()
        .with_columns((pl.col("len") / pl.col("len").sum().over("store_id")).alias("_share"))
        .drop("len")
    )
    o = o.join(share, on=["store_id", "ship_country"], how="left", maintain_order="left")
    store_country = o["store_id"].replace_strict(store_countries, default=None).to_numpy()
    ship = o["ship_country"].to_numpy()
    billing = o["billing_country"].to_numpy()
    mismatch = np.array(
        [bool(b) and bool(s) and b != s for b, s in zip(billing, ship, strict=True)]
    )
    unusual = (o["_share"].fill_null(0.0).to_numpy() < settings.unusual_destination_share) & (
        ship != store_country
    )
    median = o["_median"].fill_null(0.0).to_numpy()
    ratio = np.divide(total, median, out=np.zeros_like(total), where=median > 0)
    local_hour = hours
    # A store without a clock (dates only): nothing is known about minutes or hours.
    no_clock = o["store_id"].is_in(list(stores_without_clock(o))).to_numpy()
    if no_clock.any():
        burst = np.where(no_clock, 0, burst)
        expected = np.where(no_clock, 0.0, expected)
        burst_p = np.where(no_clock, 1.0, burst_p)
        account_1h = np.where(no_clock, 0, account_1h)
        local_hour = np.where(no_clock, 0, local_hour)
    return o.select(
        "store_id", "order_id", "customer_id", "created_at", "total_usd", "payment_method",
        "ship_country", "billing_country", "cancelled_at",
    ).with_columns(
        pl.Series("log_total_usd", np.log1p(np.maximum(total, 0))),
        pl.Series("basket_ratio", ratio),
        pl.Series("is_first_order", is_first.astype(float)),
        pl.Series("account_age_hours", age),
        pl.Series("log_account_age_hours", np.log1p(np.nan_to_num(age, nan=1e4))),
        pl.Series("account_orders_1h", account_1h.astype(float)),
        pl.Series("burst_orders", np.where(sn, burst, 0).astype(float)),
        pl.Series("burst_expected", expected),
        pl.Series("burst_p_value", burst_p),
        pl.Series("country_mismatch", mismatch.astype(float)),
        pl.Series("unusual_destination", unusual.astype(float)),
        pl.Series("is_cod", cod.astype(float)),
        pl.Series("prior_cod_refusals", prior_refusals.astype(float)),
        pl.Series("prior_cod_orders", prior_cod.astype(float)),
        pl.Series("accounts_sharing_phone", sharing.astype(float)),
        pl.Series("hour_of_day", local_hour.astype(float)),
    )  # fmt: skip


RULES = {
    "burst": "burst of small orders from new accounts",
    "country_mismatch": "billing and shipping countries differ",
    "big_first_order": "first order far above the usual basket",
    "cod_refusals": "cash on delivery after refused parcels",
    "shared_phone": "one phone, many accounts",
    "unusual": "unusual for the store (isolation forest)",
}


def _rules(f: pl.DataFrame, s: RiskSettings) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
    n = f.height
    points = np.zeros(n)
    reasons: list[list[str]] = [[] for _ in range(n)]
    fired: list[list[str]] = [[] for _ in range(n)]
    money = f["total_usd"].fill_null(0.0).to_numpy()
    ratio = f["basket_ratio"].to_numpy()
    first = f["is_first_order"].to_numpy() > 0

    def add(rule: str, mask: np.ndarray, pts: np.ndarray | float, text) -> None:
        pts = np.broadcast_to(pts, (n,))
        for i in np.flatnonzero(mask):
            points[i] += pts[i]
            reasons[i].append(text(i))
            fired[i].append(rule)

    burst = f["burst_orders"].to_numpy()
    expected = f["burst_expected"].to_numpy()
    p_burst = f["burst_p_value"].to_numpy()
    account_1h = f["account_orders_1h"].to_numpy()
    store_burst = (burst >= s.burst_min_orders) & (p_burst < s.burst_p_value)
    account_burst = account_1h >= s.account_burst_orders
    add(
        "burst",
        store_burst | account_burst,
        55.0,
        lambda i: (
            f"burst: {int(burst[i])} small orders from new accounts within "
            f"{s.burst_window_minutes} minutes (about {expected[i]:.1f} expected)"
            if store_burst[i]
            else f"burst: {int(account_1h[i])} orders from this account within an hour"
        ),
    )
    unusual = f["unusual_destination"].to_numpy() > 0
    mismatch = (f["country_mismatch"].to_numpy() > 0) & first & (ratio >= s.mismatch_basket_ratio)
    billing, ship = f["billing_country"].to_list(), f["ship_country"].to_list()
    add(
        "country_mismatch",
        mismatch,
        np.where(unusual, 55.0, 40.0),
        lambda i: (
            f"first order of ${money[i]:,.0f} billed in {billing[i]} but shipped to "
            f"{ship[i]}" + (", a country the store rarely ships to" if unusual[i] else "")
        ),
    )
    big = first & (ratio >= s.big_basket_ratio)
    add(
        "big_first_order",
        big,
        20.0,
        lambda i: f"first order {ratio[i]:.1f}x the store's usual basket",
    )
    refusals = f["prior_cod_refusals"].to_numpy()
    prior_cod = np.maximum(f["prior_cod_orders"].to_numpy(), refusals)
    refusal_share = np.divide(refusals, prior_cod, out=np.zeros_like(refusals), where=prior_cod > 0)
    cod = (f["is_cod"].to_numpy() > 0) & (refusals >= 1)
    add(
        "cod_refusals",
        cod,
        np.where(refusals >= 2, 55.0, 30.0) * refusal_share,
        lambda i: (
            f"cash on delivery from a customer who refused {int(refusals[i])} of "
            f"{int(prior_cod[i])} COD parcels before"
        ),
    )
    sharing = f["accounts_sharing_phone"].to_numpy()
    shared = sharing >= s.shared_phone_accounts - 1
    add(
        "shared_phone",
        shared,
        np.where(
            sharing >= s.shared_phone_accounts,
            50.0 + np.minimum(5.0 * (sharing - s.shared_phone_accounts), 20.0),
            25.0,
        ),
        lambda i: f"phone shared by {int(sharing[i])} accounts",
    )
    return points, reasons, fired


def _anomaly(f: pl.DataFrame, s: RiskSettings) -> tuple[np.ndarray, list[str | None]]:
    """Per order: percentile of the IsolationForest anomaly score within its store and
    the features that make it unusual (None where the store has too few orders)."""
    from sklearn.ensemble import IsolationForest

    percentile = np.full(f.height, np.nan)
    words: list[str | None] = [None] * f.height
    stores = f["store_id"].to_numpy()
    x_all = f.select(FEATURES).fill_null(0.0).fill_nan(0.0).to_numpy()
    for store in np.unique(stores):
        idx = np.flatnonzero(stores == store)
        if idx.size < s.min_orders_for_anomaly:
            continue
        x = x_all[idx]
        forest = IsolationForest(n_estimators=s.n_estimators, random_state=s.seed).fit(x)
        anomaly = -forest.score_samples(x)
        order = np.argsort(np.argsort(anomaly, kind="stable"), kind="stable")
        percentile[idx] = (order + 1) / idx.size
        # Explain with the features furthest from the store's typical order.
        median = np.median(x, axis=0)
        spread = np.quantile(x, 0.9, axis=0) - np.quantile(x, 0.1, axis=0)
        spread = np.where(spread > 0, spread, np.abs(median) + 1.0)
        distance = np.abs(x - median) / spread
        for j in np.flatnonzero(percentile[idx] >= 1 - s.anomaly_top_share):
            top = np.argsort(-distance[j])[:2]
            words[idx[j]] = ", ".join(
                FEATURE_WORDS[FEATURES[k]] for k in top if distance[j, k] >= 1
            )
    return percentile, words


def score_orders(
    orders: pl.DataFrame,
    customers: pl.DataFrame,
    store_countries: dict[str, str],
    as_of: date,
    settings: RiskSettings = RiskSettings(),
) -> pl.DataFrame:
    """Risk score, flag and reasons of every order of the last `lookback_days` before
    as_of (SCORE_SCHEMA), highest risk first."""
    settings.validate()
    features = order_features(orders, customers, store_countries, as_of, settings)
    start = as_of - timedelta(days=settings.lookback_days)
    scored = features.filter(pl.col("created_at").cast(pl.Date) >= start)
    if scored.is_empty():
        return pl.DataFrame(schema=SCORE_SCHEMA)
    points, reasons, fired = _rules(scored, settings)
    percentile, words = _anomaly(scored, settings)
    top = 1 - settings.anomaly_top_share
    pct = np.nan_to_num(percentile, nan=0.0)
    anomaly_points = np.where(
        pct >= top, settings.anomaly_points * (pct - top) / settings.anomaly_top_share, 0.0
    )
    for i in np.flatnonzero(anomaly_points >= settings.anomaly_points / 2):
        if words[i]:
            reasons[i].append(f"unusual for this store ({words[i]})")
            fired[i].append("unusual")
    score = np.minimum(points + anomaly_points, 100.0)
    flagged = (score >= settings.flag_score) & np.array([bool(r) for r in reasons])
    return (
        scored.select(
            "store_id", "order_id", "customer_id", "created_at", "total_usd", "payment_method"
        )  # fmt: skip
        .with_columns(
            pl.Series("risk_score", np.round(score, 1)),
            pl.Series("flagged", flagged),
            pl.Series("flags", ["; ".join(r) if r else None for r in reasons], dtype=pl.String),
            pl.Series("rules", [",".join(r) if r else None for r in fired], dtype=pl.String),
            pl.Series("anomaly_percentile", percentile),
            pl.lit(False).alias("to_review"),
            pl.lit(MODEL_VERSION).alias("model_version"),
        )
        .cast(SCORE_SCHEMA)
        .sort(["store_id", "risk_score", "created_at"], descending=[False, True, True])
    )


def orders_to_review(
    scores: pl.DataFrame, open_orders: pl.DataFrame, as_of: date, review_days: int
) -> pl.DataFrame:
    """scores with `to_review` set on the flagged orders of the last `review_days` that
    are still open (open_orders: store_id, order_id of orders not cancelled, refunded or
    voided): the list a merchant checks before shipping."""
    since = as_of - timedelta(days=review_days)
    is_open = scores.select("store_id", "order_id").join(
        open_orders.select("store_id", "order_id").with_columns(pl.lit(True).alias("_open")),
        on=["store_id", "order_id"],
        how="left",
        maintain_order="left",
    )["_open"]
    return scores.with_columns(
        (
            pl.col("flagged")
            & (pl.col("created_at").cast(pl.Date) >= since)
            & is_open.fill_null(False)
        ).alias("to_review")
    )


def precision_at(scores: pl.DataFrame, risky_order_ids: set[tuple[str, str]], n: int) -> float:
    """Share of the n highest-scored orders that are truly risky (ties broken by time)."""
    if n <= 0:
        return float("nan")
    top = scores.sort(["risk_score", "created_at"], descending=[True, True]).head(n)
    hits = sum((s, o) in risky_order_ids for s, o in top.select("store_id", "order_id").iter_rows())
    return hits / n
