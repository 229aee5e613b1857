"""The four real export layouts of DESIGN's appendix, as merchants download them."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from storepulse.ingest import detect_kind, ingest_landing
from storepulse.warehouse import ensure_schemas, query

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
NOW = datetime(2025, 6, 1, 12, 0, 0)
FX = "date,currency,usd_per_unit\n2025-01-01,EUR,1.08\n2025-01-01,GBP,1.25\n2025-03-02,GBP,1.30\n"
STORES = "store_id,store_name,country,currency,timezone\neu-shop,EU Shop,DE,EUR,Europe/Berlin\n"


def landing_with(
    tmp_path: Path, *fixtures: str, extra: dict[str, str | bytes] | None = None
) -> Path:
    landing = tmp_path / "landing"
    (landing / "eu-shop").mkdir(parents=True)
    (landing / "fx_rates.csv").write_text(FX)
    (landing / "stores.csv").write_text(STORES)
    for name in fixtures:
        shutil.copy(FIXTURES / name, landing / "eu-shop" / name)
    for relative, data in (extra or {}).items():
        target = landing / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return landing


def ingest(landing: Path):
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    return con, ingest_landing(con, landing, now=NOW)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("shopify_orders_export.csv", "orders"),
        ("meta_ads_manager.csv", "ad_spend"),
        ("google_ads_campaign_report.csv", "ad_spend"),
        ("tiktok_ads_report.csv", "ad_spend"),
    ],
)
def test_detect_kind_of_real_exports(name, kind):
    assert detect_kind(FIXTURES / name) == kind


def test_shopify_export_multi_row_orders(tmp_path):
    con, report = ingest(landing_with(tmp_path, "shopify_orders_export.csv"))
    result = report.file("eu-shop/shopify_orders_export.csv")
    assert (result.layout, result.kind) == ("shopify_orders", "orders")
    # 4 line rows: #1001 (2 lines), #1002 (1), #1003 without e-mail (quarantined).
    assert (result.rows_read, result.rows_staged, result.rows_quarantined) == (4, 3, 1)

    orders = query(con, "select * from staging.orders order by order_id").rows(named=True)
    assert [o["order_id"] for o in orders] == ["#1001", "#1002"]
    first, second = orders
    assert first["store_id"] == "eu-shop"  # from the folder
    assert first["customer_id"] == first["email"] == "anna.schmidt@example.de"
    assert first["created_at"] == datetime(2025, 3, 5, 14, 22, 10)
    assert first["order_date"] == date(2025, 3, 5)
    assert (first["currency"], first["subtotal"], first["shipping"], first["tax"], first["total"]) == (
        "EUR", 89.9, 4.9, 15.14, 94.8,
    )  # fmt: skip
    assert first["total_usd"] == pytest.approx(94.8 * 1.08)
    assert (first["utm_source"], first["utm_medium"], first["utm_campaign"]) == (
        "facebook", "paid_social", "spring_sale",
    )  # fmt: skip
    assert first["channel"] == "meta"
    assert (second["financial_status"], second["refunded_amount"], second["discount"]) == (
        "partially_refunded", 40.0, 12.0,
    )  # fmt: skip
    assert second["ship_country"] == "FR"

    lines = query(
        con,
        "select order_id, line_no, sku, quantity, unit_price, line_total_usd from staging.order_lines order by order_id, line_no",
    ).rows()
    assert lines == [
        ("#1001", 1, "LS-M", 2.0, 29.95, pytest.approx(2 * 29.95 * 1.08)),
        ("#1001", 2, "TOTE-1", 1.0, 30.0, pytest.approx(30 * 1.08)),
        ("#1002", 1, "SOCK-W", 3.0, 40.0, pytest.approx((3 * 40 - 12) * 1.08)),
    ]
    reasons = query(con, "select reason from quarantine.rows where kind = 'orders'")[
        "reason"
    ].to_list()
    assert reasons == [
        "eu-shop/shopify_orders_export.csv row 4: neither customer_id nor email is filled; "
        "add one so the order has a customer"
    ]


def test_shopify_orders_take_customer_id_from_customers_by_email(tmp_path):
    customers = "customer_id,email\nC-42, anna.schmidt@EXAMPLE.de\n"
    landing = landing_with(
        tmp_path, "shopify_orders_export.csv", extra={"eu-shop/customers.csv": customers}
    )
    con, _ = ingest(landing)
    ids = query(con, "select order_id, customer_id from staging.orders order by order_id").rows()
    assert ids == [("#1001", "C-42"), ("#1002", "li.wei@example.com")]
    # The customers file names C-42, and its empty fields are filled from her order; the
    # guest who ordered as li.wei is a customer too, from the order alone (a customers
    # file that lists only some customers never drops the others).
    customers = query(
        con,
        "select customer_id, email, first_name, country from staging.customers order by 1",
    ).rows()
    assert customers == [
        ("C-42", "anna.schmidt@example.de", "Anna", "DE"),
        ("li.wei@example.com", "li.wei@example.com", None, "FR"),
    ]


def test_shopify_only_store_gets_its_customers_from_the_export(tmp_path):
    con, _ = ingest(landing_with(tmp_path, "shopify_orders_export.csv"))
    customers = query(
        con,
        "select customer_id, email, email_sha256, phone, first_name, last_name, country, created_at,"
        " accepts_email_marketing, accepts_sms_marketing, ad_personalization_consent"
        " from staging.customers order by customer_id",
    ).rows(named=True)
    assert [c["customer_id"] for c in customers] == [
        "anna.schmidt@example.de",
        "li.wei@example.com",
    ]
    anna, li = customers
    assert (anna["phone"], anna["first_name"], anna["last_name"], anna["country"]) == (
        "49891234567", "Anna", "Schmidt", "DE",
    )  # fmt: skip
    assert anna["created_at"] == datetime(2025, 3, 5, 14, 22, 10)
    assert anna["email_sha256"] == hashlib.sha256(b"anna.schmidt@example.de").hexdigest()
    # 'Accepts Marketing' yes/no is e-mail consent; nobody gave SMS or ad consent.
    assert (anna["accepts_email_marketing"], li["accepts_email_marketing"]) == (True, False)
    assert not any(c["accepts_sms_marketing"] or c["ad_personalization_consent"] for c in customers)


def test_meta_ads_manager_export(tmp_path):
    con, report = ingest(landing_with(tmp_path, "meta_ads_manager.csv"))
    assert report.file("eu-shop/meta_ads_manager.csv").layout == "meta_ads"
    rows = query(
        con,
        "select date, platform, campaign_name, currency, spend, impressions, clicks,"
        " platform_conversions, platform_conversion_value, spend_usd from staging.ad_spend"
        " order by campaign_name, date",
    ).rows()
    assert rows == [
        (date(2025, 3, 1), "meta", "Retargeting - Cart", "EUR", 45.1, 5400.0, 88.0, 3.0, 201.0, pytest.approx(45.1 * 1.08)),
        (date(2025, 3, 1), "meta", "Spring Sale - Prospecting", "EUR", 123.45, 15890.0, 210.0, 4.0, 356.1, pytest.approx(123.45 * 1.08)),
        # Empty Purchases cells mean zero.
        (date(2025, 3, 2), "meta", "Spring Sale - Prospecting", "EUR", 118.0, 14200.0, 190.0, 0.0, 0.0, pytest.approx(118 * 1.08)),
    ]  # fmt: skip


def test_meta_export_with_reporting_starts_only_and_usd_account(tmp_path):
    meta = (
        "Campaign name,Reporting starts,Reporting ends,Impressions,Amount spent (USD),Link clicks\n"
        "Brand,2025-03-04,2025-03-04,1000,12.50,\n"
    )
    con, _ = ingest(landing_with(tmp_path, extra={"eu-shop/fb.csv": meta}))
    row = query(con, "select date, currency, spend, spend_usd, clicks from staging.ad_spend").row(0)
    assert row == (date(2025, 3, 4), "USD", 12.5, 12.5, 0.0)


def test_google_ads_report_with_title_rows_separators_and_totals(tmp_path):
    con, report = ingest(landing_with(tmp_path, "google_ads_campaign_report.csv"))
    result = report.file("eu-shop/google_ads_campaign_report.csv")
    assert result.layout == "google_ads"
    assert result.rows_read == result.rows_staged == 3  # the two 'Total:' rows are not campaigns
    assert "skipped 2 summary row(s)" in result.message
    rows = query(
        con,
        "select date, platform, campaign_name, currency, spend, impressions, clicks,"
        " platform_conversions, platform_conversion_value from staging.ad_spend order by date, campaign_name",
    ).rows()
    assert rows == [
        (date(2025, 3, 1), "google", "PMax - All products", "USD", 210.0, 9870.0, 120.0, 0.0, 0.0),
        (
            date(2025, 3, 1),
            "google",
            "Search - Brand",
            "USD",
            1234.56,
            12345.0,
            845.0,
            31.0,
            2790.0,
        ),
        (date(2025, 3, 2), "google", "Search - Brand", "USD", 998.1, 10001.0, 790.0, 28.5, 2512.25),
    ]


def test_google_ads_utf16_tab_separated_download(tmp_path):
    """Google Ads' 'CSV for Excel' download: UTF-16 with BOM, tab-separated."""
    text = (FIXTURES / "google_ads_campaign_report.csv").read_text()
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    tabbed = "\r\n".join("\t".join(r) for r in rows) + "\r\n"
    landing = landing_with(tmp_path, extra={"eu-shop/Campaign report.csv": tabbed.encode("utf-16")})
    con, report = ingest(landing)
    assert report.file("eu-shop/Campaign report.csv").rows_staged == 3
    total = query(con, "select sum(spend) from staging.ad_spend").item()
    assert total == pytest.approx(1234.56 + 210 + 998.1)


