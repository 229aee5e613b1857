"""Data the generator never writes: exports in real layouts and deliberately broken files.

The corpus is tests/fixtures/unseen/ (see its README.md). Every test either asserts the
staged values or the exact message that names the file, the row and the fix, and every
file must conserve its rows: rows read = staged + duplicates + quarantined.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from storepulse.ingest import detect_kind, ingest_landing
from storepulse.warehouse import ensure_schemas, query

UNSEEN = Path(__file__).parent / "fixtures" / "unseen"
NOW = datetime(2025, 6, 1, 12, 0, 0)
FX = "date,currency,usd_per_unit\n2025-01-01,EUR,1.08\n2025-01-01,GBP,1.25\n"
STORES = "store_id,store_name,country,currency,timezone\nshop,Shop,DE,EUR,Europe/Berlin\n"
ORDERS = "order_id,email,created_at,currency,total\n"


def landing_with(tmp_path: Path, *fixtures: str, extra: dict[str, bytes] | None = None) -> Path:
    """landing/shop/<fixture names>, landed in the order given (mtimes one minute apart)."""
    landing = tmp_path / "landing"
    (landing / "shop").mkdir(parents=True)
    (landing / "fx_rates.csv").write_text(FX)
    (landing / "stores.csv").write_text(STORES)
    files = [(UNSEEN / f).read_bytes() for f in fixtures]
    named = [(Path(f).name, data) for f, data in zip(fixtures, files, strict=True)]
    named += list((extra or {}).items())
    for index, (name, data) in enumerate(named):
        target = landing / "shop" / name
        target.write_bytes(data)
        stamp = 1_700_000_000 + 60 * index
        os.utime(target, (stamp, stamp))
    return landing


def ingest(landing: Path):
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    report = ingest_landing(con, landing, now=NOW)
    for result in report.files:
        assert (
            result.rows_read == result.rows_staged + result.rows_duplicate + result.rows_quarantined
        ), result
    return con, report


def reasons(con, name: str) -> list[str]:
    return query(
        con,
        "select reason from quarantine.rows where source_file = ? order by row_number, kind",
        [f"shop/{name}"],
    )["reason"].to_list()


def orders(con) -> dict[str, dict]:
    rows = query(con, "select * from staging.orders order by order_id").rows(named=True)
    return {r["order_id"]: r for r in rows}


def lines(con, order_id: str) -> list[tuple]:
    return query(
        con,
        "select line_no, sku, quantity, unit_price, line_discount from staging.order_lines"
        " where order_id = ? order by line_no",
        [order_id],
    ).rows()


# --- Shopify ---------------------------------------------------------------------------


def test_shopify_full_export_refund_cancel_cod_offsets_and_many_lines(tmp_path):
    con, report = ingest(landing_with(tmp_path, "shopify/orders_export_1.csv"))
    result = report.file("shop/orders_export_1.csv")
    assert (result.layout, result.rows_read, result.rows_staged) == ("shopify_orders", 19, 19)
    staged = orders(con)
    assert sorted(staged) == [f"#100{i}" for i in range(1, 9) if i != 7]
    anna = staged["#1001"]
    assert (anna["customer_id"], anna["email"]) == ("anna.schmidt@example.de",) * 2
    assert (anna["discount"], anna["shipping"], anna["tax"], anna["total"]) == (
        3.0,
        4.9,
        14.66,
        91.8,
    )
    assert anna["channel"] == "meta"
    refunded, voided, cod = staged["#1002"], staged["#1003"], staged["#1004"]
    assert (refunded["financial_status"], refunded["refunded_amount"]) == ("refunded", 59.9)
    assert (voided["is_cancelled"], voided["cancelled_at"]) == (True, datetime(2025, 3, 7, 9, 15))
    assert voided["payment_method"] == "manual"
    # The store's wall clock whatever the offset; the e-mail trimmed and lower-cased.
    assert cod["created_at"] == datetime(2025, 3, 5, 14, 22, 10)
    assert cod["customer_id"] == "mixed.case@example.com"
    assert cod["payment_method"] == "cash on delivery (cod)"
    assert (staged["#1006"]["tax"], staged["#1006"]["refunded_amount"]) == (7.63, 19.95)
    # Twelve line items, one without a SKU (named after the line item instead).
    many = lines(con, "#1005")
    assert len(many) == 12
    assert many[5] == (6, "Gift wrapping", 1.0, 4.0, 0.0)
    assert lines(con, "#1001") == [(1, "LS-M", 2.0, 29.95, 0.0), (2, "TOTE-1", 1.0, 30.0, 3.0)]


def test_shopify_cod_order_without_email_is_the_phone_customer(tmp_path):
    """Before: quarantined ('neither customer_id nor email'), though Shopify had a phone."""
    con, _ = ingest(landing_with(tmp_path, "shopify/orders_export_1.csv"))
    order = orders(con)["#1008"]
    assert (order["customer_id"], order["email"], order["total"]) == ("+971501234567", None, 30.0)
    customer = query(
        con,
        "select phone, first_name, country from staging.customers where customer_id = ?",
        ["+971501234567"],
    ).rows()
    assert customer == [("971501234567", "Omar", "AE")]


def test_shopify_overlapping_exports_update_orders_once(tmp_path):
    con, report = ingest(
        landing_with(tmp_path, "shopify/orders_export_1.csv", "shopify/orders_export_2.csv")
    )
    second = report.file("shop/orders_export_2.csv")
    # #1005 (12 rows) repeats unchanged; #1007 is new; #1006 changed (now refunded), but
    # its line is the same as before, and a row counts as staged only if every record
    # made of it was (engine rule), so it counts as a duplicate in both files.
    assert (second.rows_read, second.rows_staged, second.rows_duplicate) == (14, 1, 13)
    staged = orders(con)
    assert len(staged) == 8
    assert (staged["#1006"]["financial_status"], staged["#1006"]["refunded_amount"]) == (
        "refunded",
        45.8,
    )
    assert len(lines(con, "#1005")) == 12
    anna = query(
        con, "select count(*) from staging.orders where customer_id = 'anna.schmidt@example.de'"
    ).item()
    assert anna == 2


def test_shopify_export_cut_inside_an_order_keeps_the_earlier_lines(tmp_path):
    """Before: part b's lone row of #2001 became its line 1 and replaced lines 1-2."""
    con, report = ingest(
        landing_with(tmp_path, "shopify/split_part_a.csv", "shopify/split_part_b.csv")
    )
    assert lines(con, "#2001") == [(1, "SKU-A", 1.0, 10.0, 0.0), (2, "SKU-B", 1.0, 10.0, 0.0)]
    assert orders(con)["#2001"]["total"] == 30.0
    assert lines(con, "#2002") == [(1, "SKU-A", 1.0, 10.0, 0.0)]
    message = (
        "shop/split_part_b.csv row 1: order #2001 has no row with its order fields (Total, "
        "Created at, Financial Status) in this file: the export was cut inside this order; "
        "export the orders again without splitting an order's rows"
    )
    assert reasons(con, "split_part_b.csv") == [message, message]  # the order and its line
    assert report.file("shop/split_part_b.csv").rows_quarantined == 1


