"""A store of a multi-store home whose orders stopped is named (the asset check
`every_store_is_current` and the run summary): more often a broken export than a shop
with no sales."""

from __future__ import annotations

from datetime import date

import duckdb

from storepulse.quality import stale_stores


def test_only_stores_far_behind_the_newest_order_are_named():
    con = duckdb.connect()
    con.execute("create schema staging")
    con.execute(
        "create table staging.orders as select * from (values"
        " ('fresh', date '2025-06-01'), ('fresh', date '2025-05-01'),"
        " ('week-behind', date '2025-05-25'),"  # 7 days: a quiet week, not a broken feed
        " ('stopped', date '2025-04-01'), ('stopped', date '2025-03-01'),"
        " (null, date '2020-01-01')) t(store_id, order_date)"
    )
    behind = stale_stores(con)
    assert behind.rows() == [("stopped", date(2025, 4, 1), 61)]
    assert stale_stores(con, stale_after_days=5)["store_id"].to_list() == ["week-behind", "stopped"]


def test_one_store_or_no_orders_is_never_behind():
    con = duckdb.connect()
    con.execute("create schema staging")
    assert stale_stores(con).is_empty()  # no orders table yet
    con.execute(
        "create table staging.orders as select 'solo' as store_id, date '2020-01-01' as order_date"
    )
    assert stale_stores(con).is_empty()
