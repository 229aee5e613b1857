"""What the order-risk score reads from staging, strictly before as_of.

Every order counts here, cancelled ones too: a COD parcel refused at the door is a
cancelled order, and the customer's history of refusals is what the rule reads.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from storepulse.warehouse import query

ORDERS = (
    "select store_id, order_id, customer_id, created_at, total_usd, payment_method, "
    "ship_country, billing_country, financial_status, "
    # A cancelled order without a timestamp counts as cancelled when it was placed.
    "case when is_cancelled then coalesce(cancelled_at, created_at) end as cancelled_at "
    "from staging.orders where order_date < ?"
)
CUSTOMERS = "select store_id, customer_id, phone, created_at from staging.customers"
STORES = "select store_id, country from staging.stores"
# Open: not cancelled, nothing refunded or voided yet (not shipped is not in the data).
OPEN_ORDERS = (
    "select store_id, order_id from staging.orders where order_date < ? and order_date >= ? "
    "and not is_cancelled and coalesce(refunded_amount, 0) = 0 "
    "and coalesce(lower(financial_status), 'paid') in ('paid', 'pending', 'authorized')"
)


def _of_store(sql: str, params: list, store: str | None) -> tuple[str, list]:
    """The query, or the same query for one store only (the same rows in the same order):
    a per-store run and the store-by-store nightly step read nothing else."""
    if store is None:
        return sql, params
    return f"select * from ({sql}) where store_id = ?", [*params, store]


def load_orders(
    con: duckdb.DuckDBPyConnection, as_of: date, store: str | None = None
) -> pl.DataFrame:
    return query(con, *_of_store(ORDERS, [as_of], store))


def load_customers(con: duckdb.DuckDBPyConnection, store: str | None = None) -> pl.DataFrame:
    return query(con, *_of_store(CUSTOMERS, [], store))


def load_order_stores(con: duckdb.DuckDBPyConnection, as_of: date) -> list[str]:
    """The stores with an order before as_of."""
    rows = query(
        con, f"select distinct store_id from ({ORDERS}) where store_id is not null", [as_of]
    )
    return rows["store_id"].to_list()


def load_store_countries(
    con: duckdb.DuckDBPyConnection, store: str | None = None
) -> dict[str, str]:
    return {s: c for s, c in query(con, *_of_store(STORES, [], store)).iter_rows() if s is not None}


def load_open_orders(
    con: duckdb.DuckDBPyConnection, as_of: date, since: date, store: str | None = None
) -> pl.DataFrame:
    return query(con, *_of_store(OPEN_ORDERS, [as_of, since], store))
