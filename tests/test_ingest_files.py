"""File discovery, formats and file-level failures."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from storepulse.ingest import detect_kind, ingest_landing
from storepulse.warehouse import ensure_schemas, query

NOW = datetime(2025, 6, 1, 12, 0, 0)
ORDERS = (
    "order_id,customer_id,email,created_at,currency,total\n"
    "1,c1,a@example.com,2025-03-05 10:00:00,USD,100\n"
    "2,c2,b@example.com,2025-03-06 11:00:00,USD,50.5\n"
)


def ingest(landing: Path):
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    return con, ingest_landing(con, landing, now=NOW)


def put(landing: Path, relative: str, data: str | bytes) -> Path:
    target = landing / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        target.write_text(data)
    else:
        target.write_bytes(data)
    return target


def staged_orders(con) -> list[tuple]:
    return query(
        con, "select store_id, order_id, customer_id, total from staging.orders order by order_id"
    ).rows()


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("comma.csv", ORDERS.encode()),
        ("semicolon.csv", ORDERS.replace(",", ";").encode()),
        ("tab.tsv", ORDERS.replace(",", "\t").encode()),
        ("pipe.txt", ORDERS.replace(",", "|").encode()),
        ("bom.csv", b"\xef\xbb\xbf" + ORDERS.encode()),
        ("windows_lines.csv", ORDERS.replace("\n", "\r\n").encode()),
        ("utf16.csv", ORDERS.encode("utf-16")),
        ("compressed.csv.gz", gzip.compress(ORDERS.encode())),
        ("no_extension", ORDERS.encode()),
    ],
)
def test_csv_variants_ingest_the_same(tmp_path, name, payload):
    landing = tmp_path / "landing"
    put(landing, f"shop_a/{name}", payload)
    con, report = ingest(landing)
    assert report.file(f"shop_a/{name}").status == "ingested"
    assert staged_orders(con) == [("shop_a", "1", "c1", 100.0), ("shop_a", "2", "c2", 50.5)]


def test_cp1252_file_keeps_accents_and_euro_sign(tmp_path):
    text = (
        "customer_id,email,first_name,last_name,country\n"
        "c1,zoe@example.fr,Zoë,Lefèvre,FR\n"
        "c2,euro@example.de,Jürgen,Müller €,DE\n"
    )
    landing = tmp_path / "landing"
    put(landing, "shop_a/customers.csv", text.encode("cp1252"))
    con, _ = ingest(landing)
    names = query(
        con, "select first_name, last_name from staging.customers order by customer_id"
    ).rows()
    assert names == [("Zoë", "Lefèvre"), ("Jürgen", "Müller €")]


def test_parquet_file_with_typed_columns(tmp_path):
    landing = tmp_path / "landing"
    (landing / "shop_a").mkdir(parents=True)
    pl.DataFrame(
        {
            "order_id": [1, 2],
            "customer_id": ["c1", "c2"],
            "created_at": [datetime(2025, 3, 5, 10), datetime(2025, 3, 6, 11)],
            "total": [100.0, 50.5],
        }
    ).write_parquet(landing / "shop_a" / "orders.parquet")
    con, report = ingest(landing)
    assert report.file("shop_a/orders.parquet").kind == "orders"
    assert staged_orders(con) == [("shop_a", "1", "c1", 100.0), ("shop_a", "2", "c2", 50.5)]
    created = query(con, "select created_at from staging.orders order by order_id")["created_at"]
    assert created.to_list() == [datetime(2025, 3, 5, 10), datetime(2025, 3, 6, 11)]


def test_kind_comes_from_header_not_name_and_aliases_map(tmp_path):
    landing = tmp_path / "landing"
    # Misleadingly named, other column names, other column order.
    put(
        landing,
        "shop_a/export_2025_03.csv",
        "Order Number;Order Date;Customer Email;Grand Total;Currency Code\n"
        "A-1;05.03.2025 10:00;X@Example.com;1.234,50;USD\n",
    )
    assert detect_kind(landing / "shop_a/export_2025_03.csv") == "orders"
    con, _ = ingest(landing)
    row = query(con, "select order_id, customer_id, created_at, total from staging.orders").row(0)
    assert row == ("A-1", "x@example.com", datetime(2025, 3, 5, 10), 1234.5)


def test_truth_and_hidden_folders_are_never_read(tmp_path):
    landing = tmp_path / "landing"
    put(landing, "shop_a/orders.csv", ORDERS)
    put(landing, "_truth/orders.csv", ORDERS.replace("c1", "truth"))
    put(landing, "shop_a/_archive/orders.csv", ORDERS.replace("c1", "archived"))
    put(landing, ".cache/orders.csv", ORDERS.replace("c1", "cached"))
    put(landing, "shop_a/.DS_Store", b"\x00\x01binary")
    con, report = ingest(landing)
    assert [f.path for f in report.files] == ["shop_a/orders.csv"]
    assert query(con, "select path from ops.ingested_files")["path"].to_list() == [
        "shop_a/orders.csv"
    ]
    assert {r[2] for r in staged_orders(con)} == {"c1", "c2"}


def test_store_id_from_subfolder_and_column(tmp_path):
    landing = tmp_path / "landing"
    put(landing, "shop_a/2025/03/orders.csv", ORDERS)
    put(
        landing,
        "all_orders.csv",
        "store_id," + ORDERS.replace("\n1,", "\nshop_b,1,").replace("\n2,", "\nshop_c,2,"),
    )
    con, _ = ingest(landing)
    stores = query(con, "select distinct store_id from staging.orders order by 1")[
        "store_id"
    ].to_list()
    assert stores == ["shop_a", "shop_b", "shop_c"]


def test_every_staging_table_exists_with_contract_columns_when_no_files(tmp_path):
    from storepulse.ingest import STAGING_SCHEMAS

    con, report = ingest(tmp_path / "missing_landing")
    assert report.files == []
    for kind, columns in STAGING_SCHEMAS.items():
        described = query(con, f"describe staging.{kind}")
        assert described["column_name"].to_list() == list(columns)
        assert [t.lower() for t in described["column_type"]] == list(columns.values())
        assert report.staged_rows[kind] == 0


BAD_FILES = [
    ("empty.csv", b"", "empty file"),
    ("blank_lines.csv", b"\n\n  \n", "empty file"),
    ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary content"),
    ("workbook.csv", b"PK\x03\x04" + b"\x14\x00" * 40, "Excel workbook, not CSV"),
    ("broken.csv.gz", b"\x1f\x8b\x08\x00garbage-not-gzip", "gzip data is corrupt"),
    ("fake.csv.gz", ORDERS.encode(), "not gzip-compressed"),
    ("no_total.csv", b"order_id,customer_id,created_at,currency\n1,c1,2025-03-01,USD\n",
     "looks like an orders file but lacks required column(s): total"),
    ("no_customer.csv", b"order_id,created_at,total\n1,2025-03-01,10\n",
     "lacks required column(s): customer_id or email"),
    ("notes.txt", b"Please find attached our export.\nThanks!\n", "header not recognised"),
    ("ads_without_platform.csv", b"date,campaign_id,spend\n2025-03-01,c1,10\n",
     "looks like an ad_spend file but lacks required column(s): platform"),
    ("google_no_cost.csv",
     b"Campaign report\nAll time\nDay,Campaign,Currency code,Impr.,Clicks\n2025-03-01,Brand,USD,100,5\n",
     "Google Ads export without a cost/spend column"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "payload", "expected"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_file_level_failure_is_recorded_and_other_files_still_ingest(
    tmp_path, name, payload, expected
):
    landing = tmp_path / "landing"
    put(landing, f"shop_a/{name}", payload)
    put(landing, "shop_a/orders.csv", ORDERS)
    con, report = ingest(landing)
    failed = report.file(f"shop_a/{name}")
    assert failed.status == "failed"
    assert expected in failed.message
    assert failed.rows_read == failed.rows_quarantined
    assert report.file("shop_a/orders.csv").rows_staged == 2
    recorded = query(
        con, "select status, message from ops.ingested_files where path = ?", [f"shop_a/{name}"]
    ).row(0)
    assert recorded[0] == "failed" and expected in recorded[1]
    reason = query(
        con, "select reason from quarantine.rows where source_file = ?", [f"shop_a/{name}"]
    ).item()
    assert reason.startswith(f"shop_a/{name}: ") and expected in reason


def test_detect_kind_explains_unusable_files(tmp_path):
    empty = put(tmp_path, "empty.csv", "")
    with pytest.raises(ValueError, match="empty file"):
        detect_kind(empty)
    partial = put(tmp_path, "partial.csv", "order_id,created_at,customer_id\n1,2025-01-01,c\n")
    with pytest.raises(ValueError, match="lacks required column"):
        detect_kind(partial)
    assert (
        detect_kind(put(tmp_path, "fx.csv", "date;currency;rate\n2025-01-01;EUR;1.1\n"))
        == "fx_rates"
    )


def test_fixed_file_replaces_its_failure(tmp_path):
    landing = tmp_path / "landing"
    put(landing, "shop_a/orders.csv", "order_id,customer_id,created_at\n1,c1,2025-03-01\n")
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    first = ingest_landing(con, landing, now=NOW)
    assert first.file("shop_a/orders.csv").status == "failed"
    assert query(con, "select count(*) from quarantine.rows").item() == 1
    put(landing, "shop_a/orders.csv", ORDERS)
    second = ingest_landing(con, landing, now=datetime(2025, 6, 2))
    assert second.file("shop_a/orders.csv").status == "ingested"
    assert query(con, "select count(*) from quarantine.rows").item() == 0
    history = query(con, "select status from ops.ingested_files order by ingested_at")["status"]
    assert history.to_list() == ["failed", "ingested"]


def test_canonical_ad_spend_platform_names_are_conformed(tmp_path):
    landing = tmp_path / "landing"
    put(
        landing,
        "shop_a/spend.csv",
        "date;platform;campaign_id;spend;currency\n"
        "2025-03-01;Facebook;c1;1 234,50;USD\n"
        "2025-03-01;AdWords;c2;12.00 USD;USD\n"
        "2025-03-01;Snapchat;c3;$3;USD\n",
    )
    con, _ = ingest(landing)
    rows = query(con, "select platform, spend from staging.ad_spend order by campaign_id").rows()
    assert rows == [("meta", 1234.5), ("google", 12.0), ("snapchat", 3.0)]


def test_woocommerce_style_order_export_maps_by_aliases(tmp_path):
    landing = tmp_path / "landing"
    put(
        landing,
        "woo_shop/orders-2025-03-05.csv",
        '"Order Number","Order Status","Order Date","Billing First Name","Billing Email",'
        '"Billing Phone","Shipping Country","Order Currency","Cart Discount Amount",'
        '"Order Shipping Amount","Order Total Tax Amount","Order Total Amount","Payment Method Title"\n'
        '"4711","completed","2025-03-05 10:11:12","Zoë","zoe@example.fr","06 12 34 56 78","FR","USD",'
        '"5.00","4.90","3.00","42.90","Stripe"\n',
    )
    con, report = ingest(landing)
    assert report.file("woo_shop/orders-2025-03-05.csv").kind == "orders"
    order = query(con, "select * from staging.orders").row(0, named=True)
    assert (order["order_id"], order["customer_id"], order["financial_status"]) == (
        "4711", "zoe@example.fr", "completed",
    )  # fmt: skip
    assert (order["discount"], order["shipping"], order["tax"], order["total"]) == (
        5.0,
        4.9,
        3.0,
        42.9,
    )
    customer = query(con, "select first_name, phone, country from staging.customers").row(0)
    assert customer == ("Zoë", "33612345678", "FR")


def test_unclosed_quote_fails_the_file_with_a_short_message(tmp_path):
    landing = tmp_path / "landing"
    put(
        landing,
        "shop_a/orders.csv",
        ORDERS + '3,c3,"broken,2025-03-07,USD,5\n4,c4,x@y.z,2025-03-08,USD,6\n',
    )
    _, report = ingest(landing)
    result = report.file("shop_a/orders.csv")
    assert result.status == "failed"
    assert result.message.startswith("could not be parsed as CSV with delimiter ','")
    assert result.message.endswith("check for an unclosed quote or re-export the file")
    assert "\n" not in result.message


def test_blank_and_delimiter_only_lines_are_not_rows(tmp_path):
    landing = tmp_path / "landing"
    header, first, second = ORDERS.strip().split("\n")
    put(landing, "shop_a/orders.csv", f"{header}\n{first}\n\n{second}\n,,,,,\n")
    con, report = ingest(landing)
    result = report.file("shop_a/orders.csv")
    assert (result.rows_read, result.rows_staged, result.rows_quarantined) == (2, 2, 0)
    assert staged_orders(con) == [("shop_a", "1", "c1", 100.0), ("shop_a", "2", "c2", 50.5)]


def test_cp1252_accent_far_below_the_header_is_still_read(tmp_path):
    """The encoding sniff reads only the top of a file; a late non-UTF-8 byte must not fail it."""
    rows = [f"c{i},c{i}@example.com,Plain{i}" for i in range(20_000)]
    text = "customer_id,email,first_name\n" + "\n".join(rows) + "\nc_last,last@example.com,Zoë\n"
    landing = tmp_path / "landing"
    put(landing, "shop_a/customers.csv", text.encode("cp1252"))
    con, report = ingest(landing)
    assert report.file("shop_a/customers.csv").rows_staged == 20_001
    name = query(
        con, "select first_name from staging.customers where customer_id = 'c_last'"
    ).item()
    assert name == "Zoë"