def test_shopify_export_sorted_in_excel_finds_the_order_row(tmp_path):
    """Before: #1001's first row (a line without order fields) was taken: quarantined."""
    con, report = ingest(landing_with(tmp_path, "shopify/orders_sorted_by_sku.csv"))
    assert report.file("shop/orders_sorted_by_sku.csv").rows_quarantined == 0
    order = orders(con)["#1001"]
    assert (order["total"], order["financial_status"], order["row_number"]) == (91.8, "paid", 3)
    assert sorted(sku for _, sku, *_ in lines(con, "#1001")) == ["LS-M", "TOTE-1"]


def test_shopify_customers_export_ids_phones_and_order_link(tmp_path):
    assert detect_kind(UNSEEN / "shopify/customers_export.csv") == "customers"
    con, _ = ingest(
        landing_with(tmp_path, "shopify/customers_export.csv", "shopify/orders_export_1.csv")
    )
    customers = query(
        con,
        "select customer_id, email, phone, country, accepts_email_marketing,"
        " accepts_sms_marketing from staging.customers order by customer_id",
    ).rows()
    # Excel's text guard (') dropped; 'Phone' preferred, 'Default Address Phone' as fallback.
    assert customers[1:4] == [
        ("7012345678901", "anna.schmidt@example.de", "4915112345678", "DE", True, False),
        ("7012345678902", "li.wei@example.com", None, "FR", False, False),
        ("7012345678903", "jonas@example.org", "491705556666", "DE", True, True),
    ]
    # Who ordered without being in the customers export is a customer from the orders
    # (the COD buyer known by phone; guests by e-mail), with no consent anybody gave.
    assert [(c[0], c[3], c[4], c[5]) for c in customers[:1] + customers[4:]] == [
        ("+971501234567", "AE", False, False),
        ("bulk.buyer@example.com", "NL", False, False),
        ("mixed.case@example.com", "AT", False, False),
        ("pierre@example.fr", "FR", False, False),
    ]
    staged = orders(con)
    assert staged["#1001"]["customer_id"] == "7012345678901"
    assert staged["#1003"]["customer_id"] == "7012345678903"


