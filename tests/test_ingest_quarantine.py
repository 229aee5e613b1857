"""Row-level validation: every bad row lands in quarantine.rows with an actionable reason.

Each case writes one file with a good row and a bad row (plus stores.csv and
fx_rates.csv), ingests it, and checks where both rows went, what the message says,
and that the file's counts add up (read = staged + duplicates + quarantined).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from storepulse.ingest import ingest_landing
from storepulse.warehouse import ensure_schemas, query

NOW = datetime(2025, 6, 1, 12, 0, 0)
STORES = "store_id,store_name,country,currency,timezone\nshop_a,Shop A,DE,EUR,Europe/Berlin\n"
FX = "date,currency,usd_per_unit\n2025-01-01,EUR,1.10\n2025-03-01,EUR,1.20\n"
ORDERS_HEADER = "order_id,customer_id,email,created_at,currency,total\n"
GOOD_ORDER = "1,c1,a@example.com,2025-03-05 10:00:00,EUR,100\n"


def ingest(landing: Path):
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    report = ingest_landing(con, landing, now=NOW)
    return con, report


def write_landing(tmp_path: Path, files: dict[str, str]) -> Path:
    landing = tmp_path / "landing"
    for relative, text in {"stores.csv": STORES, "fx_rates.csv": FX, **files}.items():
        target = landing / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return landing


# (case id, files, file holding the bad row, kind, bad row number, expected reason fragment)
CASES = [
    ("unknown_currency", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-03-06,XYZ,50\n"},
     "shop_a/orders.csv", "orders", 2, "currency 'XYZ' has no rate in fx_rates; add its rates to fx_rates.csv (date, currency, usd_per_unit) or correct the currency code"),
    ("impossible_date", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-02-30,EUR,50\n"},
     "shop_a/orders.csv", "orders", 2, "created_at '2025-02-30' is not a valid date/time"),
    ("future_date", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2031-01-01,EUR,50\n"},
     "shop_a/orders.csv", "orders", 2, "created_at '2031-01-01' is in the future"),
    ("implausibly_old_date", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,1899-12-31,EUR,50\n"},
     "shop_a/orders.csv", "orders", 2, "created_at '1899-12-31' is before 1990-01-01"),
    ("missing_order_id", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + ",c2,b@example.com,2025-03-06,EUR,50\n"},
     "shop_a/orders.csv", "orders", 2, "order_id is empty"),
    ("missing_customer_and_email", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,,,2025-03-06,EUR,50\n"},
     "shop_a/orders.csv", "orders", 2, "neither customer_id nor email is filled"),
    ("bad_email_without_customer_id", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,,not-an-email,2025-03-06,EUR,50\n"},
     "shop_a/orders.csv", "orders", 2, "email 'not-an-email' is not an e-mail address"),
    ("non_numeric_total", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-03-06,EUR,abc\n"},
     "shop_a/orders.csv", "orders", 2, "total 'abc' is not a number"),
    ("nan_total", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-03-06,EUR,NaN\n"},
     "shop_a/orders.csv", "orders", 2, "total 'NaN' is not a number"),
    ("negative_total", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-03-06,EUR,-5\n"},
     "shop_a/orders.csv", "orders", 2, "total -5 is negative; refunds go in refunded_amount"),
    ("missing_total", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-03-06,EUR,\n"},
     "shop_a/orders.csv", "orders", 2, "total is empty"),
    ("unparseable_cancelled_at", {"shop_a/orders.csv": "order_id,customer_id,created_at,total,cancelled_at\n1,c1,2025-03-05,10,\n2,c2,2025-03-06,10,soon\n"},
     "shop_a/orders.csv", "orders", 2, "cancelled_at 'soon' is not a valid date/time"),
    ("unknown_store", {"orders.csv": "store_id," + ORDERS_HEADER + "shop_a," + GOOD_ORDER + "ghost,2,c2,b@example.com,2025-03-06,EUR,50\n"},
     "orders.csv", "orders", 2, "store 'ghost' is not in stores.csv; add the store or correct the id"),
    ("path_like_store_id", {"orders.csv": "store_id," + ORDERS_HEADER + "shop_a," + GOOD_ORDER + "../x,2,c2,b@example.com,2025-03-06,EUR,50\n"},
     "orders.csv", "orders", 2, "store id '../x' is not valid"),
    ("no_store_anywhere", {"orders.csv": "store_id," + ORDERS_HEADER + "shop_a," + GOOD_ORDER + ",2,c2,b@example.com,2025-03-06,EUR,50\n"},
     "orders.csv", "orders", 2, "no store_id: add a store_id column or put the file in landing/<store_id>/"),
    ("conflicting_order_in_one_file", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "1,c1,a@example.com,2025-03-05 10:00:00,EUR,120\n"},
     "shop_a/orders.csv", "orders", 1, "appears again in this file with different values; row 2 (the last one) was kept"),
    ("negative_quantity", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER,
                           "shop_a/order_lines.csv": "order_id,line_no,sku,quantity,unit_price\n1,1,S1,1,10\n1,2,S2,-2,10\n"},
     "shop_a/order_lines.csv", "order_lines", 2, "quantity -2 is negative"),
    ("non_numeric_quantity", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER,
                              "shop_a/order_lines.csv": "order_id,line_no,sku,quantity,unit_price\n1,1,S1,1,10\n1,2,S2,two,10\n"},
     "shop_a/order_lines.csv", "order_lines", 2, "quantity 'two' is not a number"),
    ("line_without_order", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER,
                            "shop_a/order_lines.csv": "order_id,line_no,sku,quantity,unit_price\n1,1,S1,1,10\n999,1,S2,1,10\n"},
     "shop_a/order_lines.csv", "order_lines", 2, "order '999' of store 'shop_a' is not in staging.orders; load the order (or correct the order_id) first"),
    ("line_of_quarantined_order", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER + "2,c2,b@example.com,2025-03-06,XYZ,50\n",
                                   "shop_a/order_lines.csv": "order_id,line_no,sku,quantity,unit_price\n1,1,S1,1,10\n2,1,S2,1,50\n"},
     "shop_a/order_lines.csv", "order_lines", 2,
     "order '2' was quarantined (currency 'XYZ' has no rate in fx_rates; add its rates to fx_rates.csv (date, currency, usd_per_unit) or correct the currency code); fix the order and its lines follow"),
    ("line_missing_sku", {"shop_a/orders.csv": ORDERS_HEADER + GOOD_ORDER,
                          "shop_a/order_lines.csv": "order_id,line_no,sku,quantity,unit_price\n1,1,S1,1,10\n1,2,,1,10\n"},
     "shop_a/order_lines.csv", "order_lines", 2, "sku is empty"),
    ("negative_ad_spend", {"shop_a/ad_spend.csv": "date,platform,campaign_id,spend\n2025-03-01,meta,c1,10\n2025-03-01,meta,c2,-10\n"},
     "shop_a/ad_spend.csv", "ad_spend", 2, "spend -10 is negative"),
    ("ad_spend_without_platform_value", {"shop_a/ad_spend.csv": "date,platform,campaign_id,spend\n2025-03-01,meta,c1,10\n2025-03-01,,c2,10\n"},
     "shop_a/ad_spend.csv", "ad_spend", 2, "platform is empty"),
    ("non_numeric_fx_rate", {"more_fx.csv": "date,currency,usd_per_unit\n2025-04-01,GBP,1.27\n2025-04-01,JPY,abc\n"},
     "more_fx.csv", "fx_rates", 2, "usd_per_unit 'abc' is not a number"),
    ("bad_currency_code_in_fx", {"more_fx.csv": "date,currency,usd_per_unit\n2025-04-01,GBP,1.27\n2025-04-01,Pound,1.27\n"},
     "more_fx.csv", "fx_rates", 2, "currency 'POUND' is not a 3-letter ISO code"),
    ("negative_on_hand", {"shop_a/inventory.csv": "snapshot_date,sku,warehouse,on_hand\n2025-03-01,S1,main,5\n2025-03-01,S2,main,-3\n"},
     "shop_a/inventory.csv", "inventory", 2, "on_hand -3 is negative"),
    ("missing_snapshot_date", {"shop_a/inventory.csv": "snapshot_date,sku,warehouse,on_hand\n2025-03-01,S1,main,5\n,S2,main,3\n"},
     "shop_a/inventory.csv", "inventory", 2, "snapshot_date is empty"),
    ("non_numeric_sessions", {"shop_a/sessions.csv": "date,channel,device,sessions\n2025-03-01,direct,mobile,10\n2025-03-01,meta,mobile,many\n"},
     "shop_a/sessions.csv", "sessions", 2, "sessions 'many' is not a number"),
    ("customer_bad_created_at", {"shop_a/customers.csv": "customer_id,email,created_at\nc1,a@example.com,2025-01-01\nc2,b@example.com,yesterday\n"},
     "shop_a/customers.csv", "customers", 2, "created_at 'yesterday' is not a valid date/time"),
    ("negative_product_price", {"shop_a/products.csv": "sku,title,price,unit_cost\nS1,Shirt,10,4\nS2,Socks,-1,1\n"},
     "shop_a/products.csv", "products", 2, "price -1 is negative"),
    ("unsupported_privacy_request", {"shop_a/privacy_requests.csv": "requested_at,email,kind\n2025-03-01,a@example.com,delete\n2025-03-01,b@example.com,export\n"},
     "shop_a/privacy_requests.csv", "privacy_requests", 2, "request kind 'export' is not supported"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("files", "bad_file", "kind", "bad_row", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_row_goes_to_quarantine_with_actionable_reason(
    tmp_path, files, bad_file, kind, bad_row, expected
):
    con, report = ingest(write_landing(tmp_path, files))
    quarantined = query(
        con,
        "select row_number, kind, reason, record from quarantine.rows where source_file = ?",
        [bad_file],
    )
    assert quarantined.height == 1, quarantined
    row = quarantined.row(0, named=True)
    assert row["row_number"] == bad_row
    assert row["kind"] == kind
    assert row["reason"].startswith(f"{bad_file} row {bad_row}: ")
    assert expected in row["reason"]
    assert isinstance(json.loads(row["record"]), dict)

    result = report.file(bad_file)
    assert (result.rows_read, result.rows_staged, result.rows_quarantined) == (2, 1, 1)
    assert result.rows_read == result.rows_staged + result.rows_duplicate + result.rows_quarantined
    assert report.staged_rows[kind] >= 1


def test_quarantine_keeps_the_original_record(tmp_path):
    landing = write_landing(
        tmp_path,
        {
            "shop_a/orders.csv": ORDERS_HEADER
            + GOOD_ORDER
            + "2,c2,b@example.com,2025-03-06,XYZ,50\n"
        },
    )
    con, _ = ingest(landing)
    record = json.loads(query(con, "select record from quarantine.rows").item())
    assert record["order_id"] == "2"
    assert record["currency"] == "XYZ"
    assert record["total"] == "50"


def test_many_bad_rows_each_get_their_own_reason(tmp_path):
    """A file with several problems: every row is accounted for, none twice."""
    rows = [
        GOOD_ORDER,
        "2,c2,b@example.com,2025-03-06,XYZ,50\n",
        "3,c3,c@example.com,2025-13-01,EUR,50\n",
        "4,c4,d@example.com,2025-03-06,EUR,-1\n",
        GOOD_ORDER,  # exact duplicate of row 1
        '5,c5,E@Example.com ,2025-03-07,EUR,"1,250.50"\n',
    ]
    con, report = ingest(
        write_landing(tmp_path, {"shop_a/orders.csv": ORDERS_HEADER + "".join(rows)})
    )
    result = report.file("shop_a/orders.csv")
    assert (result.rows_read, result.rows_staged, result.rows_duplicate, result.rows_quarantined) == (
        6, 2, 1, 3,
    )  # fmt: skip
    reasons = query(con, "select row_number, reason from quarantine.rows order by row_number")
    assert reasons["row_number"].to_list() == [2, 3, 4]
    order_5 = query(con, "select email, total from staging.orders where order_id = '5'").row(0)
    assert order_5 == ("e@example.com", 1250.5)
    recorded = query(
        con,
        "select rows_read, rows_staged, rows_duplicate, rows_quarantined from ops.ingested_files"
        " where path = 'shop_a/orders.csv'",
    ).row(0)
    assert recorded == (6, 2, 1, 3)


def test_a_store_whose_every_order_is_quarantined_is_told_why_not_to_land_files(tmp_path):
    """A EUR store without an fx_rates file: every order is quarantined. The run summary
    names the file, how many rows and the first reason; the as_of failure says the
    orders were quarantined instead of asking for order files that did land."""
    import dagster as dg

    from pipelines.resources import RunSettings
    from storepulse.ingest.engine import quarantined_since

    landing = tmp_path / "landing"
    (landing / "shop_b").mkdir(parents=True)
    (landing / "shop_b" / "orders.csv").write_text(
        ORDERS_HEADER + "1,c1,a@example.com,2025-03-05 10:00:00,EUR,100\n"
        "2,c2,b@example.com,2025-03-06 10:00:00,EUR,80\n"
    )
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    ingest_landing(con, landing, now=NOW)
    lines = quarantined_since(con, datetime(2000, 1, 1))
    assert lines == [
        "shop_b/orders.csv: 2 of 2 rows quarantined, e.g. row 1: currency 'EUR' has no rate "
        "in fx_rates; add its rates to fx_rates.csv (date, currency, usd_per_unit) or correct "
        "the currency code"
    ]
    with pytest.raises(dg.Failure, match="all 2 order rows landed so far were quarantined"):
        RunSettings().as_of_date(con)
    empty = duckdb.connect(":memory:")
    ensure_schemas(empty)
    with pytest.raises(dg.Failure, match="No orders staged yet"):
        RunSettings().as_of_date(empty)
