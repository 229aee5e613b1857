"""Conventions of real exports that hold for a whole file, undone before staging:
Excel's text guard and scientific ids, WooCommerce statuses and guest ids, decimal
commas and day-first dates (decided once per file from its unambiguous values)."""

from __future__ import annotations

import polars as pl

from storepulse.ingest.kinds import ROW_PROBLEM, STAGING_SCHEMAS

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


def tidy(frame: pl.DataFrame, kind: str) -> tuple[pl.DataFrame, list[str]]:
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
