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

from storepulse.ingest.kinds import (
    FIT_THRESHOLD,
    KIND_SPECS,
    ROW_PROBLEM,
    STAGING_SCHEMAS,
    HeaderMatch,
    header_key,
    match_header,
    rank_kinds,
    runner_up,
)
from storepulse.ingest.normalise import normalise_phone

ROW = "__row"
PROBLEM = "__problem"  # a row-level problem found while reading (readers.py); else null
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


UNFIT = "unfit"  # the layout name of a header that fits no kind well enough


@dataclass(frozen=True)
class Layout:
    # canonical kind name, shopify_orders / meta_ads / google_ads / tiktok_ads, or UNFIT
    name: str
    kind: str | None  # the kind the file counts under (orders for Shopify); None if UNFIT
    columns: tuple[str, ...]
    match: HeaderMatch | None = None  # for canonical layouts (the best candidate if UNFIT)
    notes: tuple[str, ...] = ()  # what the reader had to repair (NUL padding, …)
    runner_up: HeaderMatch | None = None  # the next kind, where it came close
    candidates: tuple[HeaderMatch, ...] = ()  # UNFIT: the kinds it came closest to

    @property
    def usable(self) -> bool:
        """A known export layout, or a header that fits its kind (kinds.py)."""
        return self.match is None or (self.name != UNFIT and self.match.fits)

    @property
    def score(self) -> float | None:
        """How well the header fits the kind (1.0 for an export recognised by its
        signature columns, None when no kind fits)."""
        if self.name == UNFIT:
            return None
        return 1.0 if self.match is None else round(self.match.score, 3)

    @property
    def unused_columns(self) -> tuple[str, ...]:
        """Columns of a canonical file that belong to no column of its kind."""
        return () if self.match is None or self.name == UNFIT else self.match.unknown

    def map(self, frame: pl.DataFrame, source_name: str) -> tuple[dict[str, pl.DataFrame], str]:
        """Canonical frames per kind, and a note for the report ('' if nothing to say)."""
        if PROBLEM not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Utf8).alias(PROBLEM))
        if self.name == UNFIT:
            raise LayoutError(unfit_message(self))
        mapper = _MAPPERS.get(self.name, _map_canonical)
        frames, note = mapper(frame, self, source_name)
        tidied, tidy_notes = {}, []
        for kind, out in frames.items():
            out, notes = _tidy(out, kind)
            tidied[kind] = out
            tidy_notes += [n for n in notes if n not in tidy_notes]
        return tidied, "; ".join(n for n in (note, *tidy_notes, *self.notes) if n)


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


KLAVIYO_ACTIVITY = {"profile_created_on", "last_active", "date_added", "last_open", "last_click"}


def _is_klaviyo(keys: set[str]) -> bool:
    """A Klaviyo profile (list or segment) export."""
    return "email" in keys and (
        "klaviyo_id" in keys
        or ("email_marketing_consent" in keys and bool(keys & KLAVIYO_ACTIVITY))
    )


def detect_layout(columns: list[str]) -> Layout | None:
    """The layout a header belongs to, or None when it matches nothing known.

    A canonical match may be incomplete (its `match.missing` says what is absent):
    callers report that as a file-level failure.
    """
    cols = tuple(str(c) for c in columns)
    keys = {header_key(c) for c in cols}
    if _is_shopify(keys):
        return Layout("shopify_orders", "orders", cols)
    if {"handle", "variant_sku"} <= keys:
        return Layout("shopify_products", "products", cols)
    if _meta_spend_column(cols):
        return Layout("meta_ads", "ad_spend", cols)
    if _is_tiktok(keys):
        return Layout("tiktok_ads", "ad_spend", cols)
    if _is_google(keys) and ("day" in keys or "date" in keys or "campaign" in keys):
        return Layout("google_ads", "ad_spend", cols)
    if _is_klaviyo(keys):
        return Layout("klaviyo_profiles", "customers", cols)
    ranked = rank_kinds(list(cols))
    if not ranked or ranked[0].used < 2:
        return None
    best = ranked[0]
    if best.fits or (not best.complete and best.score >= FIT_THRESHOLD and best.evidence):
        # (An incomplete header of a clear kind fails with the columns it lacks.)
        return Layout(best.kind, best.kind, cols, best, runner_up=runner_up(ranked))
    return Layout(UNFIT, None, cols, best, candidates=tuple(m for m in ranked[:3] if m.used >= 2))


