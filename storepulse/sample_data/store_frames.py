"""A simulated store as landing frames (customers, orders, lines, products,
inventory, ads, sessions) and its ground truth."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import numpy as np
import polars as pl

from .lift_tests import draw_lift_tests, lift_test_rng
from .media import (
    CAMPAIGNS,
    campaign_rows,
)
from .store import (
    CHANNEL_CONVERSION,
    DEVICE_CONVERSION_FACTOR,
    PRE_HISTORY_DAYS,
    SESSION_CHANNELS,
    SimState,
    StoreData,
    utc_offsets,
)

CHANNEL_DAILY_SCHEMA = {
    "store_id": pl.String, "date": pl.Date, "channel": pl.String, "spend_usd": pl.Float64,
    "adstocked_spend_usd": pl.Float64, "incremental_revenue_usd": pl.Float64,
}  # fmt: skip


def landing_frames(state: SimState) -> StoreData:
    """Frames."""
    (acquisition_day, ad_consent, behaviour, cancel_probability, cancelled, countries,
     day_index, device, discount, discount_code, drivers, dropout_day, email_consent,
     expected_units, full_calendar, fx_usd_per_unit, has_dropout, history, identities,
     in_stock, is_first, is_member, last_click, lead_time, line_discount, line_no, line_order,
     line_price, line_sku, market, media_new, mismatched_ad_currency, n_customers, n_days,
     n_orders, n_skus, opening_stock, order_customer, order_day, order_device_p,
     payment_method, plans, products, profile, quantity, realised_first_value, refunded_amount,
     rng, seconds, shipping, sms_consent, start, status, stocked, subtotal, tax, total,
     total_usd, true_channel, utm_campaign, utm_medium, utm_source) = (
        state.acquisition_day, state.ad_consent, state.behaviour, state.cancel_probability,
        state.cancelled, state.countries, state.day_index, state.device, state.discount,
        state.discount_code, state.drivers, state.dropout_day, state.email_consent,
        state.expected_units, state.full_calendar, state.fx_usd_per_unit, state.has_dropout,
        state.history, state.identities, state.in_stock, state.is_first, state.is_member,
        state.last_click, state.lead_time, state.line_discount, state.line_no, state.line_order,
        state.line_price, state.line_sku, state.market, state.media_new,
        state.mismatched_ad_currency, state.n_customers, state.n_days, state.n_orders,
        state.n_skus, state.opening_stock, state.order_customer, state.order_day,
        state.order_device_p, state.payment_method, state.plans, state.products, state.profile,
        state.quantity, state.realised_first_value, state.refunded_amount, state.rng,
        state.seconds, state.shipping, state.sms_consent, state.start, state.status,
        state.stocked, state.subtotal, state.tax, state.total, state.total_usd,
        state.true_channel, state.utm_campaign, state.utm_medium, state.utm_source)  # fmt: skip
    sid = profile.store_id
    full_offsets = np.array(
        utc_offsets(
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
        [pl.DataFrame(schema=CHANNEL_DAILY_SCHEMA)]
        + [
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
    # Lift tests the store ran (a random stream of their own: nothing else changes).
    kept_usd = np.where(cancelled, 0.0, total_usd)
    lift_landing, lift_truth = draw_lift_tests(
        lift_test_rng(profile.seed),
        profile.store_id,
        start,
        {p.channel: (p.params(), p.spend_usd) for p in plans},
        np.bincount(order_day, weights=kept_usd, minlength=n_days),
        float(kept_usd[kept_usd > 0].mean()),
        market.currency,
        fx_usd_per_unit,
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
        lift_tests=lift_landing,
        truth={
            "lift_tests": lift_truth,
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
