"""Real export layouts as merchants download them (DESIGN.md Appendix).

Shopify "Export orders", Meta Ads Manager, Google Ads and TikTok Ads reports.
They reproduce the quirks ingest must cope with: Shopify's one-row-per-line
layout with order fields only on the first row and `Subtotal` *after*
discounts; Meta's currency inside the header; Google's title lines,
thousands separators, `--` zeros and `Total:` rows; TikTok's own names.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

TAX_COLUMNS = [f"Tax {i} {part}" for i in range(1, 6) for part in ("Name", "Value")]
SHOPIFY_COLUMNS = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
    "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code",
    "Discount Amount", "Shipping Method", "Created at", "Lineitem quantity", "Lineitem name",
    "Lineitem price", "Lineitem compare at price", "Lineitem sku", "Lineitem requires shipping",
    "Lineitem taxable", "Lineitem fulfillment status", "Billing Name", "Billing Street",
    "Billing Address1", "Billing Address2", "Billing Company", "Billing City", "Billing Zip",
    "Billing Province", "Billing Country", "Billing Phone", "Shipping Name", "Shipping Street",
    "Shipping Address1", "Shipping Address2", "Shipping Company", "Shipping City", "Shipping Zip",
    "Shipping Province", "Shipping Country", "Shipping Phone", "Notes", "Note Attributes",
    "Cancelled at", "Payment Method", "Payment Reference", "Refunded Amount", "Vendor",
    "Outstanding Balance", "Employee", "Location", "Device ID", "Id", "Tags", "Risk Level",
    "Source", "Lineitem discount", *TAX_COLUMNS, "Phone", "Receipt Number", "Duties",
    "Billing Province Name", "Shipping Province Name", "Payment ID", "Payment Terms Name",
    "Next Payment Due At", "Payment References",
]  # fmt: skip
SHOPIFY_GATEWAY = {
    "card": "Shopify Payments", "apple_pay": "Shopify Payments", "shop_pay": "Shopify Payments",
    "paypal": "PayPal Express Checkout", "klarna": "Klarna", "sepa_debit": "SEPA Direct Debit",
    "cod": "Cash on Delivery (COD)",
}  # fmt: skip
META_COLUMNS_BEFORE_SPEND = [
    "Day",
    "Campaign name",
    "Ad set name",
    "Reach",
    "Impressions",
    "Frequency",
]
GOOGLE_HEADER = [
    "Day",
    "Campaign",
    "Campaign status",
    "Currency code",
    "Cost",
    "Impr.",
    "Clicks",
    "Conversions",
    "Conv. value",
    "Cost / conv.",
]
TIKTOK_HEADER = [
    "By Day",
    "Campaign name",
    "Campaign ID",
    "Currency",
    "Cost",
    "Impressions",
    "Clicks (destination)",
    "Conversions",
    "Total complete payment",
]


def shopify_timestamp(iso: pl.Expr) -> pl.Expr:
    """'2025-03-05T14:22:10+01:00' -> '2025-03-05 14:22:10 +0100'."""
    return iso.str.replace("T", " ").str.replace(r"([+-]\d\d):(\d\d)$", " ${1}${2}")


def _money(values: pl.Expr) -> pl.Expr:
    """Two decimals always ('12.50'), as exports print money."""
    cents = (values * 100).round(0).cast(pl.Int64)
    magnitude = cents.abs()
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.format(
        "{}{}.{}", sign, magnitude // 100, (magnitude % 100).cast(pl.String).str.zfill(2)
    )


def shopify_orders_export(
    orders: pl.DataFrame,
    lines: pl.DataFrame,
    customers: pl.DataFrame,
    store_name: str,
    tax_rate: float,
    end_date: date,
    first_number: int = 1001,
) -> pl.DataFrame:
    """One row per line item, order fields only on the first row of each order (all strings).

    Orders are named `#<first_number>`, `#<first_number + 1>`… in their order here."""
    people = customers.select(
        pl.col("customer_id"),
        (pl.col("first_name") + " " + pl.col("last_name")).alias("_full_name"),
        pl.col("phone").alias("_phone"),
        pl.col("accepts_email_marketing").alias("_accepts"),
    )
    o = orders.with_row_index("_order_index").join(people, on="customer_id", how="left")
    # Orders from the last two days have not shipped yet when the export is taken.
    shipping_cutoff = pl.lit(str(end_date - timedelta(days=2)))
    o = o.with_columns(
        created=shopify_timestamp(pl.col("created_at")),
        paid=pl.when(pl.col("financial_status").is_in(["paid", "refunded", "partially_refunded"]))
        .then(shopify_timestamp(pl.col("created_at")))
        .otherwise(pl.lit("")),
        fulfilled=(pl.col("financial_status") != "voided")
        & (pl.col("created_at").str.slice(0, 10) <= shipping_cutoff),
        note_attributes=pl.when(pl.col("utm_source") != "")
        .then(
            pl.format(
                "utm_source: {}\nutm_medium: {}\nutm_campaign: {}",
                "utm_source",
                "utm_medium",
                "utm_campaign",
            )
        )
        .otherwise(pl.lit("")),
        shopify_subtotal=pl.col("subtotal") - pl.col("discount"),
    )
    first = pl.col("line_no") == 1
    joined = lines.join(
        o, left_on="_order_index", right_on="_order_index", how="left", suffix="_o"
    ).sort("_order_index", "line_no")

    def order_field(expr: pl.Expr) -> pl.Expr:
        return pl.when(first).then(expr).otherwise(pl.lit(""))

    def text(expr: pl.Expr) -> pl.Expr:
        return expr.cast(pl.String).fill_null("")

    columns = {
        "Name": pl.format("#{}", pl.col("_order_index") + first_number),
        "Email": pl.col("email"),
        "Financial Status": order_field(pl.col("financial_status")),
        "Paid at": order_field(pl.col("paid")),
        "Fulfillment Status": order_field(
            pl.when(pl.col("fulfilled")).then(pl.lit("fulfilled")).otherwise(pl.lit("unfulfilled"))
        ),
        "Fulfilled at": order_field(
            pl.when(pl.col("fulfilled")).then(pl.col("paid")).otherwise(pl.lit(""))
        ),
        "Accepts Marketing": order_field(
            pl.when(pl.col("_accepts")).then(pl.lit("yes")).otherwise(pl.lit("no"))
        ),
        "Currency": order_field(pl.col("currency")),
        "Subtotal": order_field(_money(pl.col("shopify_subtotal"))),
        "Shipping": order_field(_money(pl.col("shipping"))),
        "Taxes": order_field(_money(pl.col("tax"))),
        "Total": order_field(_money(pl.col("total"))),
        "Discount Code": order_field(pl.col("_discount_code")),
        "Discount Amount": order_field(_money(pl.col("discount"))),
        "Shipping Method": order_field(
            pl.when(pl.col("shipping") > 0)
            .then(pl.lit("Standard"))
            .otherwise(pl.lit("Free Shipping"))
        ),
        "Created at": order_field(pl.col("created")),
        "Lineitem quantity": text(pl.col("quantity")),
        "Lineitem name": pl.col("_title"),
        "Lineitem price": _money(pl.col("unit_price")),
        "Lineitem compare at price": pl.lit(""),
        "Lineitem sku": pl.col("sku"),
        "Lineitem requires shipping": pl.lit("true"),
        "Lineitem taxable": pl.lit("true"),
        "Lineitem fulfillment status": pl.when(pl.col("fulfilled"))
        .then(pl.lit("fulfilled"))
        .otherwise(pl.lit("pending")),
        "Billing Name": order_field(pl.col("_full_name")),
        "Billing Country": order_field(
            pl.col("billing_country")
            if "billing_country" in orders.columns
            else pl.col("ship_country")
        ),
        "Billing Phone": order_field(pl.col("_phone")),
        "Shipping Name": order_field(pl.col("_full_name")),
        "Shipping Country": order_field(pl.col("ship_country")),
        "Shipping Phone": order_field(pl.col("_phone")),
        "Note Attributes": order_field(pl.col("note_attributes")),
        "Cancelled at": order_field(text(shopify_timestamp(pl.col("cancelled_at")))),
        "Payment Method": order_field(
            pl.col("payment_method").replace_strict(
                SHOPIFY_GATEWAY, default=pl.col("payment_method")
            )
        ),
        "Refunded Amount": order_field(_money(pl.col("refunded_amount"))),
        "Vendor": pl.lit(store_name),
        "Outstanding Balance": order_field(
            _money(
                pl.when(pl.col("financial_status") == "pending")
                .then(pl.col("total"))
                .otherwise(0.0)
            )
        ),
        "Id": order_field(text(pl.col("_order_index") + 5_100_000_000_000 + (first_number - 1001))),
        "Tags": order_field(
            pl.when(pl.col("_discount_code") == "VIP5").then(pl.lit("member")).otherwise(pl.lit(""))
        ),
        "Risk Level": order_field(pl.lit("Low")),
        "Source": order_field(pl.lit("web")),
        "Lineitem discount": _money(pl.col("line_discount")),
        "Tax 1 Name": order_field(pl.lit(f"MwSt {tax_rate:.0%}")),
        "Tax 1 Value": order_field(_money(pl.col("tax"))),
        "Phone": order_field(pl.col("_phone")),
    }
    exprs = [
        text(columns[name]).alias(name) if name in columns else pl.lit("").alias(name)
        for name in SHOPIFY_COLUMNS
    ]
    return joined.select(exprs)


def _blank_zero(expr: pl.Expr, decimals: int | None = None) -> pl.Expr:
    shown = expr.cast(pl.String) if decimals is None else _money(expr)
    return pl.when(expr == 0).then(pl.lit("")).otherwise(shown)


def meta_ads_export(ads: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Meta Ads Manager daily breakdown; empty cells mean zero; currency inside the spend header."""
    currency = ads["currency"][0]
    frequency = 1.15 + (ads["impressions"].hash(7) % 40).cast(pl.Float64) / 100
    out = ads.with_columns(frequency=frequency).select(
        pl.col("date").cast(pl.String).alias("Day"),
        pl.col("campaign_name").alias("Campaign name"),
        (pl.col("campaign_name").str.split(" | ").list.first() + " - Ad set 1").alias(
            "Ad set name"
        ),
        (pl.col("impressions") / pl.col("frequency"))
        .round(0)
        .cast(pl.Int64)
        .cast(pl.String)
        .alias("Reach"),
        pl.col("impressions").cast(pl.String).alias("Impressions"),
        pl.col("frequency").round(2).cast(pl.String).alias("Frequency"),
        _money(pl.col("spend")).alias(f"Amount spent ({currency})"),
        _blank_zero(pl.col("clicks")).alias("Link clicks"),
        _blank_zero(pl.col("platform_conversions")).alias("Results"),
        pl.when(pl.col("platform_conversions") > 0)
        .then(pl.lit("actions:offsite_conversion.fb_pixel_purchase"))
        .otherwise(pl.lit(""))
        .alias("Result indicator"),
        _blank_zero(pl.col("platform_conversions")).alias("Purchases"),
        _blank_zero(pl.col("platform_conversion_value"), 2).alias("Purchases conversion value"),
        pl.when(pl.col("spend") > 0)
        .then(_blank_zero((pl.col("platform_conversion_value") / pl.col("spend")).round(2), 2))
        .otherwise(pl.lit(""))
        .alias("Purchase ROAS (return on ad spend)"),
        pl.lit(str(start)).alias("Reporting starts"),
        pl.lit(str(end)).alias("Reporting ends"),
    )
    return out