def unfit_message(layout: Layout) -> str:
    """Why a header was not loaded as any kind, naming the candidates and the fix."""
    names = "; ".join(m.describe() for m in layout.candidates or (layout.match,))
    return (
        "the columns fit no kind well enough to load safely, so the whole file is kept in "
        f"quarantine (nothing was loaded). Closest: {names}. If it is one of these, rename "
        "its columns to that kind's names (README, 'Landing formats'); otherwise move it "
        "out of the landing folder"
    )


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
    columns = []
    clashes: list[pl.Expr] = []
    for src, dst in match.mapping.items():
        # polars names a repeated header 'total_duplicated_0': the same column twice.
        twins = [c for c in frame.columns if re.fullmatch(re.escape(src) + r"_duplicated_\d+", c)]
        others = [_blank_to_null(pl.col(c)) for c, d in match.fallbacks if d == dst]
        others += [_blank_to_null(pl.col(c)) for c in twins]
        expr = pl.coalesce(_blank_to_null(pl.col(src)), *others) if others else pl.col(src)
        columns.append(expr.alias(dst))
        for twin in twins:
            first, second = pl.col(src).str.strip_chars(), pl.col(twin).str.strip_chars()
            clashes.append(
                pl.when((first != "") & (second != "") & (first != second)).then(
                    pl.format(
                        "the header has column {} twice and this row has different values "
                        "in them ('{}' and '{}'); remove or rename the wrong column",
                        pl.lit(repr(src)),
                        first,
                        second,
                    )
                )
            )
    problem = _col(frame, PROBLEM)
    if clashes:
        problem = pl.coalesce(problem, *clashes)
    mapped = set(match.mapping.values())
    if match.header_currency and "currency" not in mapped and "currency" in _kind_columns(layout):
        extra.append(pl.lit(match.header_currency).alias("currency"))
        note = "; ".join(
            n for n in (note, f"currency {match.header_currency} taken from the headers") if n
        )
    out = frame.select(pl.col(ROW), *columns, *extra, problem.alias(ROW_PROBLEM))
    return {layout.kind: out}, note


def _kind_columns(layout: Layout) -> tuple[str, ...]:
    return KIND_SPECS[layout.kind].columns


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def _problem_expr(frame: pl.DataFrame) -> pl.Expr:
    return _col(frame, PROBLEM).alias(ROW_PROBLEM)


# Columns that hold identifiers or phone numbers: Excel users (and Shopify's own
# customer export) write them with a leading apostrophe so Excel keeps them as text.
TEXT_GUARDED = ("customer_id", "order_id", "phone", "campaign_id", "sku")
# Unambiguous only: '12,50', '1.234,56' (never '1,234', which is either).
DECIMAL_COMMA = r"^[-+]?(\d{1,3}(\.\d{3})+,\d+|\d+,(\d{1,2}|\d{4,}))$"
DECIMAL_POINT = r"^[-+]?(\d{1,3}(,\d{3})+\.\d+|\d+\.(\d{1,2}|\d{4,}))$"


def _numeric_columns(kind: str, frame: pl.DataFrame) -> list[str]:
    types = STAGING_SCHEMAS.get(kind, {})
    return [
        c
        for c in frame.columns
        if types.get(c) in ("double", "integer", "bigint") and frame.schema[c] == pl.Utf8
    ]


SAMPLE_ROWS = 200_000  # rows that decide a file's number and date conventions
SLASH_DATE = r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})"


def _date_columns(kind: str, frame: pl.DataFrame) -> list[str]:
    types = STAGING_SCHEMAS.get(kind, {})
    return [
        c
        for c in frame.columns
        if types.get(c) in ("date", "timestamp") and frame.schema[c] == pl.Utf8
    ]


def _day_first_dates(frame: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, list[str]]:
    """'05/03/2025' is 5 March in a UK or European file and May 3 in a US one. Staging
    reads month first; a file where some day-month pair only works day first (13/03/2025)
    is rewritten to ISO dates, and a file where every pair works both ways says so."""
    values = pl.concat_list([pl.col(c) for c in columns]).explode()
    parts = (
        frame.head(SAMPLE_ROWS).select(values.str.extract_groups(SLASH_DATE).alias("d")).unnest("d")
    )
    first, second = (parts[c].cast(pl.Int32, strict=False) for c in parts.columns[:2])
    day_first, month_first = int((first > 12).sum()), int((second > 12).sum())
    if day_first and not month_first:
        iso = r"$3-$2-$1"
        frame = frame.with_columns(
            pl.col(c)
            .str.replace(r"^\s*(\d)/", "0$1/")
            .str.replace(r"^(\d\d)/(\d)/", "$1/0$2/")
            .str.replace(r"^(\d\d)/(\d\d)/(\d{4})", iso)
            for c in columns
        )
        return frame, ["dates read day first (DD/MM/YYYY)"]
    if not day_first and not month_first and int(first.is_not_null().sum()):
        return frame, ["dates like 03/05/2025 read month first (MM/DD/YYYY)"]
    return frame, []


