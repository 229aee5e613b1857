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

from .calendar import demand_multiplier
from .churn_drivers import EMERGING_GROWTH, ChurnDrivers
from .customers import PurchaseBehaviour, draw_arrivals, simulate_purchases
from .markets import (
    CATEGORY_PRICE_FACTOR,
    CATEGORY_REFUND_RATE,
    CATEGORY_WEIGHTS,
    CROSS_BORDER,
    MARKETS,
    PAYMENT_MIX,
    PRODUCT_WORDS,
)
from .media import (
    ATTRIBUTION_WINDOW_DAYS,
    CAMPAIGNS,
    LONG_WINDOW_DAYS,
    ChannelPlan,
    campaign_rows,
    plan_channel,
)
from .people import draw_identities

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
SESSION_CHANNELS = [
    "meta",
    "google",
    "tiktok",
    "pinterest",
    "email",
    "organic",
    "affiliate",
    "influencer",
    "direct",
]
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


def _nice_price(local: np.ndarray) -> np.ndarray:
    """Retail price points: 19.99, 249.00, 1,290.00."""
    return np.where(
        local < 100,
        np.floor(local) + 0.99,
        np.where(local < 1000, np.round(local), np.round(local, -1)),
    )


def _utc_offsets(tz_name: str, start: date, n_days: int) -> list[str]:
    """'+HH:MM' per day at local noon (DST changes at night, so noon is representative)."""
    tz = ZoneInfo(tz_name)
    out = []
    for i in range(n_days):
        moment = datetime.combine(start + timedelta(days=i), time(12), tzinfo=tz)
        minutes = int(moment.utcoffset().total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        out.append(f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    return out


def _draw_products(
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
    price = _nice_price(raw / usd_per_unit0)
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


def simulate_store(
    profile: StoreProfile,
    start: date,
    n_days: int,
    fx_usd_per_unit: np.ndarray,
    mismatched_ad_currency: str | None,
) -> StoreData:
    """Simulate one store's full history. fx_usd_per_unit is the store currency's daily rate."""
    rng = np.random.default_rng(profile.seed)
    market = profile.market
    day_index = np.arange(n_days)
    aov_usd = float(
        np.clip(
            rng.uniform(*market.aov_usd_range) * CATEGORY_PRICE_FACTOR[profile.category] ** 0.5,
            28,
            80,  # realised order totals land within a few dollars of this target
        )
    )
    products = _draw_products(rng, profile, start, n_days, float(fx_usd_per_unit[0]), aov_usd)
    n_skus = products["sku"].size

    # --- SKU demand weights per day: popularity x own seasonality x promotions x launched.
    phase = rng.uniform(0, 2 * np.pi, n_skus)
    amplitude = rng.uniform(0.0, 0.35, n_skus)
    season = 1 + amplitude * np.sin(2 * np.pi * day_index[:, None] / 365.0 + phase)
    promo = np.zeros((n_days, n_skus), dtype=bool)
    for s in range(n_skus):
        for first in rng.integers(0, n_days, rng.poisson(n_days / 150)):
            promo[first : first + 7, s] = True
    launched = day_index[:, None] >= products["launched_day"][None, :]
    weights = products["popularity"] * season * np.where(promo, 1.5, 1.0) * launched

    # --- Paid media plans and the customers they bring.
    behaviour = PurchaseBehaviour.draw(rng)
    # Planning estimate of a first order's total (USD); corrected to the realised mean further down.
    expected_items = (1 + MEAN_EXTRA_LINES + MEMBER_SHARE * MEMBER_EXTRA_LINES) * (
        1 + MEAN_EXTRA_QUANTITY
    )
    first_goods_usd = (
        expected_items
        * float((products["popularity"] * products["price"]).sum())
        * fx_usd_per_unit[0]
    )
    first_goods_usd *= 1 - WELCOME_DISCOUNT * WELCOME_CODE_USE
    first_order_value_guess = first_goods_usd * (1 + market.tax_rate) + 0.5 * market.shipping_fee
    # Paid media brings most new customers of a store that advertises (organic is 22-45 % of
    # traffic; email, direct, affiliate and influencer share the rest of the unpaid part).
    media_share = rng.uniform(0.55, 0.75)
    # The store existed before the export window: a year of earlier (unpaid) acquisitions gives
    # the window a base of returning customers instead of an empty shop on day one.
    full_calendar = demand_multiplier(
        profile.country, start - timedelta(days=PRE_HISTORY_DAYS), PRE_HISTORY_DAYS + n_days
    )
    full_calendar = full_calendar / full_calendar[PRE_HISTORY_DAYS:].mean()
    trend = np.exp(market.growth_per_year * np.arange(-PRE_HISTORY_DAYS, n_days) / 365.0)
    organic_curve = full_calendar * trend
    # target_customers is the number acquired inside the window; the earlier base comes on top.
    window_customers = profile.target_customers
    # Every channel gets a real share, so its effect is measurable even on tiny data.
    channel_share = 0.5 / len(profile.paid_channels) + 0.5 * rng.dirichlet(
        np.full(len(profile.paid_channels), 2.0)
    )
    # The true ROAS exactly: spend is rescaled once the caused customers' revenue is known.
    target_roas = np.exp(rng.uniform(np.log(1.8), np.log(7.5), len(profile.paid_channels)))
    plans: list[ChannelPlan] = []
    media_new: dict[str, np.ndarray] = {}
    for channel, share, roas in zip(profile.paid_channels, channel_share, target_roas, strict=True):
        revenue = media_share * window_customers * first_order_value_guess * share
        plan = plan_channel(rng, channel, start, n_days, revenue / roas, revenue)
        plans.append(plan)
        media_new[channel] = rng.poisson(plan.incremental_revenue_usd / first_order_value_guess)
    organic_rate = (
        organic_curve
        * window_customers
        * (1 - media_share)
        / organic_curve[PRE_HISTORY_DAYS:].sum()
    )
    no_media_yet = np.zeros(PRE_HISTORY_DAYS, dtype=np.int64)
    arrivals = draw_arrivals(
        rng,
        organic_rate,
        {channel: np.concatenate([no_media_yet, counts]) for channel, counts in media_new.items()},
    )
    n_customers = arrivals.acquisition_day.size

    # --- Customer attributes (drawn before purchasing: some of them drive churn).
    neighbours = [c for c in CROSS_BORDER[market.region] if c != profile.country]
    countries = np.full(n_customers, profile.country, dtype=object)
    if neighbours:
        abroad = rng.random(n_customers) < rng.uniform(0.08, 0.2)
        countries[abroad] = rng.choice(neighbours, abroad.sum())
    identities = draw_identities(rng, countries, np.arange(n_customers) + 1)
    is_member = rng.random(n_customers) < MEMBER_SHARE
    email_consent = rng.random(n_customers) < rng.uniform(0.44, 0.56)
    ad_consent = rng.random(n_customers) < rng.uniform(0.34, 0.46)
    sms_consent = rng.random(n_customers) < rng.uniform(0.12, 0.25)
    methods = [m for m, _ in PAYMENT_MIX[profile.country]]
    method_p = np.array([w for _, w in PAYMENT_MIX[profile.country]])
    method_p = method_p / method_p.sum()
    preferred_payment = rng.choice(len(methods), n_customers, p=method_p)
    mobile_sessions = float(np.clip(market.mobile_share + rng.normal(0, 0.015), 0.775, 0.825))
    session_device_share = np.array(
        [mobile_sessions, 1 - mobile_sessions - TABLET_SESSION_SHARE, TABLET_SESSION_SHARE]
    )
    order_device_p = session_device_share * np.array(list(DEVICE_CONVERSION_FACTOR.values()))
    order_device_p /= order_device_p.sum()
    devices = np.array(list(DEVICE_CONVERSION_FACTOR), dtype=object)
    preferred_device = rng.choice(3, n_customers, p=order_device_p)

    # --- The first order of every customer (also of those acquired before the window),
    # drawn up front because how it went drives how likely the customer is to stay.
    is_cod_method = np.array([m == "cod" for m in methods])
    first_payment = np.where(
        rng.random(n_customers) < 0.8,
        preferred_payment,
        rng.choice(len(methods), n_customers, p=method_p),
    )
    first_cod = is_cod_method[first_payment]
    first_cancelled = rng.random(n_customers) < CANCEL_RATE + COD_EXTRA_CANCEL * first_cod
    refund_rate = float(
        np.clip(CATEGORY_REFUND_RATE[profile.category] * rng.uniform(0.9, 1.15), 0.075, 0.105)
    )
    first_refunded = ~first_cancelled & (rng.random(n_customers) < refund_rate)
    first_welcome = rng.random(n_customers) < WELCOME_CODE_USE
    first_lines = 1 + rng.poisson(MEAN_EXTRA_LINES + MEMBER_EXTRA_LINES * is_member)
    emerging = np.array([MARKETS[c].growth_per_year > EMERGING_GROWTH for c in countries])
    drivers = ChurnDrivers.draw(rng)
    dropout_shift, rate_shift = drivers.shifts(
        channel=arrivals.acquisition_channel,
        first_order_discount=first_welcome,
        first_order_cod=first_cod,
        first_order_refunded=first_refunded,
        email_consent=email_consent,
        first_order_items=first_lines,
        emerging_market=emerging,
    )
    history = simulate_purchases(rng, full_calendar, arrivals, behaviour, dropout_shift, rate_shift)
    acquisition_day = history.acquisition_day - PRE_HISTORY_DAYS  # negative: before the window
    has_dropout = history.dropout_day >= 0
    dropout_day = history.dropout_day - PRE_HISTORY_DAYS
    in_window = history.order_day >= PRE_HISTORY_DAYS
    # Per-order cancellation chance of a later order (80 % on the preferred method).
    cod_share = float(method_p[is_cod_method].sum())
    repeat_cod = 0.8 * is_cod_method[preferred_payment] + 0.2 * cod_share
    cancel_probability = CANCEL_RATE + COD_EXTRA_CANCEL * repeat_cod

    # --- Orders: time of day, basket size.
    order_customer = history.order_customer[in_window]
    order_day = history.order_day[in_window] - PRE_HISTORY_DAYS
    is_first = history.order_is_first[in_window]
    n_orders = order_customer.size
    seconds = (
        rng.choice(24, n_orders, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum()) * 3600
        + rng.integers(0, 3600, n_orders)
    ).astype(np.int64)
    # A customer's first order is their earliest of the day.
    seconds = np.where(is_first, seconds // 2, seconds)
    sort = np.lexsort((seconds, order_day))
    order_customer, order_day, seconds = order_customer[sort], order_day[sort], seconds[sort]
    is_first = is_first[sort]
    member = is_member[order_customer]
    n_lines = 1 + rng.poisson(MEAN_EXTRA_LINES + MEMBER_EXTRA_LINES * member)
    n_lines = np.where(is_first, first_lines[order_customer], n_lines)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    line_no = np.arange(line_order.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines) + 1
    quantity = 1 + rng.poisson(MEAN_EXTRA_QUANTITY, line_order.size)
    line_day = order_day[line_order]

    # --- True SKU demand (before censoring) and inventory, day by day.
    expected_items_per_order = (1 + MEAN_EXTRA_LINES + MEMBER_EXTRA_LINES * member) * (
        1 + MEAN_EXTRA_QUANTITY
    )
    expected_items_per_day = np.bincount(
        order_day, weights=expected_items_per_order, minlength=n_days
    )
    weight_sum = weights.sum(axis=1, keepdims=True)
    expected_units = expected_items_per_day[:, None] * np.divide(
        weights, weight_sum, out=np.zeros_like(weights), where=weight_sum > 0
    )
    lived = np.maximum(launched.sum(axis=0), 1)
    mean_daily = np.maximum(expected_units.sum(axis=0) / lived, 0.02)

    has_local = rng.random(n_skus) < 0.8
    has_direct = ~has_local | (rng.random(n_skus) < 0.3)
    stocked = np.stack([has_local, has_direct], axis=1)
    slot_share = np.where(
        stocked.all(axis=1, keepdims=True), np.array([0.75, 0.25]), stocked.astype(float)
    )
    slot_demand = mean_daily[:, None] * slot_share
    lead_time = np.stack([rng.integers(20, 46, n_skus), rng.integers(7, 16, n_skus)], axis=1)
    safety_days = rng.uniform(8, 25, (n_skus, 2))
    cover_days = rng.uniform(25, 90, (n_skus, 2))
    # Planned on 1.3x the mean rate: merchants stock up for peaks, yet long delays still run dry.
    reorder_point = 1.3 * slot_demand * (lead_time + safety_days)
    # Suppliers have minimum order quantities, so slow movers arrive in lots that last months.
    minimum_order = rng.choice([12, 24, 50], (n_skus, 2))
    reorder_qty = np.maximum(np.ceil(slot_demand * cover_days), minimum_order)
    reorder_point = np.maximum(reorder_point, 3)
    dead_stock = rng.random(n_skus) < 0.08
    stock = np.where(
        stocked & (products["launched_day"] < 0)[:, None],
        np.ceil(reorder_point + slot_demand * rng.uniform(5, 40, (n_skus, 2))),
        0.0,
    )
    stock[dead_stock] = np.ceil(
        stocked[dead_stock]
        * np.maximum(slot_demand[dead_stock], 0.05)
        * rng.uniform(250, 500, (dead_stock.sum(), 2))
    )
    pending_qty = np.zeros((n_skus, 2))
    arrival_day = np.full((n_skus, 2), -1)
    launch_arrival = (products["launched_day"] >= 0)[:, None] & stocked
    arrival_day[launch_arrival] = np.broadcast_to(products["launched_day"][:, None], (n_skus, 2))[
        launch_arrival
    ]
    pending_qty[launch_arrival] = reorder_qty[launch_arrival]

    # A supplier disruption hits a few SKUs: their first reorder after that day takes three times
    # as long, so every store has some censored stockout days.
    eligible = np.flatnonzero((products["launched_day"] < 0) & ~dead_stock)
    best_sellers = eligible[np.argsort(-products["popularity"][eligible])][
        : max(2, eligible.size // 3)
    ]
    disrupted = rng.permutation(best_sellers)[: max(1, n_skus // 10)]
    disruption_day = np.full(n_skus, n_days + 1)
    disruption_day[disrupted] = rng.integers(n_days // 10, n_days // 2, disrupted.size)

    opening_stock = np.zeros((n_days, n_skus, 2), dtype=np.int64)
    in_stock = np.zeros((n_days, n_skus), dtype=bool)
    line_sku = np.zeros(line_order.size, dtype=np.int64)
    line_bounds = np.searchsorted(line_day, np.arange(n_days + 1))
    for d in range(n_days):
        arriving = arrival_day == d
        stock[arriving] += pending_qty[arriving]
        arrival_day[arriving] = -1
        opening_stock[d] = stock
        available = stock.sum(axis=1) > 0
        in_stock[d] = available & launched[d]
        lo, hi = line_bounds[d], line_bounds[d + 1]
        if hi > lo:
            w = weights[d] * in_stock[d]
            if w.sum() <= 0:  # everything sold out: people still buy what is launched (oversell)
                w = weights[d] + 1e-12
            cdf = np.cumsum(w)
            picks = np.searchsorted(cdf, rng.random(hi - lo) * cdf[-1], side="right")
            picks = np.minimum(picks, n_skus - 1)
            line_sku[lo:hi] = picks
            units = np.bincount(picks, weights=quantity[lo:hi], minlength=n_skus)
            from_local = np.minimum(units, stock[:, 0])
            stock[:, 0] -= from_local
            stock[:, 1] = np.maximum(stock[:, 1] - (units - from_local), 0)
        needs = (
            stocked
            & (arrival_day < 0)
            & (stock <= reorder_point)
            & ~dead_stock[:, None]
            & (d >= products["launched_day"])[:, None]
        )
        if needs.any():
            delay = np.where(
                rng.random(needs.sum()) < 0.12, rng.uniform(1.3, 2.2, needs.sum()), 1.0
            )
            hit = (disruption_day <= d)[:, None] & needs
            delay = np.where(hit[needs], 3.0, delay)
            disruption_day[hit.any(axis=1)] = n_days + 1
            arrival_day[needs] = d + np.ceil(lead_time[needs] * delay).astype(int)
            pending_qty[needs] = reorder_qty[needs]

    # --- Money, in the store currency.
    # With few SKUs, launches and stockouts move the sales mix; rescale the price list once so
    # the store's average order lands on its target (demand above does not depend on price level).
    usd0 = float(fx_usd_per_unit[0])
    basket_local = np.bincount(
        line_order, weights=quantity * products["price"][line_sku], minlength=n_orders
    )
    expected_total = basket_local.mean() * (1 - EXPECTED_DISCOUNT_SHARE) * (1 + market.tax_rate)
    target_local = (aov_usd - 0.5 * market.shipping_fee) / usd0
    products["price"] = _nice_price(products["price"] * target_local / expected_total)
    products["unit_cost"] = np.round(products["price"] * (1 - products["margin"]), 2)
    price = products["price"]
    line_price = price[line_sku]
    on_promo = promo[line_day, line_sku]
    line_discount = np.round(np.where(on_promo, 0.2 * line_price * quantity, 0.0), 2)
    line_total = np.round(quantity * line_price - line_discount, 2)
    subtotal = np.round(np.bincount(line_order, weights=line_total, minlength=n_orders), 2)
    welcome = is_first & first_welcome[order_customer]
    coupon = ~welcome & (rng.random(n_orders) < 0.12)
    coupon_rate = rng.choice([0.10, 0.15], n_orders)
    vip = ~welcome & ~coupon & member & (rng.random(n_orders) < 0.4)
    discount_rate = np.where(
        welcome, WELCOME_DISCOUNT, np.where(coupon, coupon_rate, np.where(vip, 0.05, 0.0))
    )
    discount = np.round(subtotal * discount_rate, 2)
    discount_code = np.where(
        welcome,
        "WELCOME20",
        np.where(
            coupon, np.where(coupon_rate > 0.12, "SAVE15", "SAVE10"), np.where(vip, "VIP5", "")
        ),
    )
    free_threshold = _nice_price(np.array([1.1 * aov_usd / usd0]))[0]
    shipping_fee = (
        _nice_price(np.array([market.shipping_fee / usd0]))[0]
        if market.shipping_fee / usd0 < 100
        else np.round(market.shipping_fee / usd0)
    )
    shipping = np.where(subtotal - discount >= free_threshold, 0.0, shipping_fee)
    tax = np.round(market.tax_rate * (subtotal - discount), 2)
    total = np.round(subtotal - discount + shipping + tax, 2)
    total_usd = total * fx_usd_per_unit[order_day]

    payment_index = np.where(
        rng.random(n_orders) < 0.8,
        preferred_payment[order_customer],
        rng.choice(len(methods), n_orders, p=method_p),
    )
    payment_index = np.where(is_first, first_payment[order_customer], payment_index)
    payment_method = np.array(methods, dtype=object)[payment_index]
    is_cod = payment_method == "cod"
    # COD parcels get refused.
    cancelled = rng.random(n_orders) < CANCEL_RATE + COD_EXTRA_CANCEL * is_cod
    cancelled = np.where(is_first, first_cancelled[order_customer], cancelled)
    refunded = ~cancelled & (rng.random(n_orders) < refund_rate)
    refunded = np.where(is_first, first_refunded[order_customer], refunded)
    partial = refunded & (n_lines > 1) & (rng.random(n_orders) < 0.4)
    first_line = np.cumsum(n_lines) - n_lines
    refunded_amount = np.where(
        partial, np.minimum(line_total[first_line], total), np.where(refunded, total, 0.0)
    )
    days_before_end = n_days - 1 - order_day
    status = np.full(n_orders, "paid", dtype=object)
    status[is_cod & (days_before_end < 7)] = "pending"
    status[(payment_method == "card") & (days_before_end < 2) & (rng.random(n_orders) < 0.3)] = (
        "authorized"
    )
    status[refunded] = "refunded"
    status[partial] = "partially_refunded"
    status[cancelled] = "voided"
    refunded_amount = np.where(cancelled, 0.0, refunded_amount)

    # --- Channels: what caused the order vs what the last click says.
    customer_channel = history.acquisition_channel[order_customer]
    repeat_names = list(REPEAT_ORDER_CHANNELS)
    repeat_p = np.array(list(REPEAT_ORDER_CHANNELS.values()))
    repeat_channel = np.array(repeat_names, dtype=object)[
        rng.choice(len(repeat_names), n_orders, p=repeat_p / repeat_p.sum())
    ]
    true_channel = np.where(is_first, customer_channel, repeat_channel)
    last_click = true_channel.copy()
    leak_draw = rng.random(n_orders)
    for channel, leaks in LAST_CLICK_LEAK.items():
        caused = is_first & (customer_channel == channel)
        cumulative = 0.0
        for tagged_as, share in leaks.items():
            hit = caused & (leak_draw >= cumulative) & (leak_draw < cumulative + share)
            last_click[hit] = tagged_as
            cumulative += share
    utm_source, utm_medium, utm_campaign = _utm_tags(rng, last_click, start, order_day)
    device = np.where(
        rng.random(n_orders) < 0.6,
        devices[preferred_device[order_customer]],
        devices[rng.choice(3, n_orders, p=order_device_p)],
    )

    # --- Calibrate the truth: what the customers a channel caused really spent in the
    # attribution window (first order and repeat orders, cancelled ones excluded) replaces
    # the planning guess; spend is rescaled with it so the true ROAS is the drawn target.
    realised_first_value = float(total_usd[is_first].mean())
    kept_usd = np.where(cancelled, 0.0, total_usd)
    order_acquired = acquisition_day[order_customer]
    attributed = order_day - order_acquired <= ATTRIBUTION_WINDOW_DAYS
    long_window = order_day - order_acquired <= LONG_WINDOW_DAYS
    # Customers whose whole window lies inside the export (the last month's is cut short).
    complete = order_acquired < n_days - LONG_WINDOW_DAYS
    order_channel = history.acquisition_channel[order_customer]
    paid = np.isin(order_channel, [p.channel for p in plans]) & complete
    for plan, roas in zip(plans, target_roas, strict=True):
        mine = (order_channel == plan.channel) & complete
        if not (mine & is_first).any():
            mine = paid if (paid & is_first).any() else is_first
        caused = float((mine & is_first).sum())
        first_value = kept_usd[mine & is_first].sum() / caused
        window_value = kept_usd[mine & attributed].sum() / caused
        factor = window_value / first_order_value_guess
        plan.calibrate(revenue_factor=factor, spend_factor=factor)
        plan.first_order_roas = float(roas * first_value / window_value)
        plan.long_window_roas = float(
            roas * kept_usd[mine & long_window].sum() / caused / window_value
        )

    # --- Frames.
    sid = profile.store_id
    full_offsets = np.array(
        _utc_offsets(
            market.timezone, start - timedelta(days=PRE_HISTORY_DAYS), PRE_HISTORY_DAYS + n_days
        ),
        dtype=object,
    )
    offsets = full_offsets[PRE_HISTORY_DAYS:]
    customer_ids = np.array([f"c{i + 1:07d}" for i in range(n_customers)], dtype=object)
    order_ids = np.array([f"{sid[:2].upper()}{100001 + i}" for i in range(n_orders)], dtype=object)
    order_first_seen = np.full(n_customers, -1, dtype=np.int64)
    first_rows = np.flatnonzero(is_first)
    order_first_seen[order_customer[first_rows]] = first_rows
    start_dt = datetime.combine(start, time(0))
    order_ts = pl.Series(
        (np.datetime64(start_dt, "s") + order_day * 86400 + seconds).astype("datetime64[ms]")
    )
    created_local = order_ts.dt.strftime("%Y-%m-%dT%H:%M:%S")
    created_at = created_local + pl.Series(offsets[order_day])
    cancel_seconds = np.where(cancelled, rng.integers(3600, 48 * 3600, n_orders), 0)
    cancelled_at = pl.Series(
        (np.datetime64(start_dt, "s") + order_day * 86400 + seconds + cancel_seconds).astype(
            "datetime64[ms]"
        )
    ).dt.strftime("%Y-%m-%dT%H:%M:%S") + pl.Series(offsets[order_day])
    orders = pl.DataFrame(
        {
            "store_id": sid,
            "order_id": order_ids,
            "customer_id": customer_ids[order_customer],
            "email": identities["email"][order_customer],
            "created_at": created_at,
            "currency": market.currency,
            "subtotal": subtotal,
            "discount": discount,
            "shipping": shipping,
            "tax": tax,
            "total": total,
            "financial_status": status,
            "refunded_amount": np.round(refunded_amount, 2),
            "cancelled_at": pl.Series(cancelled_at).set(pl.Series(~cancelled), None),
            "payment_method": payment_method,
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": utm_campaign,
            "device": device,
            "ship_country": countries[order_customer],
            "_day": order_day,
            "_is_first": is_first,
            "_last_click": last_click,
            "_true_channel": true_channel,
            "_discount_code": discount_code,
            "_total_usd": total_usd,
            "_customer_index": order_customer,
        }
    )
    order_lines = pl.DataFrame(
        {
            "store_id": sid,
            "order_id": order_ids[line_order],
            "line_no": line_no,
            "sku": products["sku"][line_sku],
            "quantity": quantity,
            "unit_price": line_price,
            "line_discount": line_discount,
            "_title": products["title"][line_sku],
            "_order_index": line_order,
        }
    )
    # Account creation: minutes before the first order; earlier customers at a random time of day.
    first_order_ts = order_ts.to_numpy()[order_first_seen]
    earlier_signup = (
        np.datetime64(start_dt, "s")
        + acquisition_day * 86400
        + rng.integers(6 * 3600, 23 * 3600, n_customers)
    ).astype(first_order_ts.dtype)
    first_order_ts = np.where(order_first_seen >= 0, first_order_ts, earlier_signup)
    signup_lead = rng.integers(60, 1800, n_customers).astype("timedelta64[s]")
    customer_created = pl.Series(
        (first_order_ts - signup_lead).astype("datetime64[ms]")
    ).dt.strftime("%Y-%m-%dT%H:%M:%S") + pl.Series(full_offsets[acquisition_day + PRE_HISTORY_DAYS])
    customers = pl.DataFrame(
        {
            "store_id": sid,
            "customer_id": customer_ids,
            "email": identities["email"],
            "phone": identities["phone"],
            "first_name": identities["first_name"],
            "last_name": identities["last_name"],
            "country": countries,
            "created_at": customer_created,
            "accepts_email_marketing": email_consent,
            "accepts_sms_marketing": sms_consent,
            "ad_personalization_consent": ad_consent,
        }
    )
    dates = np.datetime64(start, "D") + day_index
    products_frame = pl.DataFrame(
        {
            "store_id": sid,
            "sku": products["sku"],
            "title": products["title"],
            "category": products["category"],
            "price": products["price"],
            "unit_cost": products["unit_cost"],
            "launched_at": np.datetime64(start, "D") + products["launched_day"],
        }
    )
    warehouses = np.array([f"{profile.country}-3PL", "CN-DIRECT"])
    inv_day, inv_sku, inv_slot = np.nonzero(
        (day_index[:, None, None] >= products["launched_day"][None, :, None]) & stocked[None, :, :]
    )
    inventory = pl.DataFrame(
        {
            "snapshot_date": dates[inv_day],
            "store_id": sid,
            "sku": products["sku"][inv_sku],
            "warehouse": warehouses[inv_slot],
            "on_hand": opening_stock[inv_day, inv_sku, inv_slot],
            "lead_time_days": lead_time[inv_sku, inv_slot],
        }
    )
    ad_rows = _ad_rows(
        rng,
        profile,
        plans,
        media_new,
        start,
        fx_usd_per_unit,
        realised_first_value,
        mismatched_ad_currency,
    )
    sessions = _sessions(rng, sid, start, n_days, order_day, last_click, device, order_device_p)

    # BG/NBD expectation of orders in the first 365 days: the first order plus repeats while alive.
    rate, dropout = history.purchase_rate_per_day, history.dropout_probability
    expected_first_year_orders = 1 + (1 - dropout) / dropout * (1 - np.exp(-rate * dropout * 365))
    member_uplift = np.where(is_member, 1.35, 1.0)
    expected_first_year_spend = (
        expected_first_year_orders
        * float(total_usd[~is_first].mean() if (~is_first).any() else realised_first_value)
        * member_uplift
    )
    truth_customers = pl.DataFrame(
        {
            "store_id": sid,
            "customer_id": customer_ids,
            "email": identities["email"],
            "acquisition_date": np.datetime64(start, "D") + acquisition_day,
            "acquisition_channel": history.acquisition_channel,
            "purchase_rate_per_day": history.purchase_rate_per_day,
            "dropout_probability": history.dropout_probability,
            "cancel_probability": np.round(cancel_probability, 6),
            "purchase_rate_prior_mean": history.purchase_rate_prior_mean,
            "dropout_prior_mean": history.dropout_prior_mean,
            "dropout_date": pl.Series(np.datetime64(start, "D") + dropout_day).set(
                pl.Series(~has_dropout), None
            ),
            "is_high_value": expected_first_year_spend > 500,
        }
    )
    truth_channels = pl.DataFrame(
        {
            "store_id": sid,
            "channel": [p.channel for p in plans],
            "adstock_decay": [round(p.adstock_decay, 4) for p in plans],
            "saturation_kind": [p.saturation_kind for p in plans],
            "half_saturation_usd": [p.half_saturation_usd for p in plans],
            "hill_shape": [
                None if np.isnan(p.hill_shape) else round(p.hill_shape, 4) for p in plans
            ],
            "max_daily_revenue_usd": [p.max_daily_revenue_usd for p in plans],
            "platform_over_credit": [round(p.platform_over_credit, 4) for p in plans],
            "total_spend_usd": [float(p.spend_usd.sum()) for p in plans],
            "total_incremental_revenue_usd": [
                float(p.incremental_revenue_usd.sum()) for p in plans
            ],
            "true_roas": [
                float(p.incremental_revenue_usd.sum() / p.spend_usd.sum()) for p in plans
            ],
            "first_order_roas": [p.first_order_roas for p in plans],
            "roas_with_30d_repeats": [p.long_window_roas for p in plans],
        },
        schema_overrides={"hill_shape": pl.Float64},
    )
    truth_channel_daily = pl.concat(
        [
            pl.DataFrame(
                {
                    "store_id": sid,
                    "date": dates,
                    "channel": p.channel,
                    "spend_usd": np.round(p.spend_usd, 4),
                    "adstocked_spend_usd": np.round(p.adstocked_usd, 4),
                    "incremental_revenue_usd": np.round(p.incremental_revenue_usd, 4),
                }
            )
            for p in plans
        ]
    )
    demand_day, demand_sku = np.nonzero(np.ones((n_days, n_skus), dtype=bool))
    truth_sku_demand = pl.DataFrame(
        {
            "store_id": sid,
            "sku": products["sku"][demand_sku],
            "date": dates[demand_day],
            "expected_units": np.round(expected_units.ravel(), 5),
            "in_stock": in_stock.ravel(),
        }
    )
    return StoreData(
        profile=profile,
        customers=customers,
        orders=orders,
        order_lines=order_lines,
        products=products_frame,
        inventory=inventory,
        ad_rows=ad_rows,
        sessions=sessions,
        truth={
            "customers": truth_customers,
            "channels": truth_channels,
            "channel_daily": truth_channel_daily,
            "sku_demand": truth_sku_demand,
            "churn_drivers": pl.concat([drivers.frame(sid), behaviour.frame(sid)]),
            "demand_calendar": pl.DataFrame(
                {
                    "store_id": sid,
                    "date": np.datetime64(start, "D") + np.arange(-PRE_HISTORY_DAYS, n_days),
                    "demand_multiplier": full_calendar,
                }
            ),
        },
    )


def _utm_tags(rng, channel: np.ndarray, start: date, day: np.ndarray):
    n = channel.size
    source = np.full(n, "", dtype=object)
    medium = np.full(n, "", dtype=object)
    campaign = np.full(n, "", dtype=object)
    pick = rng.random(n)
    month = np.datetime_as_string(np.datetime64(start, "D") + day, unit="M")
    rules = {
        "meta": (np.where(pick < 0.6, "facebook", "instagram"), "paid_social", "prospecting_broad"),
        "google": (
            "google",
            "cpc",
            np.where(
                pick < 0.4, "search_generic", np.where(pick < 0.7, "pmax_all", "search_brand")
            ),
        ),
        "tiktok": ("tiktok", "paid_social", "spark_ugc"),
        "pinterest": ("pinterest", "paid_social", "catalog"),
        "email": ("klaviyo", "email", np.where(pick < 0.5, "welcome_flow", "newsletter")),
        "organic": (np.where(pick < 0.85, "google", "bing"), "organic", ""),
        "affiliate": (np.where(pick < 0.5, "awin", "impact"), "affiliate", "partner_program"),
        "influencer": (np.where(pick < 0.6, "instagram", "youtube"), "influencer", "kol_collab"),
    }
    for name, (src, med, camp) in rules.items():
        mask = channel == name
        source[mask] = np.broadcast_to(np.asarray(src, dtype=object), n)[mask]
        medium[mask] = med
        campaign[mask] = np.broadcast_to(np.asarray(camp, dtype=object), n)[mask]
    newsletter = campaign == "newsletter"
    campaign[newsletter] = np.char.add("newsletter_", month[newsletter].astype(str)).astype(object)
    return source, medium, campaign


def _ad_rows(
    rng,
    profile,
    plans,
    media_new,
    start,
    fx_usd_per_unit,
    mean_order_value_usd,
    mismatched_ad_currency,
):
    market = profile.market
    cpm_factor = {"na": 1.0, "eu": 0.8, "oceania": 0.9, "sea": 0.4, "latam": 0.45, "mena": 0.7}[
        market.region
    ]
    frames = []
    for plan in plans:
        rows = campaign_rows(
            rng, plan, start, media_new[plan.channel], mean_order_value_usd, cpm_factor
        )
        ad_currency = (
            mismatched_ad_currency
            if mismatched_ad_currency and plan.channel == "meta"
            else market.currency
        )
        to_local = (
            1.0 / fx_usd_per_unit[rows["day_index"]] if ad_currency == market.currency else 1.0
        )
        names = np.array(
            [f"{name} | {profile.country}" for name in CAMPAIGNS[plan.channel]], dtype=object
        )
        campaign_ids = rng.integers(10**9, 10**10, names.size).astype(str).astype(object)
        frames.append(
            pl.DataFrame(
                {
                    "date": np.datetime64(start, "D") + rows["day_index"],
                    "store_id": profile.store_id,
                    "platform": plan.channel,
                    "campaign_id": campaign_ids[rows["campaign_index"]],
                    "campaign_name": names[rows["campaign_index"]],
                    "country": profile.country,
                    "currency": ad_currency,
                    "spend": np.round(rows["spend_usd"] * to_local, 2),
                    "impressions": rows["impressions"],
                    "clicks": rows["clicks"],
                    "platform_conversions": rows["conversions"],
                    "platform_conversion_value": np.round(
                        rows["conversion_value_usd"] * to_local, 2
                    ),
                }
            )
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("date", "platform", "campaign_id")


def _sessions(rng, store_id, start, n_days, order_day, last_click, device, order_device_share):
    channels = np.array(SESSION_CHANNELS, dtype=object)
    device_names = list(DEVICE_CONVERSION_FACTOR)
    channel_lookup = {name: i for i, name in enumerate(SESSION_CHANNELS)}
    device_lookup = {name: i for i, name in enumerate(device_names)}
    channel_index = np.array([channel_lookup[c] for c in last_click], dtype=np.int64)
    device_index = np.array([device_lookup[d] for d in device], dtype=np.int64)
    counts = np.zeros((n_days, len(channels), 3), dtype=np.int64)
    np.add.at(counts, (order_day, channel_index, device_index), 1)
    # Traffic follows the expected orders per day and channel (a 15-day smooth), split by the
    # store's device mix, so session shares do not swing with a few heavy buyers' devices.
    kernel = np.ones(15) / 15
    per_channel = counts.sum(axis=2)
    smooth = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="same"), 0, per_channel)
    expected_orders = (0.3 * per_channel + 0.7 * smooth)[:, :, None] * order_device_share[
        None, None, :
    ]
    rate = (
        np.array([CHANNEL_CONVERSION[c] for c in channels])[None, :, None]
        * np.array(list(DEVICE_CONVERSION_FACTOR.values()))[None, None, :]
    )
    sessions = np.maximum(rng.poisson(expected_orders / rate), counts)
    # Checkouts started but not paid, payment failures (8-28 %) included.
    abandonment = rng.uniform(0.35, 0.55)
    extra_checkout = rng.binomial(
        sessions - counts, np.clip(rate * abandonment / (1 - abandonment) / (1 - rate), 0, 1)
    )
    checkout = counts + extra_checkout
    extra_cart = rng.binomial(sessions - checkout, np.clip(rate * 2.2 / (1 - rate), 0, 1))
    cart = checkout + extra_cart
    d, c, v = np.nonzero(sessions > 0)
    return pl.DataFrame(
        {
            "date": np.datetime64(start, "D") + d,
            "store_id": store_id,
            "channel": channels[c],
            "device": np.array(device_names, dtype=object)[v],
            "sessions": sessions[d, c, v],
            "add_to_cart": cart[d, c, v],
            "checkout_started": checkout[d, c, v],
            "orders": counts[d, c, v],
        }
    )
