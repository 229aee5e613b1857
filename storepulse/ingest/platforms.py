"""The real exports of DESIGN's appendix, recognised by signature columns no
canonical file has (Shopify's `Lineitem quantity`, Meta's `Amount spent (EUR)`,
Google's `Impr.`, TikTok's `Clicks (destination)`, Klaviyo's `Klaviyo ID`), and how
each maps to canonical frames per kind."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

from storepulse.ingest.conventions import tidy
from storepulse.ingest.frames import (
    PROBLEM,
    ROW,
    LayoutError,
    blank_to_null,
    col,
    find,
    problem_expr,
)
from storepulse.ingest.kinds import ROW_PROBLEM, header_key
from storepulse.ingest.normalise import normalise_phone

if TYPE_CHECKING:
    from storepulse.ingest.layouts import Layout

PLATFORM_WORDS = {
    "meta": ("meta", "facebook", "fb", "instagram"),
    "google": ("google", "adwords"),
    "tiktok": ("tiktok",),
    "pinterest": ("pinterest",),
    "snapchat": ("snapchat", "snap"),
    "bing": ("bing", "microsoft"),
}


def is_shopify(keys: set[str]) -> bool:
    return "lineitem_quantity" in keys and "name" in keys


def meta_spend_column(columns: tuple[str, ...]) -> str | None:
    return next((c for c in columns if header_key(c).startswith("amount_spent")), None)


def is_google(keys: set[str]) -> bool:
    return "impr" in keys or "conv_value" in keys or ("currency_code" in keys and "cost" in keys)


TIKTOK_MARKERS = {
    "clicks_destination", "total_complete_payment", "total_purchase_value", "by_day",
    "stat_time_day", "complete_payment", "cpc_destination", "complete_payment_roas",
}  # fmt: skip


def is_tiktok(keys: set[str]) -> bool:
    return bool(keys & TIKTOK_MARKERS)


KLAVIYO_ACTIVITY = {"profile_created_on", "last_active", "date_added", "last_open", "last_click"}


def is_klaviyo(keys: set[str]) -> bool:
    """A Klaviyo profile (list or segment) export."""
    return "email" in keys and (
        "klaviyo_id" in keys
        or ("email_marketing_consent" in keys and bool(keys & KLAVIYO_ACTIVITY))
    )


def platform_from_name(source_name: str) -> str | None:
    """'shop_a/facebook_ads_march.csv' -> 'meta' (for ad files without a platform column)."""
    words = set(re.split(r"[^a-z0-9]+", source_name.lower()))
    for platform, names in PLATFORM_WORDS.items():
        if words & set(names):
            return platform
    return None


def _subtotal_before_discount(subtotal: pl.Expr, discount: pl.Expr) -> pl.Expr:
    """Shopify's `Subtotal` is after the order discount; the canonical `subtotal` is before
    it (total = subtotal − discount + shipping + tax), so the discount is added back. A
    value that does not parse is passed through unchanged for staging to quarantine."""

    def number(expr: pl.Expr) -> pl.Expr:
        return expr.str.strip_chars().str.replace_all(",", "").cast(pl.Float64, strict=False)

    added = (number(subtotal) + number(discount).fill_null(0.0)).round(2).cast(pl.Utf8)
    return pl.when(number(subtotal).is_not_null()).then(added).otherwise(subtotal)


def _zero_if_blank(expr: pl.Expr) -> pl.Expr:
    """Ad platforms leave a cell empty or write '--' (Google) or '-' (TikTok) for zero."""
    text = expr.str.strip_chars()
    blank = text.is_null() | text.is_in(["", "-", "--", "\u2013", "\u2014"])
    return pl.when(blank).then(pl.lit("0")).otherwise(text)


SUMMARY_ROW = r"(?i)^\s*total(\s*:|\s+of\s+\d[\d,.]*\s+results?\b|\s*$)"


def _drop_summary_rows(frame: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, int]:
    """Drop 'Total: Account' / 'Total of 3 results' / 'Total' rows that reports append
    (a campaign named 'Total Care - Search' is a campaign, not a summary)."""
    present = [c for c in columns if c is not None and c in frame.columns]
    if not present:
        return frame, 0
    is_total = pl.any_horizontal([pl.col(c).str.contains(SUMMARY_ROW) for c in present]).fill_null(
        False
    )
    kept = frame.filter(~is_total)
    return kept, frame.height - kept.height


def _store_expr(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.Expr:
    return col(frame, find(columns, "store_id", "store", "shop", "shop_id")).alias("store_id")


def _with_phone_customer_id(orders: pl.DataFrame) -> pl.DataFrame:
    """Shopify has no customer id; the customer is the e-mail. Cash-on-delivery orders
    often have a phone and no e-mail: the customer is then the phone number, normalised
    as in DESIGN §6 (digits with the country code) behind a '+'."""
    no_email = (
        blank_to_null(pl.col("email")).is_null() & blank_to_null(pl.col("phone")).is_not_null()
    )
    phone_only = orders.filter(no_email).select(ROW, "phone", "ship_country")
    ids = [
        normalise_phone(phone, country)
        for phone, country in zip(phone_only["phone"], phone_only["ship_country"], strict=True)
    ]
    found = phone_only.select(ROW).with_columns(
        pl.Series("customer_id", [f"+{i}" if i else None for i in ids], dtype=pl.Utf8)
    )
    return orders.join(found, on=ROW, how="left")


def _map_shopify(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    name = find(cols, "name")
    order_key = pl.col(name).str.strip_chars()
    # The order's own fields are on one of its rows, normally the first; a file sorted
    # in Excel moves it, so the row that has them is taken wherever it is.
    fields = [find(cols, c) for c in ("total", "financial_status", "created_at")]
    filled = [blank_to_null(pl.col(c)).is_not_null() for c in fields if c]
    has_fields = pl.any_horizontal(filled) if filled else pl.lit(True)
    # (First rows by a mask, not `unique` on the whole frame: that regroups every column.)
    with_fields = frame.filter(has_fields).filter(pl.col(name).is_first_distinct())
    # An order none of whose rows has them was cut off from its first row (a file split
    # by hand): staging it would replace the order's other lines, so it is refused.
    fragments = (
        frame.select(name)
        .unique(subset=[name], keep="first", maintain_order=True)
        .join(with_fields.select(name), on=name, how="anti", nulls_equal=True)
        .get_column(name)
    )
    if fragments.len():
        frame = frame.with_columns(
            pl.when(pl.col(name).is_in(fragments.implode(), nulls_equal=True))
            .then(
                pl.format(
                    "order {} has no row with its order fields (Total, Created at, Financial "
                    "Status) in this file: the export was cut inside this order; export the "
                    "orders again without splitting an order's rows",
                    order_key,
                )
            )
            .otherwise(pl.col(PROBLEM))
            .alias(PROBLEM)
        )
        cut = frame.filter(pl.col(name).is_in(fragments.implode(), nulls_equal=True))
        first_rows = pl.concat(
            [with_fields, cut.unique(subset=[name], keep="first", maintain_order=True)]
        )
    else:
        first_rows = with_fields
    notes = col(first_rows, find(cols, "note_attributes"))

    def utm(tag: str) -> pl.Expr:
        return notes.str.extract(rf"(?i){tag}\s*[:=]\s*([^\s,;&]+)", 1).alias(tag)

    billing_name = pl.coalesce(
        col(first_rows, find(cols, "billing_name")),
        col(first_rows, find(cols, "shipping_name")),
    )
    ship_country = pl.coalesce(
        col(first_rows, find(cols, "shipping_country")),
        col(first_rows, find(cols, "billing_country")),
    )
    orders = first_rows.select(
        pl.col(ROW),
        _store_expr(first_rows, cols),
        pl.col(name).str.strip_chars().alias("order_id"),
        col(first_rows, find(cols, "email")).alias("email"),
        col(first_rows, find(cols, "created_at")).alias("created_at"),
        col(first_rows, find(cols, "currency")).alias("currency"),
        _subtotal_before_discount(
            col(first_rows, find(cols, "subtotal")),
            col(first_rows, find(cols, "discount_amount")),
        ).alias("subtotal"),
        col(first_rows, find(cols, "discount_amount")).alias("discount"),
        col(first_rows, find(cols, "shipping")).alias("shipping"),
        col(first_rows, find(cols, "taxes")).alias("tax"),
        col(first_rows, find(cols, "total")).alias("total"),
        col(first_rows, find(cols, "financial_status")).alias("financial_status"),
        col(first_rows, find(cols, "refunded_amount")).alias("refunded_amount"),
        col(first_rows, find(cols, "cancelled_at")).alias("cancelled_at"),
        col(first_rows, find(cols, "payment_method")).alias("payment_method"),
        utm("utm_source"),
        utm("utm_medium"),
        utm("utm_campaign"),
        ship_country.alias("ship_country"),
        pl.coalesce(
            col(first_rows, find(cols, "phone")),
            col(first_rows, find(cols, "billing_phone")),
            col(first_rows, find(cols, "shipping_phone")),
        ).alias("phone"),
        billing_name.str.extract(r"^\s*(\S+)", 1).alias("first_name"),
        billing_name.str.extract(r"^\s*\S+\s+(.+?)\s*$", 1).alias("last_name"),
        col(first_rows, find(cols, "accepts_marketing")).alias("accepts_email_marketing"),
        col(first_rows, find(cols, "discount_code")).alias("discount_code"),
        col(first_rows, find(cols, "billing_country")).alias("billing_country"),
        problem_expr(first_rows),
    )
    orders = _with_phone_customer_id(orders)
    sku = pl.coalesce(
        col(frame, find(cols, "lineitem_sku")).str.strip_chars().replace("", None),
        col(frame, find(cols, "lineitem_name")),
    )
    # Line numbers follow the first appearance of each distinct row within its order, so
    # an exact copy of a row (a re-export glitch) gets the same line_no and is counted
    # as a duplicate instead of becoming an extra line.
    # (Numbered by a join on the distinct (order, first row) pairs: a dense rank inside
    # a window took ~30 µs a row, 18 s for a 570k-row export.)
    content = frame.select(pl.exclude(ROW, PROBLEM)).hash_rows(seed=0)
    frame = frame.with_columns(order_key.alias("__order"), content.alias("__content"))
    frame = frame.with_columns(pl.col(ROW).min().over("__order", "__content").alias("__first"))
    numbers = (
        frame.select("__order", "__first")
        .unique()
        .sort("__order", "__first", nulls_last=True)
        .with_columns((pl.int_range(pl.len()).over("__order") + 1).alias("__line"))
    )
    frame = frame.join(
        numbers, on=["__order", "__first"], how="left", nulls_equal=True, maintain_order="left"
    )
    lines = frame.select(
        pl.col(ROW),
        _store_expr(frame, cols),
        order_key.alias("order_id"),
        pl.col("__line").cast(pl.Utf8).alias("line_no"),
        sku.alias("sku"),
        col(frame, find(cols, "lineitem_quantity")).alias("quantity"),
        col(frame, find(cols, "lineitem_price")).alias("unit_price"),
        col(frame, find(cols, "lineitem_discount")).alias("line_discount"),
        problem_expr(frame),
    )
    return {"orders": orders, "order_lines": lines}, "Shopify order export"


def _ad_frame(
    frame: pl.DataFrame,
    layout: Layout,
    source_name: str,
    *,
    platform: str,
    date: str | None,
    spend: str | None,
    currency: pl.Expr,
    campaign_id: str | None,
    campaign_name: str | None,
    impressions: str | None,
    clicks: str | None,
    conversions: str | None,
    conversion_value: str | None,
    country: str | None,
    label: str,
    problem: pl.Expr | None = None,
    sub_level: str | None = None,
):
    if date is None or spend is None:
        raise LayoutError(
            f"{label} export without a "
            + (" or ".join(x for x, v in (("date/day", date), ("cost/spend", spend)) if v is None))
            + " column; export it with a daily breakdown and the cost column"
        )
    frame, dropped = _drop_summary_rows(frame, [date, campaign_name])
    # Rows with neither a date nor a campaign are report footers (Meta's summary row).
    before = frame.height
    frame = frame.filter(
        blank_to_null(pl.col(date)).is_not_null()
        | blank_to_null(col(frame, campaign_name)).is_not_null()
    )
    dropped += before - frame.height
    out = frame.select(
        pl.col(ROW),
        pl.col(date).alias("date"),
        _store_expr(frame, layout.columns),
        pl.lit(platform).alias("platform"),
        col(frame, campaign_id).alias("campaign_id"),
        col(frame, campaign_name).alias("campaign_name"),
        col(frame, country).alias("country"),
        currency.alias("currency"),
        _zero_if_blank(pl.col(spend)).alias("spend"),
        _zero_if_blank(col(frame, impressions)).alias("impressions"),
        _zero_if_blank(col(frame, clicks)).alias("clicks"),
        _zero_if_blank(col(frame, conversions)).alias("platform_conversions"),
        _zero_if_blank(col(frame, conversion_value)).alias("platform_conversion_value"),
        (problem if problem is not None else col(frame, PROBLEM)).alias(ROW_PROBLEM),
    )
    note = f"{label} export" + (f"; skipped {dropped} summary row(s)" if dropped else "")
    if sub_level is not None:
        before = out.height
        out, summed = _sum_to_campaign_days(out)
        if summed:
            note += (
                f"; {before} rows at {sub_level!r} level added up to {before - summed} "
                "campaign-day rows"
            )
    return {"ad_spend": out}, note


AD_METRICS = ("spend", "impressions", "clicks", "platform_conversions", "platform_conversion_value")
AD_KEY = ("date", "store_id", "platform", "campaign_id", "campaign_name", "country", "currency")


def _sum_to_campaign_days(out: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """An export at ad set / ad group / ad level has several rows per campaign and day;
    staging.ad_spend is per campaign and day, so they are added up (the first row's
    number stands for the sum). Rows with a problem, or any number that does not parse,
    are left alone for staging to report."""
    tidied, _ = tidy(out, "ad_spend")
    parsed = tidied.with_columns(
        pl.col(m).str.strip_chars().str.replace_all(",", "").cast(pl.Float64, strict=False)
        for m in AD_METRICS
    )
    bad = (
        pl.any_horizontal([pl.col(m).is_null() for m in AD_METRICS])
        | pl.col(ROW_PROBLEM).is_not_null()
    )
    usable = parsed.filter(~bad)
    if usable.height == usable.select(AD_KEY).unique().height:
        return out, 0
    summed = (
        usable.group_by(AD_KEY, maintain_order=True)
        .agg(pl.col(ROW).min(), *[pl.col(m).sum().round(6) for m in AD_METRICS])
        .with_columns(
            [pl.col(m).cast(pl.Utf8).str.replace(r"\.0$", "") for m in AD_METRICS]
            + [pl.lit(None, pl.Utf8).alias(ROW_PROBLEM)]
        )
        .select(out.columns)
    )
    rest = tidied.join(parsed.filter(bad).select(ROW), on=ROW, how="semi")
    merged = pl.concat([summed, rest]).sort(ROW)
    return merged, usable.height - summed.height


def _map_meta(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    spend = meta_spend_column(cols)
    found = re.search(r"\(([A-Za-z]{3})\)", spend or "")
    currency_col = find(cols, "currency")
    currency = pl.lit(found.group(1).upper()) if found else col(frame, currency_col)
    problem = None
    starts, ends = find(cols, "reporting_starts"), find(cols, "reporting_ends")
    if find(cols, "day", "date") is None and starts and ends:
        # Without a daily breakdown a row covers Reporting starts..ends: its spend
        # cannot be given to one day.
        problem = (
            pl.when(pl.col(starts).str.strip_chars() != pl.col(ends).str.strip_chars())
            .then(
                pl.format(
                    "covers {} to {}, not one day: export from Ads Manager with "
                    "Breakdown > By time > Day",
                    pl.col(starts).str.strip_chars(),
                    pl.col(ends).str.strip_chars(),
                )
            )
            .otherwise(pl.col(PROBLEM))
        )
    return _ad_frame(
        frame, layout, source_name, platform="meta", label="Meta Ads Manager",
        date=find(cols, "day", "date", "reporting_starts"), spend=spend, currency=currency,
        campaign_id=find(cols, "campaign_id"), campaign_name=find(cols, "campaign_name", "campaign"),
        impressions=find(cols, "impressions"),
        clicks=find(cols, "link_clicks", "clicks_all", "clicks"),
        conversions=find(cols, "purchases", "website_purchases", "results"),
        conversion_value=find(cols, "purchases_conversion_value",
                               "website_purchases_conversion_value", "purchase_conversion_value"),
        country=find(cols, "country"), problem=problem,
        sub_level=find(cols, "ad_set_name", "ad_set_id", "ad_name", "ad_id"),
    )  # fmt: skip


def _map_google(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    return _ad_frame(
        frame, layout, source_name, platform="google", label="Google Ads",
        date=find(cols, "day", "date"), spend=find(cols, "cost", "spend"),
        currency=col(frame, find(cols, "currency_code", "currency")),
        campaign_id=find(cols, "campaign_id"), campaign_name=find(cols, "campaign"),
        impressions=find(cols, "impr", "impressions"), clicks=find(cols, "clicks"),
        conversions=find(cols, "conversions", "all_conv"),
        conversion_value=find(cols, "conv_value", "conversion_value", "all_conv_value"),
        country=find(cols, "country_territory", "country"),
        sub_level=find(cols, "ad_group", "ad_group_id", "ad_group_name", "ad", "ad_id", "keyword"),
    )  # fmt: skip


def _map_tiktok(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    return _ad_frame(
        frame, layout, source_name, platform="tiktok", label="TikTok Ads",
        date=find(cols, "date", "by_day", "stat_time_day", "day"),
        spend=find(cols, "cost", "spend", "total_cost"),
        currency=col(frame, find(cols, "currency", "currency_code")),
        campaign_id=find(cols, "campaign_id"), campaign_name=find(cols, "campaign_name", "campaign"),
        impressions=find(cols, "impressions", "impression"),
        clicks=find(cols, "clicks_destination", "clicks", "clicks_all"),
        conversions=find(cols, "conversions", "complete_payment", "purchases", "result"),
        conversion_value=find(cols, "total_complete_payment", "total_purchase_value",
                               "complete_payment_value", "purchase_value", "total_purchase"),
        country=find(cols, "country", "country_code", "location"),
        sub_level=find(cols, "ad_group_name", "ad_group_id", "ad_name", "ad_id"),
    )  # fmt: skip


# Klaviyo's consent states: NEVER_SUBSCRIBED says nothing (the store's own answer stands).
KLAVIYO_CONSENT = {"subscribed": "true", "unsubscribed": "false", "suppressed": "false"}


def _map_klaviyo(frame: pl.DataFrame, layout: Layout, source_name: str):
    """Klaviyo profile export: only what Klaviyo is the authority on, the e-mail and
    the consents (an unsubscribe there must stop the next upload). Names, phones,
    countries and dates in it are Klaviyo's copies, often reformatted ('Germany' for
    DE, the date the profile reached Klaviyo), so they never overwrite the store's."""
    cols = layout.columns

    def consent(*names: str) -> pl.Expr:
        column = find(cols, *names)
        if column is None:
            return pl.lit(None, pl.Utf8)
        state = pl.col(column).str.strip_chars().str.to_lowercase()
        return state.replace_strict(KLAVIYO_CONSENT, default=None, return_dtype=pl.Utf8)

    out = frame.select(
        pl.col(ROW),
        _store_expr(frame, cols),
        pl.col(find(cols, "email")).alias("email"),
        consent("email_marketing_consent", "email_consent").alias("accepts_email_marketing"),
        consent("sms_marketing_consent", "sms_consent").alias("accepts_sms_marketing"),
        problem_expr(frame),
    )
    ignored = [c for c in cols if header_key(c) not in ("email", "store_id")]
    return {"customers": out}, (
        "Klaviyo profile export: e-mail consents read; its copies of names, phones, "
        f"countries and dates are not ({len(ignored)} other columns)"
    )