def _tidy(frame: pl.DataFrame, kind: str) -> tuple[pl.DataFrame, list[str]]:
    """Conventions of real exports that are per file, not per value:

    - a leading apostrophe on ids and phones ("'7012345678901") is Excel's text guard;
    - WooCommerce writes statuses as 'wc-completed' and guests as customer id 0;
    - decimal commas: a German Excel file writes 1.234,56 and 1.000 (one thousand);
      whether '1.000' is one or a thousand is decided once per file, from the values
      that are unambiguous;
    - DD/MM/YYYY dates (see `_day_first_dates`).

    A few cheap prefix and literal scans first say which of these a file needs at all,
    so the usual file (ISO dates, decimal points, plain ids) pays for little more.
    """
    if frame.height == 0:
        return frame, []
    guarded = [c for c in TEXT_GUARDED if c in frame.columns]
    numeric = _numeric_columns(kind, frame)
    dates = _date_columns(kind, frame)
    status = "financial_status" if kind == "orders" and "financial_status" in frame else None
    guests = "customer_id" if kind in ("orders", "customers") and "customer_id" in frame else None
    # Value fixes need an exact answer (a cheap prefix test over every row); the file's
    # number and date conventions are read from its first rows.
    probes = [pl.col(c).str.starts_with("'").any().alias(f"q:{c}") for c in guarded]
    if status:
        wc = pl.col(status).str.starts_with("wc-") | pl.col(status).str.starts_with("WC-")
        probes.append(wc.any().alias("status"))
    if guests:
        zero = pl.col(guests).str.starts_with("0") | pl.col(guests).str.starts_with("'0")
        probes.append(zero.any().alias("guests"))
    mangled = [c for c in EXCEL_NUMBERED if c in frame.columns]
    probes += [pl.col(c).str.contains("E+", literal=True).any().alias(f"e:{c}") for c in mangled]
    head = [pl.col(c).str.contains(",", literal=True).any().alias(f"n:{c}") for c in numeric]
    head += [pl.col(c).str.contains("/", literal=True).any().alias(f"d:{c}") for c in dates]
    found = {}
    if probes:
        found.update(frame.select(probes).row(0, named=True))
    if head:
        found.update(frame.head(SAMPLE_ROWS).select(head).row(0, named=True))
    if not any(found.values()):
        return frame, []
    notes: list[str] = []
    fixes = [pl.col(c).str.replace(r"^\s*'([+\d])", "$1") for c in guarded if found[f"q:{c}"]]
    if fixes:
        frame = frame.with_columns(fixes)
    for column in (c for c in mangled if found[f"e:{c}"]):
        frame, note = _excel_numbered_ids(frame, column)
        notes += [note] if note else []
    if guests and found["guests"]:
        # 0 is WooCommerce's (and many carts') id for a guest checkout: not a customer.
        frame = frame.with_columns(
            pl.when(pl.col(guests).str.contains(r"^\s*'?0+\s*$"))
            .then(None)
            .otherwise(pl.col(guests))
            .alias(guests)
        )
    if status and found["status"]:
        frame = frame.with_columns(pl.col(status).str.strip_chars().str.replace(r"(?i)^wc-", ""))
    slashed = [c for c in dates if found[f"d:{c}"]]
    if slashed:
        frame, date_notes = _day_first_dates(frame, slashed)
        notes += date_notes
    if any(found[f"n:{c}"] for c in numeric):
        frame, number_notes = _decimal_commas(frame, numeric)
        notes += number_notes
    return frame, notes


# Ids that Excel turns into numbers when a CSV is opened and saved: 1790000000000001
# becomes 1.79E+15, so different campaigns or customers get the same "id".
EXCEL_NUMBERED = ("campaign_id", "customer_id", "order_id")
EXCEL_SCIENTIFIC = r"^\s*[-+]?\d(\.\d+)?[eE]\+?\d+\s*$"