def test_shopify_products_export_variants_and_image_rows(tmp_path):
    con, report = ingest(landing_with(tmp_path, "shopify/products_export.csv"))
    result = report.file("shop/products_export.csv")
    assert result.message == (
        "Shopify product export; skipped 1 image-only row(s) without a variant"
    )
    products = query(
        con, "select sku, title, category, price, unit_cost from staging.products order by sku"
    ).rows()
    assert products == [
        ("Canvas Tote", "Canvas Tote", "Bags", 30.0, 8.0),
        ("LS-M", "Linen Shirt", "Shirts", 29.95, 9.5),
        ("LS-S", "Linen Shirt", "Shirts", 29.95, 9.5),
        ("Wool Socks - Grey", "Wool Socks", "Socks", 19.95, 4.0),
    ]


# --- WooCommerce -----------------------------------------------------------------------


def test_woocommerce_german_excel_semicolons_decimal_commas_cp1252(tmp_path):
    """Before: failed ('lacks customer_id or email'); with aliases alone, '1.000' was 1.0,
    'wc-cancelled' was not cancelled and every guest was customer '0'."""
    name = "woocommerce/bestellungen_excel_de.csv"
    assert detect_kind(UNSEEN / name) == "orders"
    con, report = ingest(landing_with(tmp_path, name))
    assert report.file("shop/bestellungen_excel_de.csv").message == (
        "decimal commas read as in 1.234,56"
    )
    staged = orders(con)
    first, refunded, cancelled, big = (staged[k] for k in ("8101", "8102", "8103", "8104"))
    assert (first["customer_id"], first["total"], first["tax"], first["shipping"]) == (
        "17", 1234.56, 197.9, 4.9,
    )  # fmt: skip
    assert first["created_at"] == datetime(2025, 3, 5, 14, 22)
    assert (refunded["customer_id"], refunded["financial_status"]) == ("zoe@example.fr", "refunded")
    assert (refunded["refunded_amount"], refunded["discount"]) == (49.9, 5.0)
    assert (cancelled["customer_id"], cancelled["is_cancelled"]) == ("ole@example.dk", True)
    assert (big["total"], big["tax"]) == (1000.0, pytest.approx(1.596))
    names = query(
        con, "select first_name, last_name from staging.customers order by customer_id"
    ).rows()
    assert ("Jürgen", "Größ") in names and ("Ole", "Ærø") in names


# --- Ads -------------------------------------------------------------------------------


def ad_rows(con) -> list[tuple]:
    return query(
        con,
        "select date, platform, campaign_name, currency, spend, impressions, clicks,"
        " platform_conversions, platform_conversion_value from staging.ad_spend"
        " order by date, campaign_name",
    ).rows()


def test_meta_gbp_daily_with_empty_cells_and_summary_row(tmp_path):
    con, report = ingest(landing_with(tmp_path, "meta/ads_manager_gbp_daily.csv"))
    result = report.file("shop/ads_manager_gbp_daily.csv")
    # Before: the summary row (no day, no campaign) vanished without a word.
    assert result.message == "Meta Ads Manager export; skipped 1 summary row(s)"
    assert ad_rows(con) == [
        (date(2025, 3, 1), "meta", "UK Prospecting", "GBP", 210.55, 12034.0, 140.0, 3.0, 420.0),
        (date(2025, 3, 1), "meta", "UK Retargeting", "GBP", 0.0, 0.0, 0.0, 0.0, 0.0),
        (date(2025, 3, 2), "meta", "UK Prospecting", "GBP", 190.1, 9980.0, 0.0, 0.0, 0.0),
    ]
    spend_usd = query(con, "select sum(spend_usd) from staging.ad_spend").item()
    assert spend_usd == pytest.approx((210.55 + 190.1) * 1.25)


