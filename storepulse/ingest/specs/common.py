"""The pieces every kind's staging spec is made of: KindSql, literal and message
formatting, and the checks shared by kinds (numbers, dates, stores, currencies)."""

from __future__ import annotations

from dataclasses import dataclass

from storepulse.ingest.channels import channel_sql
from storepulse.ingest.kinds import KIND_SPECS
from storepulse.warehouse import qualified, quote_ident

STORE_SLUG = "[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
EARLIEST_PLAUSIBLE = "1990-01-01"


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fmt(template: str, *exprs: str) -> str:
    """A SQL expression formatting a message: fmt("total '{}' is not a number", "total")."""
    return f"format({lit(template)}{''.join(', ' + e for e in exprs)})"


@dataclass
class KindSql:
    parsed: list[str]  # "expr as name" over raw columns (+ joined tables), CTE p
    joins: str  # joins available to `parsed` (raw alias r)
    checks: list[tuple[str, str]]  # (condition, message) over p
    output: dict[str, str]  # contract column -> expression over p (+ fx)
    group_key: tuple[str, ...]
    # A row's identity; most kinds' is their group key (order lines: order and line_no).
    row_key: tuple[str, ...] = ()
    fx: tuple[str, str] | None = None  # (currency column, date expression) in p
    # Merged per column across the versions of a row key: the newest non-null value
    # wins, so a later file that lacks a column (or leaves it empty) never erases what
    # an earlier file said (a partial customer list, a Klaviyo export).
    merge_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.row_key = self.row_key or self.group_key


def num(col: str) -> str:
    return f"sp_num(r.{quote_ident(col)}) as n_{col}"


# The checks test the parsed value first: it is NULL (or not finite) for few rows, so
# the raw text is trimmed again only for those (a parsed value is NULL whenever its
# text is empty, which makes `parsed is null and text is null` the same as `text is null`).


def required_check(col: str, fix: str = "it is required") -> tuple[str, str]:
    """The check that quarantines a row whose text column `col` is empty."""
    return (f"{col} is null", lit(f"{col} is empty; {fix}"))


def number_checks(col: str, *, required: bool = False, negative_hint: str = "") -> list:
    raw = f"r_{col}"
    checks = []
    if required:
        checks.append(
            (f"n_{col} is null and sp_text({raw}) is null", lit(f"{col} is empty; it is required"))
        )
    checks.append(
        (
            f"(n_{col} is null or not isfinite(n_{col})) and sp_text({raw}) is not null",
            fmt(f"{col} '{{}}' is not a number", raw),
        )
    )
    checks.append(
        (f"n_{col} < 0", fmt(f"{col} {{}} is negative{negative_hint}", raw)),
    )
    return checks


def time_checks(col: str, parsed: str, now: str, *, required: bool, what: str = "date") -> list:
    raw = f"r_{col}"
    checks = []
    if required:
        checks.append(
            (f"{parsed} is null and sp_text({raw}) is null", lit(f"{col} is empty; it is required"))
        )
    checks += [
        (
            f"{parsed} is null and sp_text({raw}) is not null",
            fmt(
                f"{col} '{{}}' is not a valid {what} (use YYYY-MM-DD"
                + (" HH:MM:SS)" if what != "date" else ")"),
                raw,
            ),
        ),
        (
            f"{parsed} > timestamp {lit(now)} + interval 1 day",
            fmt(f"{col} '{{}}' is in the future; check the date", raw),
        ),
        (
            f"{parsed} < timestamp {lit(EARLIEST_PLAUSIBLE)}",
            fmt(f"{col} '{{}}' is before {EARLIEST_PLAUSIBLE}; check the date", raw),
        ),
    ]
    return checks


def store_checks() -> list:
    return [
        (
            "store_id is null",
            lit("no store_id: add a store_id column or put the file in landing/<store_id>/"),
        ),
        (
            f"not regexp_full_match(store_id, {lit(STORE_SLUG)})",
            fmt("store id '{}' is not valid: use letters, digits, '-' or '_' only", "store_id"),
        ),
        (
            "has_stores and known_store is null",
            fmt("store '{}' is not in stores.csv; add the store or correct the id", "store_id"),
        ),
    ]


def currency_checks() -> list:
    return [
        (
            "currency is null",
            lit("currency is empty and the store has no currency in stores.csv; add one"),
        ),
        (
            "not regexp_full_match(currency, '[A-Z]{3}') or (currency <> 'USD' and first_rate is null)",
            fmt(
                "currency '{}' has no rate in fx_rates; add its rates to fx_rates.csv "
                "(date, currency, usd_per_unit) or correct the currency code",
                "currency",
            ),
        ),
    ]


STORE_JOIN = (
    "left join (select store_id as known_store, currency as store_currency from staging.stores) st"
    " on st.known_store = coalesce(sp_text(r.store_id), r.folder_store_id)"
)
STORE_PARSED = [
    "coalesce(sp_text(r.store_id), r.folder_store_id) as store_id",
    "st.known_store",
    "(select count(*) > 0 from staging.stores) as has_stores",
]


def per_value(kind: str, column: str, alias: str, expression) -> tuple[str, str]:
    """(column expression, join) evaluating `expression(value)` once per distinct raw
    value of `column` instead of once per row (the channel rules are a long CASE)."""
    col = quote_ident(column)
    join = (
        f" left join (select v as raw_value, {expression('v')} as value from"
        f" (select distinct {col} as v from {qualified('raw.' + kind)})) {alias}"
        f" on {alias}.raw_value is not distinct from r.{col}"
    )
    return f"{alias}.value", join


def platform_channel(value: str) -> str:
    """SQL: an ad platform's name as its channel ('Facebook', 'AdWords', 'TikTok Ads' ->
    meta, google, tiktok: the UTM source rules); a name the rules do not know is kept,
    lower-cased."""
    channel = channel_sql(value, "null")
    return (
        f"case when {channel} not in ('other', 'direct')"
        f" then {channel} else lower(sp_text({value})) end"
    )


def raw_cols(kind: str) -> list[str]:
    return [f"r.{quote_ident(c)} as r_{c}" for c in KIND_SPECS[kind].columns]
