"""What the partner scorecards read from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from storepulse.warehouse import query

# staging.ranked_orders: the valid orders (sql/staging/valid_orders.sql) with each
# customer's order number, so a partner's new customers are the ones whose first
# counted order carries its code. When the first order a customer placed was cancelled
# (a failed payment, a changed mind, then a new order), that placement is when the
# customer came: its code, campaign, channel and time ride along on the customer's first
# counted order as `placed_*` (null otherwise), and the scorecard credits the partner
# the customer came through.
ORDERS = """
with placed as (
    select store_id, customer_id, created_at, order_date, discount_code, utm_campaign,
        channel, is_cancelled,
        row_number() over (
            partition by store_id, customer_id order by created_at, order_id
        ) as placement
    from staging.orders
    where order_date < $as_of and customer_id is not null
)
select r.store_id, r.order_id, r.customer_id, r.created_at, r.order_date, r.total_usd,
    coalesce(r.refunded_amount_usd, 0) as refunded_amount_usd, r.discount_code,
    r.utm_campaign, r.channel, r.order_number,
    p.created_at as placed_created_at, p.order_date as placed_order_date,
    p.discount_code as placed_discount_code, p.utm_campaign as placed_utm_campaign,
    p.channel as placed_channel
from staging.ranked_orders r
left join placed p
    on r.order_number = 1 and p.placement = 1 and p.is_cancelled
    and p.store_id = r.store_id and p.customer_id = r.customer_id
where r.order_date < $as_of
"""
PARTNERS = (
    "select store_id, partner_id, partner_name, kind, platform, discount_code, utm_campaign, "
    "fixed_fee_usd, commission_rate, start_date, end_date from staging.partners"
)
AD_SPEND = (
    "select store_id, date, lower(platform) as platform, sum(spend_usd) as spend_usd "
    "from staging.ad_spend where date < ? group by all"
)


def load_orders(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(con, ORDERS, {"as_of": as_of})


def load_partners(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return query(con, PARTNERS)


def load_ad_spend(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(con, AD_SPEND, [as_of])