def test_meta_ad_set_rows_are_summed_and_a_total_named_campaign_is_kept(tmp_path):
    """Before: 'Total Protection - Launch' was dropped as a summary row, and the second
    ad set of 'DE Broad' was quarantined as a conflict (its spend lost)."""
    con, report = ingest(landing_with(tmp_path, "meta/ads_manager_reordered_eur.csv"))
    assert report.file("shop/ads_manager_reordered_eur.csv").message == (
        "Meta Ads Manager export; 3 rows at 'Ad set name' level added up to 2 campaign-day rows"
    )
    assert ad_rows(con) == [
        (date(2025, 3, 3), "meta", "DE Broad", "EUR", 25.5, 1900.0, 40.0, 1.0, 45.0),
        (date(2025, 3, 3), "meta", "Total Protection - Launch", "EUR", 15.0, 800.0, 12.0, 1.0, 99.0),
    ]  # fmt: skip


def test_meta_export_without_daily_breakdown_is_not_put_on_one_day(tmp_path):
    """Before: a month's spend was staged on its first day."""
    con, _ = ingest(landing_with(tmp_path, "meta/ads_manager_monthly_no_day.csv"))
    assert ad_rows(con) == []
    assert reasons(con, "ads_manager_monthly_no_day.csv") == [
        "shop/ads_manager_monthly_no_day.csv row 1: covers 2025-03-01 to 2025-03-31, not one "
        "day: export from Ads Manager with Breakdown > By time > Day"
    ]


def test_meta_export_resaved_by_uk_excel_reads_dates_day_first(tmp_path):
    con, report = ingest(landing_with(tmp_path, "meta/ads_manager_uk_excel_dates.csv"))
    assert (
        "dates read day first (DD/MM/YYYY)"
        in report.file("shop/ads_manager_uk_excel_dates.csv").message
    )
    dates = [row[0] for row in ad_rows(con)]
    assert dates == [date(2025, 2, 28), date(2025, 3, 1), date(2025, 3, 13)]


def test_google_ads_utf16_with_totals_and_a_campaign_named_total(tmp_path):
    con, report = ingest(landing_with(tmp_path, "google/campaign_report_excel.csv"))
    result = report.file("shop/campaign_report_excel.csv")
    assert (result.layout, result.rows_read, result.rows_staged) == ("google_ads", 3, 3)
    assert result.message == "Google Ads export; skipped 2 summary row(s)"
    assert ad_rows(con) == [
        (date(2025, 3, 1), "google", "UK PMax", "GBP", 210.0, 9870.0, 120.0, 0.0, 0.0),
        (date(2025, 3, 1), "google", "UK Search - Brand", "GBP", 1234.56, 12345.0, 845.0, 31.0, 2790.0),
        (date(2025, 3, 2), "google", "Total Care - Search", "GBP", 15.0, 300.0, 4.0, 0.0, 0.0),
    ]  # fmt: skip


def test_tiktok_by_day_with_dashes_and_total_row(tmp_path):
    """Before: '-' (TikTok's empty metric) quarantined the row."""
    con, report = ingest(landing_with(tmp_path, "tiktok/by_day_complete_payment.csv"))
    assert report.file("shop/by_day_complete_payment.csv").rows_quarantined == 0
    assert ad_rows(con) == [
        (date(2025, 3, 1), "tiktok", "TT Spring", "EUR", 1055.2, 40123.0, 312.0, 5.0, 1410.0),
        (date(2025, 3, 2), "tiktok", "TT Spring", "EUR", 61.75, 42001.0, 301.0, 0.0, 0.0),
    ]


def test_tiktok_purchase_value_template_takes_the_store_currency(tmp_path):
    con, _ = ingest(landing_with(tmp_path, "tiktok/purchase_value_no_currency.csv"))
    assert ad_rows(con) == [
        (date(2025, 3, 3), "tiktok", "Spark Ads", "EUR", 10.0, 100.0, 5.0, 1.0, 45.0)
    ]