def _excel_numbered_ids(frame: pl.DataFrame, column: str) -> tuple[pl.DataFrame, str]:
    """A campaign or customer id is then not used (the campaign name / e-mail stands in);
    an order id cannot be replaced, so the row is quarantined with the reason."""
    bad = pl.col(column).str.contains(EXCEL_SCIENTIFIC).fill_null(False)
    count = frame.select(bad.sum()).item()
    if not count:
        return frame, ""
    example = frame.filter(bad)[column][0].strip()
    if column == "order_id":
        problem = pl.format(
            "order_id '{}' was turned into a number by Excel (digits lost); export the "
            "file again and do not open and save it in Excel",
            pl.col(column).str.strip_chars(),
        )
        frame = frame.with_columns(
            pl.when(bad & pl.col(ROW_PROBLEM).is_null())
            .then(problem)
            .otherwise(pl.col(ROW_PROBLEM))
            .alias(ROW_PROBLEM)
        )
        return frame, f"{count} order_id value(s) like '{example}' were mangled by Excel"
    stand_in = "campaign name" if column == "campaign_id" else "e-mail"
    frame = frame.with_columns(pl.when(bad).then(None).otherwise(pl.col(column)).alias(column))
    return frame, (
        f"{count} {column} value(s) like '{example}' were turned into numbers by Excel "
        f"(digits lost) and are not used; the {stand_in} identifies the row instead"
    )


def _decimal_commas(frame: pl.DataFrame, numeric: list[str]) -> tuple[pl.DataFrame, list[str]]:
    values = pl.concat_list([pl.col(c).str.strip_chars() for c in numeric]).explode()
    stats = (
        frame.head(SAMPLE_ROWS)
        .select(values.alias("v"))
        .select(
            comma=pl.col("v").str.contains(DECIMAL_COMMA).sum(),
            point=pl.col("v").str.contains(DECIMAL_POINT).sum(),
        )
    )
    comma, point = stats.row(0)
    if comma and not point:
        frame = frame.with_columns(
            pl.col(c)
            .str.strip_chars()
            .str.replace_all(r"(\d)\.(\d{3})", "$1$2")
            .str.replace_all(r"(\d)\.(\d{3})", "$1$2")
            .str.replace(r"^([-+]?\d+),(\d+)$", "$1.$2")
            for c in numeric
        )
        return frame, ["decimal commas read as in 1.234,56"]
    if comma and point:
        return frame, ["numbers mix decimal commas and decimal points; each is read on its own"]
    return frame, []


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
    return _col(frame, _find(columns, "store_id", "store", "shop", "shop_id")).alias("store_id")


