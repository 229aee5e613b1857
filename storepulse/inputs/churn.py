"""What the churn model reads from staging, strictly before as_of (the `?`)."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from storepulse.warehouse import query

# The tables it reads (the churn assets depend on their staging assets).
INPUT_KINDS = ("orders", "customers", "sessions")

# The queries themselves, so the pandas peer of the feature benchmark runs them too.
QUERIES = {
    "orders": (
        "select store_id, order_id, customer_id, order_date, created_at, total_usd, "
        "refunded_amount_usd, discount_usd, subtotal_usd, is_cancelled, payment_method, "
        "channel, ship_country from staging.valid_orders where order_date < ?"
    ),
    "customers": (
        "select store_id, customer_id, country, accepts_email_marketing, accepts_sms_marketing, "
        "ad_personalization_consent from staging.customers "
        "where created_at is null or created_at < ?"
    ),
    "sessions": "select date, store_id, sessions from staging.sessions where date < ?",
}


def load_inputs(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, pl.DataFrame]:
    """Orders, customers and sessions strictly before as_of (empty frames allowed)."""
    return {name: query(con, sql, [as_of]) for name, sql in QUERIES.items()}