def test_campaign_ids_mangled_by_excel_fall_back_to_campaign_names(tmp_path):
    """Before: both campaigns had id '1.79E+15': the second was quarantined as a conflict."""
    con, report = ingest(landing_with(tmp_path, "tiktok/excel_resaved_ids.csv"))
    assert report.file("shop/excel_resaved_ids.csv").message == (
        "TikTok Ads export; 2 campaign_id value(s) like '1.79E+15' were turned into numbers "
        "by Excel (digits lost) and are not used; the campaign name identifies the row instead"
    )
    rows = query(
        con, "select campaign_id, campaign_name, spend from staging.ad_spend order by spend"
    ).rows()
    assert rows == [(None, "TT Retarget", 5.0), (None, "TT Spring", 20.0)]


def test_order_ids_mangled_by_excel_are_quarantined(tmp_path):
    text = ORDERS + "1.00E+05,a@example.com,2025-03-05,EUR,5\n"
    text += "100001,b@example.com,2025-03-05,EUR,6\n"
    con, _ = ingest(landing_with(tmp_path, extra={"orders.csv": text.encode()}))
    assert staged_totals(con) == [("100001", "EUR", 6.0)]
    assert reasons(con, "orders.csv") == [
        "shop/orders.csv row 1: order_id '1.00E+05' was turned into a number by Excel "
        "(digits lost); export the file again and do not open and save it in Excel"
    ]


# --- Broken files ----------------------------------------------------------------------


def staged_totals(con) -> list[tuple]:
    return query(
        con, "select order_id, currency, total from staging.orders order by order_id"
    ).rows()


TWO = [("1", "EUR", 100.0), ("2", "EUR", 50.5)]


@pytest.mark.parametrize(
    ("name", "totals", "message"),
    [
        ("trailing_delimiter.csv", TWO, ""),
        ("duplicate_columns.csv", TWO, ""),
        ("bom_sep_hint.csv", TWO, ""),
        ("utf16le_no_bom.csv", TWO, ""),  # before: 'binary content'
        (
            "nul_padding.csv",  # before: 'binary content'
            TWO,
            "removed 4096 NUL bytes of padding at the end; check that the file is complete",
        ),
        # Before: the lone CR glued rows 2 and 3 (total 50.503, row 3 gone).
        ("mixed_line_endings.csv", [*TWO, ("3", "EUR", 7.0)], ""),
        # Before: failed ('lacks required column(s): total').
        (
            "total_in_eur_column.csv",
            [("W-1", "EUR", 1234.5)],
            "currency EUR taken from the headers",
        ),
        ("header_only.csv", [], "header only, no data rows"),
    ],
)
def test_broken_file_that_can_be_read(tmp_path, name, totals, message):
    con, report = ingest(landing_with(tmp_path, f"broken/{name}"))
    result = report.file(f"shop/{name}")
    assert (result.status, result.message, result.rows_quarantined) == ("ingested", message, 0)
    assert result.rows_read == len(totals)
    assert staged_totals(con) == totals


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv.gz", "empty file (no header, no rows)"),  # before: 'not gzip-compressed'
        ("empty_payload.csv.gz", "empty file (no header, no rows)"),
    ],
)
def test_broken_file_that_fails_says_why(tmp_path, name, message):
    con, report = ingest(landing_with(tmp_path, f"broken/{name}"))
    result = report.file(f"shop/{name}")
    assert (result.status, result.message) == ("failed", message)
    assert reasons(con, name) == [f"shop/{name}: {message}"]


def test_truncated_last_line_is_quarantined_as_cut_off(tmp_path):
    """Before: quarantined as "created_at '2025-03-07 1' is not a valid date/time"."""
    con, report = ingest(landing_with(tmp_path, "broken/truncated_last_line.csv"))
    assert staged_totals(con) == TWO
    assert reasons(con, "truncated_last_line.csv") == [
        "shop/truncated_last_line.csv row 3: row is cut off (3 of 5 fields and the file ends "
        "without a line break): the file is incomplete; upload the complete export again"
    ]


def test_full_last_row_without_line_break_is_staged_with_a_note(tmp_path):
    text = ORDERS + "1,a@example.com,2025-03-05 10:00:00,EUR,100.00\n"
    text += "2,b@example.com,2025-03-06 11:00:00,EUR,50.5"
    con, report = ingest(landing_with(tmp_path, extra={"orders.csv": text.encode()}))
    assert staged_totals(con) == TWO
    assert report.file("shop/orders.csv").message == (
        "the file does not end with a line break; if it was cut off, check row 2"
    )


