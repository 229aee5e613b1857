"""What the churn model reads from staging, strictly before as_of (the `?`).

Three ways to read it (issue #18: memory follows the largest store, not the sum):

- `load_inputs`: every store at once (benchmarks, tests, small portfolios);
- `load_store`: one store's rows (nightly scoring goes store by store);
- `load_training`: only the customers of the bounded training sample
  (models.sampling, drawn from the keys here exactly as the models would draw it from
  every order), with the fingerprint of all the data, computed while streaming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from models.sampling import sample_keys
from storepulse.lifecycle import combine_fingerprints, query_fingerprint
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

# The columns of the orders the training fingerprint covers (see `fingerprint_queries`).
FINGERPRINT_ORDER_COLUMNS = ("store_id", "order_id", "customer_id", "order_date", "total_usd")


def load_inputs(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, pl.DataFrame]:
    """Orders, customers and sessions strictly before as_of (empty frames allowed)."""
    return {name: query(con, sql, [as_of]) for name, sql in QUERIES.items()}


def load_store(con: duckdb.DuckDBPyConnection, as_of: date, store: str) -> dict[str, pl.DataFrame]:
    """One store's part of load_inputs: the same rows in the same order as filtering
    load_inputs' frames on store_id (DuckDB pushes the filter into the scan)."""
    return {
        name: query(con, f"select * from ({sql}) where store_id = ?", [as_of, store])
        for name, sql in QUERIES.items()
    }


@dataclass(frozen=True)
class TrainingInputs:
    """What training reads: the sampled customers' rows and what the sample was drawn from."""

    orders: pl.DataFrame  # every order of the sampled customers
    customers: pl.DataFrame  # the sampled customers' records
    sessions: pl.DataFrame  # every store's session days (small: a row per store, day, channel)
    population: int  # customers with an order before as_of (the sample is drawn from them)
    sampled: bool  # False: under the cap, every customer is in (orders as load_inputs')
    first_order_date: date | None  # of every order (not only the sample's)
    fingerprint: str  # of every order and customer, as the lifecycle's frame_fingerprint


def population(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """(store_id, customer_id) of every customer with an order before as_of."""
    return query(con, f"select distinct store_id, customer_id from ({QUERIES['orders']})", [as_of])


def load_training(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    max_customers: int | None,
    seed: int,
    keys: pl.DataFrame | None = None,
) -> TrainingInputs:
    """The training sample's rows: at most about `max_customers` customers drawn per store
    with `seed` (models.sampling.sample_keys, the draw the models make from all orders),
    then only their orders and customer records read. Under the cap: everything.

    `keys`: population(con, as_of) when the caller already has it (the memory guard
    counts it first)."""
    keys = population(con, as_of) if keys is None else keys
    kept, total = sample_keys(keys, "customer_id", max_customers, seed)
    del keys
    if kept is None:
        frames = load_inputs(con, as_of)
    else:
        con.register("_training_sample", kept.to_arrow())
        try:
            frames = {
                name: query(
                    con,
                    f"select * from ({sql}) semi join _training_sample using (store_id, customer_id)"
                    if name != "sessions"
                    else sql,
                    [as_of],
                )
                for name, sql in QUERIES.items()
            }
        finally:
            con.unregister("_training_sample")
    first = query(con, f"select min(order_date) as d from ({QUERIES['orders']})", [as_of])["d"][0]
    return TrainingInputs(
        orders=frames["orders"],
        customers=frames["customers"],
        sessions=frames["sessions"],
        population=total,
        sampled=kept is not None,
        first_order_date=first,
        fingerprint=combine_fingerprints(
            *(query_fingerprint(con, sql, [as_of]) for sql in fingerprint_queries())
        ),
    )


def fingerprint_queries() -> tuple[str, str]:
    """What the churn and CLV fingerprint hashes: the orders' key columns and the customers
    (lifecycle.frame_fingerprint of load_inputs' frames, here read as a stream)."""
    columns = ", ".join(FINGERPRINT_ORDER_COLUMNS)
    return f"select {columns} from ({QUERIES['orders']})", QUERIES["customers"]
