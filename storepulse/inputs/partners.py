"""What the partner scorecards read from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from storepulse.warehouse import query

# staging.ranked_orders: the valid orders (sql/staging/valid_orders.sql) with each
# customer's order number, so a partner's new customers are the ones whose first
# counted order carries its code.
ORDERS = (
    "select store_id, order_id, customer_id, created_at, order_date, total_usd, "
    "coalesce(refunded_amount_usd, 0) as refunded_amount_usd, discount_code, utm_campaign, "
    "channel, order_number from staging.ranked_orders where order_date < ?"
)
PARTNERS = (
    "select store_id, partner_id, partner_name, kind, platform, discount_code, utm_campaign, "
    "fixed_fee_usd, commission_rate, start_date, end_date from staging.partners"
)
AD_SPEND = (
    "select store_id, date, lower(platform) as platform, sum(spend_usd) as spend_usd "
    "from staging.ad_spend where date < ? group by all"
)


def load_orders(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(con, ORDERS, [as_of])


def load_partners(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return query(con, PARTNERS)


def load_ad_spend(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(con, AD_SPEND, [as_of])
