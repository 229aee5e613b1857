"""Header -> layout: the real exports of DESIGN's appendix, or a canonical kind.

A layout turns the file's frame (every column a string, plus `__row`, the data row
number) into canonical frames per kind. Real exports are recognised by columns no
canonical file has (`Lineitem quantity`, `Amount spent (EUR)`, `Impr.`, TikTok's
`Clicks (destination)`…); everything else goes through the alias tables of kinds.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from storepulse.ingest.kinds import HeaderMatch, best_canonical_match, header_key, match_header

ROW = "__row"
PLATFORM_WORDS = {
    "meta": ("meta", "facebook", "fb", "instagram"),
    "google": ("google", "adwords"),
    "tiktok": ("tiktok",),
    "pinterest": ("pinterest",),
    "snapchat": ("snapchat", "snap"),
    "bing": ("bing", "microsoft"),
}


class LayoutError(ValueError):
    """A header that is recognised but cannot be used (the message says why and how to fix)."""


@dataclass(frozen=True)
class Layout:
    name: str  # canonical kind name, or shopify_orders / meta_ads / google_ads / tiktok_ads
    kind: str  # the kind the file counts under (orders for Shopify, ad_spend for ads)
    columns: tuple[str, ...]
    match: HeaderMatch | None = None  # for canonical layouts

    def map(self, frame: pl.DataFrame, source_name: str) -> tuple[dict[str, pl.DataFrame], str]:
        """Canonical frames per kind, and a note for the report ('' if nothing to say)."""
        mapper = _MAPPERS.get(self.name)
        if mapper is not None:
            return mapper(frame, self, source_name)
        return _map_canonical(frame, self, source_name)


def _find(columns: tuple[str, ...], *candidates: str) -> str | None:
    """The first file column whose header_key is one of the candidates (in candidate order)."""
    keyed = {}
    for column in columns:
        keyed.setdefault(header_key(column), column)
    for candidate in candidates:
        if candidate in keyed:
            return keyed[candidate]
    return None


def _is_shopify(keys: set[str]) -> bool:
    return "lineitem_quantity" in keys and "name" in keys


def _meta_spend_column(columns: tuple[str, ...]) -> str | None:
    return next((c for c in columns if header_key(c).startswith("amount_spent")), None)


def _is_google(keys: set[str]) -> bool:
    return "impr" in keys or "conv_value" in keys or ("currency_code" in keys and "cost" in keys)


TIKTOK_MARKERS = {
    "clicks_destination", "total_complete_payment", "total_purchase_value", "by_day",
    "stat_time_day", "complete_payment", "cpc_destination", "complete_payment_roas",
}  # fmt: skip


def _is_tiktok(keys: set[str]) -> bool:
    return bool(keys & TIKTOK_MARKERS)


def detect_layout(columns: list[str]) -> Layout | None:
    """The layout a header belongs to, or None when it matches nothing known.

    A canonical match may be incomplete (its `match.missing` says what is absent):
    callers report that as a file-level failure.
    """
    cols = tuple(str(c) for c in columns)
    keys = {header_key(c) for c in cols}
    if _is_shopify(keys):
        return Layout("shopify_orders", "orders", cols)
    if _meta_spend_column(cols):
        return Layout("meta_ads", "ad_spend", cols)
    if _is_tiktok(keys):
        return Layout("tiktok_ads", "ad_spend", cols)
    if _is_google(keys) and ("day" in keys or "date" in keys or "campaign" in keys):
        return Layout("google_ads", "ad_spend", cols)
    match = best_canonical_match(list(cols))
    if match is None:
        return None
    return Layout(match.kind, match.kind, cols, match)


def platform_from_name(source_name: str) -> str | None:
    """'shop_a/facebook_ads_march.csv' -> 'meta' (for ad files without a platform column)."""
    words = set(re.split(r"[^a-z0-9]+", source_name.lower()))
    for platform, names in PLATFORM_WORDS.items():
        if words & set(names):
            return platform
    return None


def _map_canonical(frame: pl.DataFrame, layout: Layout, source_name: str):
    match = layout.match
    assert match is not None
    note = ""
    missing = list(match.missing)
    extra: list[pl.Expr] = []
    if layout.kind == "ad_spend" and missing == ["platform"]:
        platform = platform_from_name(source_name)
        if platform:
            extra.append(pl.lit(platform).alias("platform"))
            missing = []
            note = f"platform '{platform}' taken from the file name"
    if missing:
        raise LayoutError(
            f"looks like {article(layout.kind)} file but lacks required column(s): "
            f"{', '.join(missing)}; add them or rename the matching headers"
        )
    out = frame.select(
        pl.col(ROW), *[pl.col(src).alias(dst) for src, dst in match.mapping.items()], *extra
    )
    return {layout.kind: out}, note


def article(kind: str) -> str:
    """'an orders', 'a customers': for messages."""
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _col(frame: pl.DataFrame, column: str | None) -> pl.Expr:
    return (
        pl.col(column) if column is not None and column in frame.columns else pl.lit(None, pl.Utf8)
    )


def _subtotal_before_discount(subtotal: pl.Expr, discount: pl.Expr) -> pl.Expr:
    """Shopify's `Subtotal` is after the order discount; the canonical `subtotal` is before
    it (total = subtotal − discount + shipping + tax), so the discount is added back. A
    value that does not parse is passed through unchanged for staging to quarantine."""

    def number(expr: pl.Expr) -> pl.Expr:
        return expr.str.strip_chars().str.replace_all(",", "").cast(pl.Float64, strict=False)

    added = (number(subtotal) + number(discount).fill_null(0.0)).round(2).cast(pl.Utf8)
    return pl.when(number(subtotal).is_not_null()).then(added).otherwise(subtotal)


def _zero_if_blank(expr: pl.Expr) -> pl.Expr:
    """Ad platforms leave a cell empty or write '--' for zero."""
    text = expr.str.strip_chars()
    return pl.when(text.is_null() | (text == "") | (text == "--")).then(pl.lit("0")).otherwise(text)


def _drop_summary_rows(frame: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, int]:
    """Drop 'Total: …' / 'Total of N results' rows that reports append."""
    present = [c for c in columns if c is not None and c in frame.columns]
    if not present:
        return frame, 0
    is_total = pl.any_horizontal(
        [pl.col(c).str.strip_chars().str.to_lowercase().str.starts_with("total") for c in present]
    ).fill_null(False)
    kept = frame.filter(~is_total)
    return kept, frame.height - kept.height


def _store_expr(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.Expr:
    return _col(frame, _find(columns, "store_id", "store", "shop", "shop_id")).alias("store_id")


def _map_shopify(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    name = _find(cols, "name")
    first_rows = frame.sort(ROW).unique(subset=[name], keep="first", maintain_order=True)
    notes = _col(first_rows, _find(cols, "note_attributes"))

    def utm(tag: str) -> pl.Expr:
        return notes.str.extract(rf"(?i){tag}\s*[:=]\s*([^\s,;&]+)", 1).alias(tag)

    billing_name = pl.coalesce(
        _col(first_rows, _find(cols, "billing_name")),
        _col(first_rows, _find(cols, "shipping_name")),
    )
    ship_country = pl.coalesce(
        _col(first_rows, _find(cols, "shipping_country")),
        _col(first_rows, _find(cols, "billing_country")),
    )
    orders = first_rows.select(
        pl.col(ROW),
        _store_expr(first_rows, cols),
        pl.col(name).str.strip_chars().alias("order_id"),
        _col(first_rows, _find(cols, "email")).alias("email"),
        _col(first_rows, _find(cols, "created_at")).alias("created_at"),
        _col(first_rows, _find(cols, "currency")).alias("currency"),
        _subtotal_before_discount(
            _col(first_rows, _find(cols, "subtotal")),
            _col(first_rows, _find(cols, "discount_amount")),
        ).alias("subtotal"),
        _col(first_rows, _find(cols, "discount_amount")).alias("discount"),
        _col(first_rows, _find(cols, "shipping")).alias("shipping"),
        _col(first_rows, _find(cols, "taxes")).alias("tax"),
        _col(first_rows, _find(cols, "total")).alias("total"),
        _col(first_rows, _find(cols, "financial_status")).alias("financial_status"),
        _col(first_rows, _find(cols, "refunded_amount")).alias("refunded_amount"),
        _col(first_rows, _find(cols, "cancelled_at")).alias("cancelled_at"),
        _col(first_rows, _find(cols, "payment_method")).alias("payment_method"),
        utm("utm_source"),
        utm("utm_medium"),
        utm("utm_campaign"),
        ship_country.alias("ship_country"),
        pl.coalesce(
            _col(first_rows, _find(cols, "phone")),
            _col(first_rows, _find(cols, "billing_phone")),
            _col(first_rows, _find(cols, "shipping_phone")),
        ).alias("phone"),
        billing_name.str.extract(r"^\s*(\S+)", 1).alias("first_name"),
        billing_name.str.extract(r"^\s*\S+\s+(.+?)\s*$", 1).alias("last_name"),
        _col(first_rows, _find(cols, "accepts_marketing")).alias("accepts_email_marketing"),
    )
    sku = pl.coalesce(
        _col(frame, _find(cols, "lineitem_sku")).str.strip_chars().replace("", None),
        _col(frame, _find(cols, "lineitem_name")),
    )
    # Line numbers follow the first appearance of each distinct row within its order, so
    # an exact copy of a row (a re-export glitch) gets the same line_no and is counted
    # as a duplicate instead of becoming an extra line.
    order_key = pl.col(name).str.strip_chars()
    content = frame.select(pl.exclude(ROW)).hash_rows(seed=0)
    first_seen = pl.col(ROW).min().over(order_key, pl.col("__content"))
    line_no = first_seen.rank("dense").over(order_key).cast(pl.Utf8)
    frame = frame.with_columns(content.alias("__content"))
    lines = frame.select(
        pl.col(ROW),
        _store_expr(frame, cols),
        order_key.alias("order_id"),
        line_no.alias("line_no"),
        sku.alias("sku"),
        _col(frame, _find(cols, "lineitem_quantity")).alias("quantity"),
        _col(frame, _find(cols, "lineitem_price")).alias("unit_price"),
        _col(frame, _find(cols, "lineitem_discount")).alias("line_discount"),
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
):
    if date is None or spend is None:
        raise LayoutError(
            f"{label} export without a "
            + (" or ".join(x for x, v in (("date/day", date), ("cost/spend", spend)) if v is None))
            + " column; export it with a daily breakdown and the cost column"
        )
    frame, dropped = _drop_summary_rows(frame, [date, campaign_name])
    # Rows with neither a date nor a campaign are report footers / blank lines.
    frame = frame.filter(pl.col(date).is_not_null() | _col(frame, campaign_name).is_not_null())
    out = frame.select(
        pl.col(ROW),
        pl.col(date).alias("date"),
        _store_expr(frame, layout.columns),
        pl.lit(platform).alias("platform"),
        _col(frame, campaign_id).alias("campaign_id"),
        _col(frame, campaign_name).alias("campaign_name"),
        _col(frame, country).alias("country"),
        currency.alias("currency"),
        _zero_if_blank(pl.col(spend)).alias("spend"),
        _zero_if_blank(_col(frame, impressions)).alias("impressions"),
        _zero_if_blank(_col(frame, clicks)).alias("clicks"),
        _zero_if_blank(_col(frame, conversions)).alias("platform_conversions"),
        _zero_if_blank(_col(frame, conversion_value)).alias("platform_conversion_value"),
    )
    note = f"{label} export" + (f"; skipped {dropped} summary row(s)" if dropped else "")
    return {"ad_spend": out}, note


def _map_meta(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    spend = _meta_spend_column(cols)
    found = re.search(r"\(([A-Za-z]{3})\)", spend or "")
    currency_col = _find(cols, "currency")
    currency = pl.lit(found.group(1).upper()) if found else _col(frame, currency_col)
    return _ad_frame(
        frame, layout, source_name, platform="meta", label="Meta Ads Manager",
        date=_find(cols, "day", "date", "reporting_starts"), spend=spend, currency=currency,
        campaign_id=_find(cols, "campaign_id"), campaign_name=_find(cols, "campaign_name", "campaign"),
        impressions=_find(cols, "impressions"),
        clicks=_find(cols, "link_clicks", "clicks_all", "clicks"),
        conversions=_find(cols, "purchases", "website_purchases", "results"),
        conversion_value=_find(cols, "purchases_conversion_value",
                               "website_purchases_conversion_value", "purchase_conversion_value"),
        country=_find(cols, "country"),
    )  # fmt: skip


def _map_google(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    return _ad_frame(
        frame, layout, source_name, platform="google", label="Google Ads",
        date=_find(cols, "day", "date"), spend=_find(cols, "cost", "spend"),
        currency=_col(frame, _find(cols, "currency_code", "currency")),
        campaign_id=_find(cols, "campaign_id"), campaign_name=_find(cols, "campaign"),
        impressions=_find(cols, "impr", "impressions"), clicks=_find(cols, "clicks"),
        conversions=_find(cols, "conversions", "all_conv"),
        conversion_value=_find(cols, "conv_value", "conversion_value", "all_conv_value"),
        country=_find(cols, "country_territory", "country"),
    )  # fmt: skip


def _map_tiktok(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    return _ad_frame(
        frame, layout, source_name, platform="tiktok", label="TikTok Ads",
        date=_find(cols, "date", "by_day", "stat_time_day", "day"),
        spend=_find(cols, "cost", "spend", "total_cost"),
        currency=_col(frame, _find(cols, "currency", "currency_code")),
        campaign_id=_find(cols, "campaign_id"), campaign_name=_find(cols, "campaign_name", "campaign"),
        impressions=_find(cols, "impressions", "impression"),
        clicks=_find(cols, "clicks_destination", "clicks", "clicks_all"),
        conversions=_find(cols, "conversions", "complete_payment", "purchases", "result"),
        conversion_value=_find(cols, "total_complete_payment", "total_purchase_value",
                               "complete_payment_value", "purchase_value", "total_purchase"),
        country=_find(cols, "country", "country_code", "location"),
    )  # fmt: skip


_MAPPERS: dict[str, Callable] = {
    "shopify_orders": _map_shopify,
    "meta_ads": _map_meta,
    "google_ads": _map_google,
    "tiktok_ads": _map_tiktok,
}

__all__ = ["Layout", "LayoutError", "detect_layout", "match_header", "ROW"]