def _map_shopify_products(frame: pl.DataFrame, layout: Layout, source_name: str):
    """Shopify 'Export products': one row per variant; title, type and vendor only on a
    product's first row (filled down by Handle); rows with only an extra image (no
    variant) are not products and are skipped, and counted in the note."""
    cols = layout.columns
    handle = pl.col(find(cols, "handle")).str.strip_chars()
    sku = find(cols, "variant_sku")
    variant_fields = [
        c for c in (sku, find(cols, "variant_price"), find(cols, "option1_value")) if c
    ]
    is_variant = pl.any_horizontal([blank_to_null(pl.col(c)).is_not_null() for c in variant_fields])
    kept = frame.filter(is_variant)
    skipped = frame.height - kept.height

    def product_field(*names: str) -> pl.Expr:
        column = find(cols, *names)
        if column is None:
            return pl.lit(None, pl.Utf8)
        return blank_to_null(pl.col(column)).drop_nulls().first().over(handle)

    # A variant without a SKU gets the name Shopify gives its order line items
    # ('Linen Shirt - M / Blue', or the title alone), the fallback the order export uses.
    options = [
        blank_to_null(pl.col(c))
        for c in (find(cols, f"option{i}_value") for i in (1, 2, 3))
        if c is not None
    ]
    option_text = (
        pl.concat_str(options, separator=" / ", ignore_nulls=True) if options else pl.lit(None)
    )
    title = product_field("title")
    line_name = (
        pl.when(option_text.is_null() | (option_text == "") | (option_text == "Default Title"))
        .then(title)
        .otherwise(pl.concat_str([title, option_text], separator=" - "))
    )
    out = kept.select(
        pl.col(ROW),
        _store_expr(kept, cols),
        pl.coalesce(blank_to_null(pl.col(sku)).str.strip_chars(), line_name).alias("sku"),
        title.alias("title"),
        product_field("type", "product_category", "product_type").alias("category"),
        col(kept, find(cols, "variant_price")).alias("price"),
        col(kept, find(cols, "cost_per_item")).alias("unit_cost"),
        problem_expr(kept),
    )
    note = "Shopify product export" + (
        f"; skipped {skipped} image-only row(s) without a variant" if skipped else ""
    )
    return {"products": out}, note


MAPPERS: dict[str, Callable] = {
    "shopify_products": _map_shopify_products,
    "shopify_orders": _map_shopify,
    "meta_ads": _map_meta,
    "google_ads": _map_google,
    "tiktok_ads": _map_tiktok,
    "klaviyo_profiles": _map_klaviyo,
}
