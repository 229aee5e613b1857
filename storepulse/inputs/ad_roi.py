"""What the ad-ROI model reads from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from storepulse.warehouse import query, set_as_of


def load_inputs(con, as_of: date) -> dict[str, pl.DataFrame | None]:
    """Daily revenue, spend, last-click revenue and event days, strictly before as_of."""
    set_as_of(con, as_of)
    daily_revenue = query(
        con,
        "select store_id, order_date as date, sum(total_usd) as revenue_usd "
        "from staging.valid_orders where order_date < getvariable('as_of') "
        "group by 1, 2 order by 1, 2",
    )
    daily_spend = query(
        con,
        "select store_id, date, lower(platform) as channel, sum(spend_usd) as spend_usd, "
        "sum(platform_conversion_value_usd) as platform_conversion_value_usd "
        "from staging.ad_spend where date < getvariable('as_of') and spend_usd is not null "
        "group by 1, 2, 3 order by 1, 2, 3",
    )
    last_click = query(
        con,
        "select store_id, order_date as date, channel, sum(total_usd) as revenue_usd "
        "from staging.valid_orders where order_date < getvariable('as_of') "
        "group by 1, 2, 3",
    )
    stores = query(con, "select distinct store_id, country from staging.stores")
    return {
        "daily_revenue": daily_revenue,
        "daily_spend": daily_spend,
        "last_click": last_click,
        "events": _event_days(daily_revenue, stores, as_of),
    }


def _event_days(daily_revenue: pl.DataFrame, stores: pl.DataFrame, as_of: date):
    """store_id, date, event from models.events (None when it is unavailable)."""
    try:
        from models.events import event_calendar
    except ImportError:  # the model falls back to its own calendar features
        return None
    if daily_revenue.is_empty() or stores.is_empty():
        return None
    calendar = event_calendar(
        daily_revenue["date"].min(), as_of + timedelta(days=60), stores["country"].to_list()
    )
    return (
        calendar.join(stores, on="country")
        .select("store_id", "date", "event")
        .unique()
        .sort("store_id", "date", "event")
    )
