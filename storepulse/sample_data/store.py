"""Simulate one store end to end: products, customers, orders, inventory, ads, sessions, truth.

Everything here is in memory for one store only; the generator writes it and
moves on, so memory stays flat however many stores a scale has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from storepulse.ingest.channels import CHANNELS

from .markets import (
    CATEGORY_PRICE_FACTOR,
    CATEGORY_WEIGHTS,
    MARKETS,
    PRODUCT_WORDS,
)

MEAN_EXTRA_LINES = 0.3
MEMBER_EXTRA_LINES = 0.45  # members' baskets ~35 % larger
MEMBER_SHARE = 0.2
MEAN_EXTRA_QUANTITY = 0.15
WELCOME_DISCOUNT = 0.20
WELCOME_CODE_USE = 0.7
PRE_HISTORY_DAYS = 365
EXPECTED_DISCOUNT_SHARE = 0.12
CANCEL_RATE = 0.025
COD_EXTRA_CANCEL = 0.05
# Sessions come from every tracked channel; "other" is only what staging calls an
# unrecognised UTM tag.
SESSION_CHANNELS = [c for c in CHANNELS if c != "other"]
# Orders per session by last-click channel (search ~3.5 %, social ~2.8 %).
CHANNEL_CONVERSION = {
    "google": 0.035, "meta": 0.028, "tiktok": 0.026, "pinterest": 0.022, "email": 0.042,
    "organic": 0.027, "affiliate": 0.03, "influencer": 0.018, "direct": 0.032,
}  # fmt: skip
DEVICE_CONVERSION_FACTOR = {"mobile": 0.85, "desktop": 1.6, "tablet": 1.1}
TABLET_SESSION_SHARE = 0.04
# Last-click tags under-credit upper-funnel channels: share of caused first orders tagged otherwise.
LAST_CLICK_LEAK = {
    "tiktok": {"google": 0.30, "direct": 0.15},
    "meta": {"google": 0.15, "direct": 0.10},
    "pinterest": {"google": 0.10, "direct": 0.20},
    "google": {"direct": 0.05},
}
REPEAT_ORDER_CHANNELS = {
    "email": 0.33, "direct": 0.30, "organic": 0.17, "meta": 0.06, "google": 0.08, "affiliate": 0.03, "influencer": 0.03,
}  # fmt: skip
HOUR_WEIGHTS = np.array(
    [
        2,
        1.2,
        0.8,
        0.5,
        0.4,
        0.5,
        1,
        2,
        3,
        3.5,
        4,
        4.2,
        4.6,
        4.5,
        4.2,
        4.2,
        4.4,
        4.8,
        5.4,
        6.2,
        6.8,
        6.6,
        5.2,
        3.4,
    ]
)


@dataclass
class StoreProfile:
    store_id: str
    store_name: str
    country: str
    category: str
    target_customers: int
    n_skus: int
    real_exports: bool
    paid_channels: list[str]
    seed: np.random.SeedSequence
    history_days: int | None = None  # a young store: only this many days of history
    orders_only: bool = False  # ships orders.csv alone (no lines, customers, sessions, ads)

    @property
    def market(self):
        return MARKETS[self.country]


@dataclass
class StoreData:
    profile: StoreProfile
    customers: pl.DataFrame
    orders: pl.DataFrame  # canonical columns plus helper columns starting with "_"
    order_lines: pl.DataFrame  # canonical plus "_title", "_compare_at"
    products: pl.DataFrame
    inventory: pl.DataFrame
    ad_rows: pl.DataFrame  # canonical ad_spend in store currency plus "_channel"
    sessions: pl.DataFrame
    truth: dict[str, pl.DataFrame] = field(default_factory=dict)
    lift_tests: pl.DataFrame | None = None  # landing rows in the store's currency


def _zipf_exponent_for_pareto(n: int, top_share: float) -> float:
    """Exponent a so that the top 20 % of n items (weights rank^-a) hold top_share of the total."""
    ranks = np.arange(1, n + 1)
    low, high = 0.0, 4.0
    for _ in range(40):
        mid = (low + high) / 2
        w = ranks**-mid
        share = w[: max(1, n // 5)].sum() / w.sum()
        low, high = (mid, high) if share < top_share else (low, mid)
    return (low + high) / 2


def nice_price(local: np.ndarray) -> np.ndarray:
    """Retail price points: 19.99, 249.00, 1,290.00."""
    return np.where(
        local < 100,
        np.floor(local) + 0.99,
        np.where(local < 1000, np.round(local), np.round(local, -1)),
    )


def utc_offsets(tz_name: str, start: date, n_days: int) -> list[str]:
    """'+HH:MM' per day at local noon (DST changes at night, so noon is representative)."""
    tz = ZoneInfo(tz_name)
    out = []
    for i in range(n_days):
        moment = datetime.combine(start + timedelta(days=i), time(12), tzinfo=tz)
        minutes = int(moment.utcoffset().total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        out.append(f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    return out


def draw_products(
    rng, profile: StoreProfile, start: date, n_days: int, usd_per_unit0: float, aov_usd: float
):
    n = profile.n_skus
    other = [c for c in CATEGORY_WEIGHTS if c != profile.category]
    categories = np.where(rng.random(n) < 0.8, profile.category, rng.choice(other, n))
    exponent = _zipf_exponent_for_pareto(n, rng.uniform(0.74, 0.84))
    popularity = (np.arange(1, n + 1) ** -exponent)[rng.permutation(n)]
    popularity /= popularity.sum()
    expected_items = (1 + MEAN_EXTRA_LINES + MEMBER_SHARE * MEMBER_EXTRA_LINES) * (
        1 + MEAN_EXTRA_QUANTITY
    )
    price_factor = np.array([CATEGORY_PRICE_FACTOR[c] for c in categories])
    raw = rng.lognormal(0.0, 0.45, n) * price_factor
    # Order totals add tax and lose ~12 % to discounts (welcome offers on about half the orders).
    goods_per_order = aov_usd / (1 + profile.market.tax_rate) / (1 - EXPECTED_DISCOUNT_SHARE)
    raw *= goods_per_order / expected_items / (popularity * raw).sum()
    price = nice_price(raw / usd_per_unit0)
    margin = np.clip(rng.uniform(0.22, 0.45) + rng.normal(0, 0.05, n), 0.15, 0.6)
    unit_cost = np.round(price * (1 - margin), 2)
    launched_day = np.where(
        rng.random(n) < 0.85, -rng.integers(30, 730, n), rng.integers(30, max(31, n_days - 30), n)
    )
    prefix = "".join(word[0] for word in profile.store_name.split()[:2]).upper()
    skus = np.array([f"{prefix}-{c[:3].upper()}-{i + 1:05d}" for i, c in enumerate(categories)])
    titles = []
    for c in categories:
        adjectives, nouns = PRODUCT_WORDS[c]
        titles.append(
            f"{adjectives[rng.integers(len(adjectives))]} {nouns[rng.integers(len(nouns))]}"
        )
    return {
        "sku": skus,
        "title": np.array(titles, dtype=object),
        "category": categories,
        "price": price,
        "unit_cost": unit_cost,
        "margin": margin,
        "popularity": popularity,
        "launched_day": launched_day,
    }


@dataclass
class SimState:
    """What the steps of `simulate_store` hand each other: the inputs, then everything
    a step draws that a later step uses (one attribute per name of the original
    single function). The steps share one random stream, so their order is fixed."""

    profile: StoreProfile
    start: date
    n_days: int
    fx_usd_per_unit: np.ndarray
    mismatched_ad_currency: str | None

    def __getattr__(self, name: str):  # a step read something no earlier step set
        raise AttributeError(f"simulate_store: {name!r} is read before any step sets it")
