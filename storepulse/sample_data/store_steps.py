"""The steps of simulating one store, in the order they draw from its random
stream (STEPS). Each reads what earlier steps left in the SimState and leaves
what later steps need."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from .calendar import demand_multiplier
from .churn_drivers import EMERGING_GROWTH, ChurnDrivers
from .customers import PurchaseBehaviour, draw_arrivals, simulate_purchases
from .markets import (
    CATEGORY_PRICE_FACTOR,
    CATEGORY_REFUND_RATE,
    CROSS_BORDER,
    MARKETS,
    PAYMENT_MIX,
)
from .media import (
    ATTRIBUTION_WINDOW_DAYS,
    LONG_WINDOW_DAYS,
    ChannelPlan,
    plan_channel,
)
from .people import draw_identities
from .store import (
    CANCEL_RATE,
    COD_EXTRA_CANCEL,
    DEVICE_CONVERSION_FACTOR,
    EXPECTED_DISCOUNT_SHARE,
    HOUR_WEIGHTS,
    LAST_CLICK_LEAK,
    MEAN_EXTRA_LINES,
    MEAN_EXTRA_QUANTITY,
    MEMBER_EXTRA_LINES,
    MEMBER_SHARE,
    PRE_HISTORY_DAYS,
    REPEAT_ORDER_CHANNELS,
    TABLET_SESSION_SHARE,
    WELCOME_CODE_USE,
    WELCOME_DISCOUNT,
    SimState,
    draw_products,
    nice_price,
)


def _setup(state: SimState) -> None:
    """Set up the store: random stream, products, target AOV."""
    (fx_usd_per_unit, n_days, profile, start) = (
        state.fx_usd_per_unit, state.n_days, state.profile, state.start)  # fmt: skip
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
    products = draw_products(rng, profile, start, n_days, float(fx_usd_per_unit[0]), aov_usd)
    n_skus = products["sku"].size
    (state.aov_usd, state.day_index, state.market, state.n_skus, state.products, state.rng) = (
        aov_usd, day_index, market, n_skus, products, rng)  # fmt: skip


def _sku_weights(state: SimState) -> None:
    """SKU demand weights per day: popularity x own seasonality x promotions x launched."""
    (day_index, n_days, n_skus, products, rng) = (
        state.day_index, state.n_days, state.n_skus, state.products, state.rng)  # fmt: skip
    phase = rng.uniform(0, 2 * np.pi, n_skus)
    amplitude = rng.uniform(0.0, 0.35, n_skus)
    season = 1 + amplitude * np.sin(2 * np.pi * day_index[:, None] / 365.0 + phase)
    promo = np.zeros((n_days, n_skus), dtype=bool)
    for s in range(n_skus):
        for first in rng.integers(0, n_days, rng.poisson(n_days / 150)):
            promo[first : first + 7, s] = True
    launched = day_index[:, None] >= products["launched_day"][None, :]
    weights = products["popularity"] * season * np.where(promo, 1.5, 1.0) * launched
    (state.launched, state.promo, state.weights) = (
        launched, promo, weights)  # fmt: skip


def _media_and_arrivals(state: SimState) -> None:
    """Paid media plans and the customers they bring."""
    (fx_usd_per_unit, market, n_days, products, profile, rng, start) = (
        state.fx_usd_per_unit, state.market, state.n_days, state.products, state.profile,
        state.rng, state.start)  # fmt: skip
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
    if not profile.paid_channels:  # a store that does not advertise (its organic share is all)
        media_share = 0.0
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
    n_channels = len(profile.paid_channels)
    channel_share = (
        0.5 / n_channels + 0.5 * rng.dirichlet(np.full(n_channels, 2.0)) if n_channels else []
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
    (state.arrivals, state.behaviour, state.first_order_value_guess, state.full_calendar,
     state.media_new, state.n_customers, state.plans, state.target_roas) = (
        arrivals, behaviour, first_order_value_guess, full_calendar, media_new, n_customers,
        plans, target_roas)  # fmt: skip


def _customer_attributes(state: SimState) -> None:
    """Customer attributes (drawn before purchasing: some of them drive churn)."""
    (market, n_customers, profile, rng) = (
        state.market, state.n_customers, state.profile, state.rng)  # fmt: skip
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
    (state.ad_consent, state.countries, state.devices, state.email_consent, state.identities,
     state.is_member, state.method_p, state.methods, state.order_device_p,
     state.preferred_device, state.preferred_payment, state.sms_consent) = (
        ad_consent, countries, devices, email_consent, identities, is_member, method_p, methods,
        order_device_p, preferred_device, preferred_payment, sms_consent)  # fmt: skip


def _first_orders_and_lifetimes(state: SimState) -> None:
    """The first order of every customer (also of those acquired before the window), drawn up front because how it went drives how likely the customer is to stay."""
    (arrivals, behaviour, countries, email_consent, full_calendar, is_member, method_p,
     methods, n_customers, preferred_payment, profile, rng) = (
        state.arrivals, state.behaviour, state.countries, state.email_consent,
        state.full_calendar, state.is_member, state.method_p, state.methods, state.n_customers,
        state.preferred_payment, state.profile, state.rng)  # fmt: skip
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
    (state.acquisition_day, state.cancel_probability, state.drivers, state.dropout_day,
     state.first_cancelled, state.first_lines, state.first_payment, state.first_refunded,
     state.first_welcome, state.has_dropout, state.history, state.in_window, state.refund_rate) = (
        acquisition_day, cancel_probability, drivers, dropout_day, first_cancelled, first_lines,
        first_payment, first_refunded, first_welcome, has_dropout, history, in_window, refund_rate)  # fmt: skip


def _baskets(state: SimState) -> None:
    """Orders: time of day, basket size."""
    (first_lines, history, in_window, is_member, rng) = (
        state.first_lines, state.history, state.in_window, state.is_member, state.rng)  # fmt: skip
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
    (state.is_first, state.line_day, state.line_no, state.line_order, state.member,
     state.n_lines, state.n_orders, state.order_customer, state.order_day, state.quantity,
     state.seconds) = (
        is_first, line_day, line_no, line_order, member, n_lines, n_orders, order_customer,
        order_day, quantity, seconds)  # fmt: skip


def _demand_and_inventory(state: SimState) -> None:
    """True SKU demand (before censoring) and inventory, day by day."""
    (launched, line_day, line_order, member, n_days, n_skus, order_day, products, quantity,
     rng, weights) = (
        state.launched, state.line_day, state.line_order, state.member, state.n_days,
        state.n_skus, state.order_day, state.products, state.quantity, state.rng, state.weights)  # fmt: skip
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
    (state.expected_units, state.hit, state.in_stock, state.lead_time, state.line_sku,
     state.opening_stock, state.stocked) = (
        expected_units, hit, in_stock, lead_time, line_sku, opening_stock, stocked)  # fmt: skip


def _money(state: SimState) -> None:
    """Money, in the store currency. With few SKUs, launches and stockouts move the sales mix; rescale the price list once so the store's average order lands on its target (demand above does not depend on price level)."""
    (aov_usd, first_cancelled, first_payment, first_refunded, first_welcome, fx_usd_per_unit,
     is_first, line_day, line_order, line_sku, market, member, method_p, methods, n_days,
     n_lines, n_orders, order_customer, order_day, preferred_payment, products, promo,
     quantity, refund_rate, rng) = (
        state.aov_usd, state.first_cancelled, state.first_payment, state.first_refunded,
        state.first_welcome, state.fx_usd_per_unit, state.is_first, state.line_day,
        state.line_order, state.line_sku, state.market, state.member, state.method_p,
        state.methods, state.n_days, state.n_lines, state.n_orders, state.order_customer,
        state.order_day, state.preferred_payment, state.products, state.promo, state.quantity,
        state.refund_rate, state.rng)  # fmt: skip
    usd0 = float(fx_usd_per_unit[0])
    basket_local = np.bincount(
        line_order, weights=quantity * products["price"][line_sku], minlength=n_orders
    )
    expected_total = basket_local.mean() * (1 - EXPECTED_DISCOUNT_SHARE) * (1 + market.tax_rate)
    target_local = (aov_usd - 0.5 * market.shipping_fee) / usd0
    products["price"] = nice_price(products["price"] * target_local / expected_total)
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
    free_threshold = nice_price(np.array([1.1 * aov_usd / usd0]))[0]
    shipping_fee = (
        nice_price(np.array([market.shipping_fee / usd0]))[0]
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
    (state.cancelled, state.discount, state.discount_code, state.line_discount,
     state.line_price, state.payment_method, state.refunded_amount, state.shipping,
     state.status, state.subtotal, state.tax, state.total, state.total_usd) = (
        cancelled, discount, discount_code, line_discount, line_price, payment_method,
        refunded_amount, shipping, status, subtotal, tax, total, total_usd)  # fmt: skip


def _channels(state: SimState) -> None:
    """Channels: what caused the order vs what the last click says."""
    (devices, history, is_first, n_orders, order_customer, order_day, order_device_p,
     preferred_device, rng, start) = (
        state.devices, state.history, state.is_first, state.n_orders,
        state.order_customer, state.order_day, state.order_device_p, state.preferred_device,
        state.rng, state.start)  # fmt: skip
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
    (state.device, state.last_click, state.true_channel, state.utm_campaign,
     state.utm_medium, state.utm_source) = (
        device, last_click, true_channel, utm_campaign, utm_medium, utm_source)  # fmt: skip


def _calibrate_truth(state: SimState) -> None:
    """Calibrate the truth: what the customers a channel caused really spent in the attribution window (first order and repeat orders, cancelled ones excluded) replaces the planning guess; spend is rescaled with it so the true ROAS is the drawn target."""
    (acquisition_day, cancelled, first_order_value_guess, history, is_first, n_days,
     order_customer, order_day, plans, target_roas, total_usd) = (
        state.acquisition_day, state.cancelled, state.first_order_value_guess,
        state.history, state.is_first, state.n_days, state.order_customer, state.order_day,
        state.plans, state.target_roas, state.total_usd)  # fmt: skip
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
    state.realised_first_value = realised_first_value


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


# In the order they draw from the store's random stream.
STEPS = (
    _setup, _sku_weights, _media_and_arrivals, _customer_attributes,
    _first_orders_and_lifetimes, _baskets, _demand_and_inventory, _money, _channels,
    _calibrate_truth,
)  # fmt: skip
