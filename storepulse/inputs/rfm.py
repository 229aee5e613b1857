"""What the RFM segments read from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from storepulse.warehouse import query

ORDERS = (
    "select store_id, order_id, customer_id, order_date, created_at, total_usd, "
    "refunded_amount_usd, is_cancelled from staging.valid_orders where order_date < ?"
)


def load_orders(
    con: duckdb.DuckDBPyConnection, as_of: date, store: str | None = None
) -> pl.DataFrame:
    """Valid orders before as_of (of one store when `store` is given)."""
    if store is None:
        return query(con, ORDERS, [as_of])
    return query(con, f"{ORDERS} and store_id = ?", [as_of, store])


def customers_with_orders(con: duckdb.DuckDBPyConnection, as_of: date) -> int:
    """How many customers RFM must score: everyone with a valid order before as_of."""
    return query(
        con,
        "select count(*) as n from (select distinct store_id, customer_id "
        "from staging.valid_orders where order_date < ?)",
        [as_of],
    )["n"][0]