def test_tiktok_ads_report(tmp_path):
    con, report = ingest(landing_with(tmp_path, "tiktok_ads_report.csv"))
    assert report.file("eu-shop/tiktok_ads_report.csv").layout == "tiktok_ads"
    rows = query(
        con,
        "select date, platform, campaign_id, campaign_name, currency, spend, clicks,"
        " platform_conversions, platform_conversion_value, spend_usd from staging.ad_spend"
        " order by date, campaign_id",
    ).rows()
    assert rows == [
        (date(2025, 3, 1), "tiktok", "1790000000000001", "TT Spring UGC", "GBP", 55.2, 312.0, 5.0, 410.0, pytest.approx(55.2 * 1.25)),
        (date(2025, 3, 1), "tiktok", "1790000000000002", "TT Retarget", "GBP", 12.0, 44.0, 0.0, 0.0, pytest.approx(12 * 1.25)),
        # The nearest earlier rate: 2 March uses the 2 March rate.
        (date(2025, 3, 2), "tiktok", "1790000000000001", "TT Spring UGC", "GBP", 61.75, 301.0, 4.0, 322.5, pytest.approx(61.75 * 1.30)),
    ]  # fmt: skip


def test_tiktok_template_aliases(tmp_path):
    tiktok = (
        "Date,Campaign name,Currency,Cost,Impressions,Clicks (destination),Conversions,Total purchase value\n"
        "2025-03-03,Spark,EUR,10.00,100,5,1,45.00\n"
        "Total of 1 result,,EUR,10.00,100,5,1,45.00\n"
    )
    con, report = ingest(landing_with(tmp_path, extra={"eu-shop/tt.csv": tiktok}))
    assert report.file("eu-shop/tt.csv").rows_read == 1
    row = query(con, "select platform, spend, platform_conversion_value from staging.ad_spend").row(
        0
    )
    assert row == ("tiktok", 10.0, 45.0)


