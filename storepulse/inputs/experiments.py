"""What the experiment readouts read from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import polars as pl

from storepulse.warehouse import query

ASSIGNMENTS = (
    "select store_id, experiment_id, experiment_name, variant, customer_id, assigned_at, "
    "primary_metric, start_date, end_date from staging.experiment_assignments "
    "where cast(assigned_at as date) < ?"
)
# Valid orders (sql/staging/valid_orders.sql) of the assigned customers only.
ORDERS = (
    "select o.store_id, o.customer_id, o.created_at, "
    "o.total_usd - coalesce(o.refunded_amount_usd, 0) as net_usd "
    "from staging.valid_orders o "
    "semi join (select distinct store_id, customer_id from staging.experiment_assignments) a "
    "on a.store_id = o.store_id and a.customer_id = o.customer_id "
    "where o.order_date < ?"
)
# For the next test: customers who ordered in the year before the last `period_days`,
# and whether they ordered again in those days (a conversion test's baseline).
RECENT_CONVERSION = """
with before as (
    select store_id, customer_id from staging.valid_orders
    where order_date >= ? and order_date < ? group by all
), during as (
    select store_id, customer_id from staging.valid_orders
    where order_date >= ? and order_date < ? group by all
)
select b.store_id, b.customer_id, (d.customer_id is not null)::int as converted
from before b left join during d using (store_id, customer_id)
"""


def load_assignments(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(con, ASSIGNMENTS, [as_of])


def load_orders(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(con, ORDERS, [as_of])


def load_recent_conversion(
    con: duckdb.DuckDBPyConnection, as_of: date, period_days: int
) -> pl.DataFrame:
    period_start = as_of - timedelta(days=period_days)
    year_before = period_start - timedelta(days=365)
    return query(con, RECENT_CONVERSION, [year_before, period_start, period_start, as_of])
