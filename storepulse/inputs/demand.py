"""What the demand model reads from staging, strictly before as_of."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from models import demand
from storepulse.warehouse import query


def load_history(con: duckdb.DuckDBPyConnection, as_of: date) -> demand.DemandHistory:
    """Staging orders, lines, inventory, products and stores strictly before as_of.

    Read and prepared store by store, so memory follows the largest store, not the sum
    of all (issue #18); the result is the same as preparing every store at once."""
    stores = query(con, "select store_id, country from staging.stores")
    with_orders = query(
        con, "select distinct store_id from staging.valid_orders where order_date < ?", [as_of]
    )
    known = sorted(set(stores["store_id"].to_list()) | set(with_orders["store_id"].to_list()))
    if not known:
        return _store_history(con, as_of, None, stores)
    parts = [_store_history(con, as_of, store, stores) for store in known]
    return demand.concat_histories(parts, as_of)


def load_store_history(
    con: duckdb.DuckDBPyConnection, as_of: date, store: str
) -> demand.DemandHistory:
    """One store's part of load_history (for work that goes store by store)."""
    stores = query(con, "select store_id, country from staging.stores")
    return _store_history(con, as_of, store, stores)


def _store_history(
    con: duckdb.DuckDBPyConnection, as_of: date, store: str | None, stores: pl.DataFrame
) -> demand.DemandHistory:
    """One store's history (None: every store's, when there is no store to go by)."""
    orders = query(
        con,
        "select store_id, order_id, order_date, is_cancelled, financial_status, subtotal, "
        "refunded_amount from staging.valid_orders where order_date < ? and store_id = coalesce(?, store_id)",
        [as_of, store],
    )
    lines = query(
        con,
        "select l.store_id, l.order_id, l.sku, l.quantity, l.unit_price_usd, l.line_discount_usd "
        "from staging.order_lines l join staging.valid_orders o using (store_id, order_id) "
        "where o.order_date < ? and l.store_id = coalesce(?, l.store_id)",
        [as_of, store],
    )
    inventory = query(
        con,
        "select snapshot_date, store_id, sku, warehouse, on_hand, lead_time_days "
        "from staging.inventory where snapshot_date < ? and store_id = coalesce(?, store_id)",
        [as_of, store],
    )
    products = query(
        con,
        "select store_id, sku, category, price_usd, unit_cost_usd, launched_at "
        "from staging.products where store_id = coalesce(?, store_id)",
        [store],
    )
    mine = stores if store is None else stores.filter(pl.col("store_id") == store)
    return demand.prepare_history(orders, lines, inventory, products, mine, as_of)


def load_inventory(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return query(
        con,
        "select snapshot_date, store_id, sku, warehouse, on_hand, lead_time_days "
        "from staging.inventory where snapshot_date < ?",
        [as_of],
    )