def _thousands(value: float, decimals: int) -> str:
    return "--" if value == 0 else f"{value:,.{decimals}f}"


def write_google_ads_export(ads: pl.DataFrame, path: Path, start: date, end: date) -> int:
    """Google Ads campaign report with title lines, '1,234.56' numbers, '--' zeros, Total rows. Returns data rows."""
    currency = ads["currency"][0]
    rows = []
    for r in ads.iter_rows(named=True):
        cost_per_conv = r["spend"] / r["platform_conversions"] if r["platform_conversions"] else 0.0
        rows.append([
            str(r["date"]), r["campaign_name"], "Enabled", currency, _thousands(r["spend"], 2), _thousands(r["impressions"], 0),
            _thousands(r["clicks"], 0), _thousands(float(r["platform_conversions"]), 2), _thousands(r["platform_conversion_value"], 2),
            _thousands(cost_per_conv, 2),
        ])  # fmt: skip
    # Google prints one total per campaign type and one for the account, after the campaigns.
    campaign_type = pl.col("campaign_name").str.split(" | ").list.first()
    groups = [("Total: Account", pl.lit(True))] + [
        (f"Total: {label}", campaign_type == prefix)
        for prefix, label in (
            ("Search", "Search"),
            ("PMax", "Performance Max"),
            ("Shopping", "Shopping"),
        )
    ]
    for label, members in groups:
        spend, impressions, clicks, conversions, value = (
            ads.filter(members)
            .select(
                pl.col(
                    "spend",
                    "impressions",
                    "clicks",
                    "platform_conversions",
                    "platform_conversion_value",
                ).sum()
            )
            .row(0)
        )
        rows.append(
            [
                label, "", "", currency, _thousands(spend, 2), _thousands(impressions, 0), _thousands(clicks, 0),
                _thousands(float(conversions), 2), _thousands(value, 2),
                _thousands(spend / conversions if conversions else 0.0, 2),
            ]
        )  # fmt: skip
    frame = pl.DataFrame(rows, schema=GOOGLE_HEADER, orient="row")
    frame = frame.with_columns(pl.when(pl.all() != "").then(pl.all()).otherwise(None).name.keep())
    header = f"Campaign report\n{start.strftime('%B')} {start.day}, {start.year} - {end.strftime('%B')} {end.day}, {end.year}\n"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(header)
        frame.write_csv(handle)
    return len(rows) - len(groups)


def tiktok_ads_export(ads: pl.DataFrame) -> pl.DataFrame:
    return ads.select(
        pl.col("date").cast(pl.String).alias("By Day"),
        pl.col("campaign_name").alias("Campaign name"),
        pl.col("campaign_id").alias("Campaign ID"),
        pl.col("currency").alias("Currency"),
        _money(pl.col("spend")).alias("Cost"),
        pl.col("impressions").cast(pl.String).alias("Impressions"),
        pl.col("clicks").cast(pl.String).alias("Clicks (destination)"),
        pl.col("platform_conversions").cast(pl.String).alias("Conversions"),
        _money(pl.col("platform_conversion_value")).alias("Total complete payment"),
    )