def test_tiktok_template_without_cost_fails_clearly(tmp_path):
    tiktok = "By Day,Campaign name,Impressions,Clicks (destination)\n2025-03-03,Spark,100,5\n"
    _, report = ingest(landing_with(tmp_path, extra={"eu-shop/tt.csv": tiktok}))
    result = report.file("eu-shop/tt.csv")
    assert result.status == "failed"
    assert result.message == (
        "TikTok Ads export without a cost/spend column; "
        "export it with a daily breakdown and the cost column"
    )


def test_canonical_ad_spend_without_platform_column_takes_it_from_file_name(tmp_path):
    ads = "date,campaign_id,spend,currency\n2025-03-03,p1,7.5,USD\n"
    con, report = ingest(landing_with(tmp_path, extra={"eu-shop/pinterest_spend.csv": ads}))
    assert (
        "platform 'pinterest' taken from the file name"
        in report.file("eu-shop/pinterest_spend.csv").message
    )
    assert query(con, "select platform, spend from staging.ad_spend").row(0) == ("pinterest", 7.5)


def test_all_four_layouts_together_with_conservation(tmp_path):
    landing = landing_with(
        tmp_path,
        "shopify_orders_export.csv",
        "meta_ads_manager.csv",
        "google_ads_campaign_report.csv",
        "tiktok_ads_report.csv",
    )
    con, report = ingest(landing)
    platforms = query(
        con, "select platform, count(*) from staging.ad_spend group by 1 order by 1"
    ).rows()
    assert platforms == [("google", 3), ("meta", 3), ("tiktok", 3)]
    for result in report.files:
        assert result.status == "ingested"
        assert (
            result.rows_read == result.rows_staged + result.rows_duplicate + result.rows_quarantined
        )


def test_shopify_subtotal_is_after_discount_so_the_discount_is_added_back(tmp_path):
    # Shopify writes Subtotal after the order discount: Total = Subtotal + Shipping + Taxes.
    header = (FIXTURES / "shopify_orders_export.csv").read_text().splitlines()[0]
    columns = header.split(",")
    row = dict.fromkeys(columns, "")
    row.update(
        {
            "Name": "#2001",
            "Email": "d@example.com",
            "Financial Status": "paid",
            "Currency": "EUR",
            "Subtotal": "90.00",
            "Shipping": "5.00",
            "Taxes": "10.00",
            "Total": "105.00",
            "Discount Code": "WELCOME10",
            "Discount Amount": "10.00",
            "Created at": "2025-03-05 14:22:10 +0100",
            "Lineitem quantity": "2",
            "Lineitem price": "50.00",
            "Lineitem sku": "SKU-1",
        }
    )
    csv = header + "\n" + ",".join(row[c] for c in columns) + "\n"
    con, _ = ingest(landing_with(tmp_path, extra={"eu-shop/orders_export.csv": csv}))
    order = query(con, "select subtotal, discount, shipping, tax, total from staging.orders").row(
        0, named=True
    )
    assert order == {
        "subtotal": 100.0,
        "discount": 10.0,
        "shipping": 5.0,
        "tax": 10.0,
        "total": 105.0,
    }
    assert (
        order["subtotal"] - order["discount"] + order["shipping"] + order["tax"] == order["total"]
    )