def _with_phone_customer_id(orders: pl.DataFrame) -> pl.DataFrame:
    """Shopify has no customer id; the customer is the e-mail. Cash-on-delivery orders
    often have a phone and no e-mail: the customer is then the phone number, normalised
    as in DESIGN §6 (digits with the country code) behind a '+'."""
    no_email = (
        _blank_to_null(pl.col("email")).is_null() & _blank_to_null(pl.col("phone")).is_not_null()
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
    name = _find(cols, "name")
    order_key = pl.col(name).str.strip_chars()
    # The order's own fields are on one of its rows, normally the first; a file sorted
    # in Excel moves it, so the row that has them is taken wherever it is.
    fields = [_find(cols, c) for c in ("total", "financial_status", "created_at")]
    filled = [_blank_to_null(pl.col(c)).is_not_null() for c in fields if c]
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
        _col(first_rows, _find(cols, "discount_code")).alias("discount_code"),
        _col(first_rows, _find(cols, "billing_country")).alias("billing_country"),
        _problem_expr(first_rows),
    )
    orders = _with_phone_customer_id(orders)
    sku = pl.coalesce(
        _col(frame, _find(cols, "lineitem_sku")).str.strip_chars().replace("", None),
        _col(frame, _find(cols, "lineitem_name")),
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
        _col(frame, _find(cols, "lineitem_quantity")).alias("quantity"),
        _col(frame, _find(cols, "lineitem_price")).alias("unit_price"),
        _col(frame, _find(cols, "lineitem_discount")).alias("line_discount"),
        _problem_expr(frame),
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
        _blank_to_null(pl.col(date)).is_not_null()
        | _blank_to_null(_col(frame, campaign_name)).is_not_null()
    )
    dropped += before - frame.height
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
        (problem if problem is not None else _col(frame, PROBLEM)).alias(ROW_PROBLEM),
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
    tidy, _ = _tidy(out, "ad_spend")
    parsed = tidy.with_columns(
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
    rest = tidy.join(parsed.filter(bad).select(ROW), on=ROW, how="semi")
    merged = pl.concat([summed, rest]).sort(ROW)
    return merged, usable.height - summed.height


def _map_meta(frame: pl.DataFrame, layout: Layout, source_name: str):
    cols = layout.columns
    spend = _meta_spend_column(cols)
    found = re.search(r"\(([A-Za-z]{3})\)", spend or "")
    currency_col = _find(cols, "currency")
    currency = pl.lit(found.group(1).upper()) if found else _col(frame, currency_col)
    problem = None
    starts, ends = _find(cols, "reporting_starts"), _find(cols, "reporting_ends")
    if _find(cols, "day", "date") is None and starts and ends:
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
        date=_find(cols, "day", "date", "reporting_starts"), spend=spend, currency=currency,
        campaign_id=_find(cols, "campaign_id"), campaign_name=_find(cols, "campaign_name", "campaign"),
        impressions=_find(cols, "impressions"),
        clicks=_find(cols, "link_clicks", "clicks_all", "clicks"),
        conversions=_find(cols, "purchases", "website_purchases", "results"),
        conversion_value=_find(cols, "purchases_conversion_value",
                               "website_purchases_conversion_value", "purchase_conversion_value"),
        country=_find(cols, "country"), problem=problem,
        sub_level=_find(cols, "ad_set_name", "ad_set_id", "ad_name", "ad_id"),
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
        sub_level=_find(cols, "ad_group", "ad_group_id", "ad_group_name", "ad", "ad_id", "keyword"),
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
        sub_level=_find(cols, "ad_group_name", "ad_group_id", "ad_name", "ad_id"),
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
        column = _find(cols, *names)
        if column is None:
            return pl.lit(None, pl.Utf8)
        state = pl.col(column).str.strip_chars().str.to_lowercase()
        return state.replace_strict(KLAVIYO_CONSENT, default=None, return_dtype=pl.Utf8)

    out = frame.select(
        pl.col(ROW),
        _store_expr(frame, cols),
        pl.col(_find(cols, "email")).alias("email"),
        consent("email_marketing_consent", "email_consent").alias("accepts_email_marketing"),
        consent("sms_marketing_consent", "sms_consent").alias("accepts_sms_marketing"),
        _problem_expr(frame),
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
    handle = pl.col(_find(cols, "handle")).str.strip_chars()
    sku = _find(cols, "variant_sku")
    variant_fields = [
        c for c in (sku, _find(cols, "variant_price"), _find(cols, "option1_value")) if c
    ]
    is_variant = pl.any_horizontal(
        [_blank_to_null(pl.col(c)).is_not_null() for c in variant_fields]
    )
    kept = frame.filter(is_variant)
    skipped = frame.height - kept.height

    def product_field(*names: str) -> pl.Expr:
        column = _find(cols, *names)
        if column is None:
            return pl.lit(None, pl.Utf8)
        return _blank_to_null(pl.col(column)).drop_nulls().first().over(handle)

    # A variant without a SKU gets the name Shopify gives its order line items
    # ('Linen Shirt - M / Blue', or the title alone), the fallback the order export uses.
    options = [
        _blank_to_null(pl.col(c))
        for c in (_find(cols, f"option{i}_value") for i in (1, 2, 3))
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
        pl.coalesce(_blank_to_null(pl.col(sku)).str.strip_chars(), line_name).alias("sku"),
        title.alias("title"),
        product_field("type", "product_category", "product_type").alias("category"),
        _col(kept, _find(cols, "variant_price")).alias("price"),
        _col(kept, _find(cols, "cost_per_item")).alias("unit_cost"),
        _problem_expr(kept),
    )
    note = "Shopify product export" + (
        f"; skipped {skipped} image-only row(s) without a variant" if skipped else ""
    )
    return {"products": out}, note


_MAPPERS: dict[str, Callable] = {
    "shopify_products": _map_shopify_products,
    "shopify_orders": _map_shopify,
    "meta_ads": _map_meta,
    "google_ads": _map_google,
    "tiktok_ads": _map_tiktok,
    "klaviyo_profiles": _map_klaviyo,
}

__all__ = ["Layout", "LayoutError", "detect_layout", "match_header", "ROW"]
