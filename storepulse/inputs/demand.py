"""What the demand model reads from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from models import demand
from storepulse.warehouse import query


def load_history(con: duckdb.DuckDBPyConnection, as_of: date) -> demand.DemandHistory:
    """Staging orders, lines, inventory, products and stores strictly before as_of."""
    orders = query(
        con,
        "select store_id, order_id, order_date, is_cancelled, financial_status, subtotal, "
        "refunded_amount from staging.valid_orders where order_date < ?",
        [as_of],
    )
    lines = query(
        con,
        "select l.store_id, l.order_id, l.sku, l.quantity, l.unit_price_usd, l.line_discount_usd "
        "from staging.order_lines l join staging.valid_orders o using (store_id, order_id) "
        "where o.order_date < ?",
        [as_of],
    )
    inventory = load_inventory(con, as_of)
    products = query(
        con,
        "select store_id, sku, category, price_usd, unit_cost_usd, launched_at "
        "from staging.products",
    )
    stores = query(con, "select store_id, country from staging.stores")
    return demand.prepare_history(orders, lines, inventory, products, stores, as_of)


def load_inventory(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(
        con,
        "select snapshot_date, store_id, sku, warehouse, on_hand, lead_time_days "
        "from staging.inventory where snapshot_date < ?",
        [as_of],
    )