def test_duplicate_columns_with_different_values_quarantine_the_row(tmp_path):
    """Before: the second 'total' column was ignored whatever it said."""
    con, _ = ingest(landing_with(tmp_path, "broken/duplicate_columns_conflict.csv"))
    assert staged_totals(con) == [("1", "EUR", 100.0), ("3", "EUR", 7.0)]
    assert reasons(con, "duplicate_columns_conflict.csv") == [
        "shop/duplicate_columns_conflict.csv row 2: the header has column 'total' twice and "
        "this row has different values in them ('50.50' and '55.50'); remove or rename the "
        "wrong column"
    ]


def test_unquoted_delimiter_in_a_value_is_quarantined_not_shifted(tmp_path):
    """Before: '1,234.50' unquoted was cut to total 1 and the rest dropped silently."""
    text = ORDERS + "1,a@example.com,2025-03-05 10:00:00,EUR,100\n"
    text += "2,b@example.com,2025-03-06 11:00:00,EUR,1,234.50\n"
    con, report = ingest(landing_with(tmp_path, extra={"orders.csv": text.encode()}))
    assert staged_totals(con) == [("1", "EUR", 100.0)]
    assert reasons(con, "orders.csv") == [
        "shop/orders.csv row 2: row has more fields than the header's 5 (a value probably "
        "contains an unquoted ','); put that value in quotes or re-export the file"
    ]


def test_nul_bytes_inside_the_text_fail_with_their_place(tmp_path):
    data = (ORDERS + "1,a@example.com,2025-03-05,EUR,100\n").encode() * 400
    data += b"2,b@ex\x00ample.com,2025-03-06,EUR,5\n"
    _, report = ingest(landing_with(tmp_path, extra={"orders.csv": data}))
    result = report.file("shop/orders.csv")
    assert result.status == "failed"
    assert result.message == (
        f"contains NUL bytes (first at byte {data.index(0)}, line 801): the file is damaged "
        "or not a text export; export it again as CSV"
    )


def test_very_long_text_field_with_quotes_and_newlines(tmp_path):
    source = (UNSEEN / "shopify/orders_export_1.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(source)))
    rows[0]["Notes"] = 'Bitte klingeln, "Hintereingang"\n' * 40_000  # about 1.3 MB
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    payload = gzip.compress(out.getvalue().encode())
    con, report = ingest(landing_with(tmp_path, extra={"orders_export.csv.gz": payload}))
    assert report.file("shop/orders_export.csv.gz").rows_staged == 19
    assert orders(con)["#1001"]["total"] == 91.8


def test_us_twelve_hour_timestamps(tmp_path):
    text = ORDERS + "1,a@example.com,3/5/2025 11:30 PM,EUR,10\n"
    con, report = ingest(landing_with(tmp_path, extra={"orders.csv": text.encode()}))
    assert orders(con)["1"]["created_at"] == datetime(2025, 3, 5, 23, 30)
    assert report.file("shop/orders.csv").message == (
        "dates like 03/05/2025 read month first (MM/DD/YYYY)"
    )


def test_whole_corpus_in_one_store_conserves_every_row(tmp_path):
    every = sorted(str(p.relative_to(UNSEEN)) for p in UNSEEN.rglob("*") if p.is_file())
    every = [f for f in every if not f.endswith(".md")]
    con, report = ingest(landing_with(tmp_path, *every))  # ingest() checks conservation
    results = {r.path.removeprefix("shop/"): r for r in report.files if r.path.startswith("shop/")}
    assert len(results) == len(every)
    failed = sorted(name for name, r in results.items() if r.status == "failed")
    assert failed == ["empty.csv.gz", "empty_payload.csv.gz"]
    quarantined = query(con, "select count(*) from quarantine.rows where level = 'row'").item()
    assert quarantined == sum(r.rows_quarantined for r in results.values()) + 1  # split: 2 kinds


def test_fixture_folder_is_what_the_readme_lists():
    listed = (UNSEEN / "README.md").read_text()
    for path in UNSEEN.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert f"`{path.relative_to(UNSEEN)}`" in listed, path
