"""What each input kind's staging table is made of, one function per kind.

Each function returns a `KindSql`: how the raw strings are parsed (`parsed`, over
`raw.<kind> r` and its `joins`), the row checks in order (the first failed check is
the row's quarantine reason, in words a merchant can act on), the staging columns
(`output`), the keys that decide versions and duplicates, and the FX conversion.
`staging.build_kind` turns a KindSql into SQL; adding a kind is one function here
plus its columns in kinds.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storepulse.ingest.channels import CHANNELS, channel_sql
from storepulse.ingest.kinds import KIND_SPECS, STAGING_SCHEMAS
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
    row_key: tuple[str, ...]
    fx: tuple[str, str] | None = None  # (currency column, date expression) in p
    # Merged per column across the versions of a row key: the newest non-null value
    # wins, so a later file that lacks a column (or leaves it empty) never erases what
    # an earlier file said (a partial customer list, a Klaviyo export).
    merge_columns: tuple[str, ...] = ()


def _num(col: str) -> str:
    return f"sp_num(r.{quote_ident(col)}) as n_{col}"


# The checks test the parsed value first: it is NULL (or not finite) for few rows, so
# the raw text is trimmed again only for those (a parsed value is NULL whenever its
# text is empty, which makes `parsed is null and text is null` the same as `text is null`).


def _number_checks(col: str, *, required: bool = False, negative_hint: str = "") -> list:
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


def _time_checks(col: str, parsed: str, now: str, *, required: bool, what: str = "date") -> list:
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


def _store_checks() -> list:
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


def _currency_checks() -> list:
    return [
        (
            "currency is null",
            lit("currency is empty and the store has no currency in stores.csv; add one"),
        ),
        (
            "not regexp_full_match(currency, '[A-Z]{3}') or (currency <> 'USD' and first_rate is null)",
            fmt("currency '{}' is not in fx_rates; add a rate or correct the code", "currency"),
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


def _per_value(kind: str, column: str, alias: str, expression) -> tuple[str, str]:
    """(column expression, join) evaluating `expression(value)` once per distinct raw
    value of `column` instead of once per row (the channel rules are a long CASE)."""
    col = quote_ident(column)
    join = (
        f" left join (select v as raw_value, {expression('v')} as value from"
        f" (select distinct {col} as v from {qualified('raw.' + kind)})) {alias}"
        f" on {alias}.raw_value is not distinct from r.{col}"
    )
    return f"{alias}.value", join


def raw_cols(kind: str) -> list[str]:
    return [f"r.{quote_ident(c)} as r_{c}" for c in KIND_SPECS[kind].columns]


def _fx_rates(now: str) -> KindSql:
    return KindSql(
        parsed=[
            "sp_date(r.date) as date",
            "upper(sp_text(r.currency)) as currency",
            _num("usd_per_unit"),
        ],
        joins="",
        checks=[
            *_time_checks("date", "date", now, required=True),
            ("currency is null", lit("currency is empty; it is required")),
            (
                "not regexp_full_match(currency, '[A-Z]{3}')",
                fmt("currency '{}' is not a 3-letter ISO code", "currency"),
            ),
            *_number_checks("usd_per_unit", required=True),
            ("n_usd_per_unit = 0", lit("usd_per_unit is 0; a rate must be positive")),
        ],
        output={"date": "date", "currency": "currency", "usd_per_unit": "n_usd_per_unit"},
        group_key=("date", "currency"),
        row_key=("date", "currency"),
    )


def _stores(now: str) -> KindSql:
    return KindSql(
        parsed=[
            "sp_text(r.store_id) as store_id",
            "sp_text(r.store_name) as store_name",
            "upper(sp_text(r.country)) as country",
            "upper(sp_text(r.currency)) as currency",
            "sp_text(r.timezone) as timezone",
        ],
        joins="",
        checks=[
            ("store_id is null", lit("store_id is empty; it is required")),
            (
                f"not regexp_full_match(store_id, {lit(STORE_SLUG)})",
                fmt(
                    "store id '{}' is not valid: use letters, digits, '-' or '_' only",
                    "store_id",
                ),
            ),
            (
                "currency is not null and not regexp_full_match(currency, '[A-Z]{3}')",
                fmt("currency '{}' is not a 3-letter ISO code", "currency"),
            ),
        ],
        output={c: c for c in STAGING_SCHEMAS["stores"]},
        group_key=("store_id",),
        row_key=("store_id",),
    )


def _customers(now: str) -> KindSql:
    # Consents stay NULL here when a file says nothing (no column, empty cell), so the
    # per-column merge keeps what another file said; staging.finish_customers turns
    # the consents nobody gave into false.
    store = "coalesce(sp_text(r.store_id), r.folder_store_id)"
    return KindSql(
        parsed=[
            *STORE_PARSED,
            # A row without customer_id (an e-mail list) belongs to the customer whose
            # e-mail it is, where another file names that customer's id.
            "coalesce(sp_text(r.customer_id), cid.customer_id, sp_email(r.email)) as customer_id",
            "sp_email(r.email) as email",
            "upper(sp_text(r.country)) as country",
            "sp_phone(r.phone, cc.calling_code) as phone",
            "sp_text(r.first_name) as first_name",
            "sp_text(r.last_name) as last_name",
            "sp_ts(r.created_at) as created_at",
            "sp_bool(r.accepts_email_marketing) as accepts_email_marketing",
            "sp_bool(r.accepts_sms_marketing) as accepts_sms_marketing",
            "sp_bool(r.ad_personalization_consent) as ad_personalization_consent",
        ],
        joins=STORE_JOIN
        + " left join sp_calling_codes cc on cc.country = upper(sp_text(r.country))"
        f" left join customer_ids_by_email cid on cid.store_id = {store} and cid.email ="
        " case when sp_text(r.customer_id) is null then sp_email(r.email) end",
        checks=[
            *_store_checks(),
            (
                "customer_id is null",
                lit("neither customer_id nor email is filled; add one to identify the customer"),
            ),
            (
                "email is not null and not regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')",
                fmt("email '{}' is not an e-mail address; correct or empty it", "r_email"),
            ),
            *_time_checks("created_at", "created_at", now, required=False, what="date/time"),
        ],
        output={
            **{c: c for c in STAGING_SCHEMAS["customers"]},
            "email_sha256": "case when email is not null then sha256(email) end",
        },
        group_key=("store_id", "customer_id"),
        row_key=("store_id", "customer_id"),
        merge_columns=(
            "email", "phone", "first_name", "last_name", "country", "created_at",
            "accepts_email_marketing", "accepts_sms_marketing", "ad_personalization_consent",
        ),
    )  # fmt: skip


def _products(now: str) -> KindSql:
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_text(r.sku) as sku",
            "sp_text(r.title) as title",
            "sp_text(r.category) as category",
            _num("price"),
            _num("unit_cost"),
            "sp_date(r.launched_at) as launched_at",
            "upper(coalesce(st.store_currency, 'USD')) as currency",
            f"cast(timestamp {lit(now)} as date) as fx_date",
        ],
        joins=STORE_JOIN,
        checks=[
            *_store_checks(),
            ("sku is null", lit("sku is empty; it is required")),
            *_number_checks("price"),
            *_number_checks("unit_cost"),
            *_time_checks("launched_at", "launched_at", now, required=False),
            *_currency_checks(),
        ],
        output={
            "store_id": "store_id",
            "sku": "sku",
            "title": "title",
            "category": "category",
            "price": "n_price",
            "unit_cost": "n_unit_cost",
            "price_usd": "n_price * fx_rate",
            "unit_cost_usd": "n_unit_cost * fx_rate",
            "launched_at": "launched_at",
        },  # fmt: skip
        group_key=("store_id", "sku"),
        row_key=("store_id", "sku"),
        fx=("currency", "fx_date"),
    )


def _orders(now: str) -> KindSql:
    money = ("subtotal", "discount", "shipping", "tax", "total", "refunded_amount")
    out = {
        "store_id": "store_id", "order_id": "order_id",
        "customer_id": "coalesce(customer_id_in, known_customer_id, email)",
        "email": "email", "created_at": "created_at", "order_date": "cast(created_at as date)",
        "currency": "currency",
        "subtotal": "coalesce(n_subtotal, n_total - coalesce(n_shipping, 0) - coalesce(n_tax, 0)"
        " + coalesce(n_discount, 0))",
        "discount": "coalesce(n_discount, 0)", "shipping": "coalesce(n_shipping, 0)",
        "tax": "coalesce(n_tax, 0)", "total": "n_total",
        "refunded_amount": "coalesce(n_refunded_amount, 0)", "fx_usd_per_unit": "fx_rate",
        "financial_status": "financial_status", "cancelled_at": "cancelled_at",
        "is_cancelled": "cancelled_at is not null or coalesce(financial_status in "
        "('voided', 'cancelled', 'canceled'), false)",
        "payment_method": "payment_method", "utm_source": "utm_source",
        "utm_medium": "utm_medium", "utm_campaign": "utm_campaign",
        "channel": "utm_channel", "device": "device",
        "ship_country": "ship_country", "discount_code": "discount_code",
        "billing_country": "billing_country", "source_file": "source_file",
        "customer_phone": "customer_phone", "customer_first_name": "customer_first_name",
        "customer_last_name": "customer_last_name",
        "customer_accepts_email": "customer_accepts_email",
        "row_number": "row_number",
    }  # fmt: skip
    for m in ("subtotal", "discount", "shipping", "tax", "total", "refunded_amount"):
        out[f"{m}_usd"] = f"({out[m]}) * fx_rate"
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_text(r.order_id) as order_id",
            "sp_text(r.customer_id) as customer_id_in",
            "sp_email(r.email) as email",
            "cbe.customer_id as known_customer_id",
            "sp_ts(r.created_at) as created_at",
            "upper(coalesce(sp_text(r.currency), st.store_currency, 'USD')) as currency",
            *[_num(m) for m in money],
            "lower(sp_text(r.financial_status)) as financial_status",
            "sp_ts(r.cancelled_at) as cancelled_at",
            "lower(sp_text(r.payment_method)) as payment_method",
            "sp_text(r.utm_source) as utm_source",
            "sp_text(r.utm_medium) as utm_medium",
            "sp_text(r.utm_campaign) as utm_campaign",
            "uc.channel as utm_channel",
            "lower(sp_text(r.device)) as device",
            "upper(sp_text(r.ship_country)) as ship_country",
            # Codes are case-insensitive at checkout (Shopify): compared upper-case.
            "upper(sp_text(r.discount_code)) as discount_code",
            "upper(sp_text(r.billing_country)) as billing_country",
            "sp_phone(r.phone, cc.calling_code) as customer_phone",
            "sp_text(r.first_name) as customer_first_name",
            "sp_text(r.last_name) as customer_last_name",
            "sp_bool(r.accepts_email_marketing) as customer_accepts_email",
            "cast(sp_ts(r.created_at) as date) as fx_date",
        ],
        joins=STORE_JOIN
        + " left join sp_calling_codes cc on cc.country = upper(sp_text(r.ship_country))"
        " left join utm_channels uc on uc.src = coalesce(sp_text(r.utm_source), '')"
        " and uc.med = coalesce(sp_text(r.utm_medium), '')"
        # Only an order without customer_id looks its customer up by e-mail (the key is
        # NULL for the others, so they skip the probe).
        " left join customer_by_email cbe on cbe.store_id ="
        " coalesce(sp_text(r.store_id), r.folder_store_id) and cbe.email ="
        " case when sp_text(r.customer_id) is null then sp_email(r.email) end",
        checks=[
            *_store_checks(),
            ("order_id is null", lit("order_id is empty; every order needs its id")),
            (
                "customer_id_in is null and email is null",
                lit("neither customer_id nor email is filled; add one so the order has a customer"),
            ),
            (
                "customer_id_in is null and not regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')",
                fmt("email '{}' is not an e-mail address and there is no customer_id", "r_email"),
            ),
            *_time_checks("created_at", "created_at", now, required=True, what="date/time"),
            *_currency_checks(),
            *_number_checks(
                "total", required=True, negative_hint="; refunds go in refunded_amount"
            ),
            *[c for m in money if m != "total" for c in _number_checks(m)],
            *[
                c
                for c in _time_checks(
                    "cancelled_at", "cancelled_at", now, required=False, what="date/time"
                )
                if "future" not in c[1]
            ],
        ],
        output=out,
        group_key=("store_id", "order_id"),
        row_key=("store_id", "order_id"),
        fx=("currency", "fx_date"),
    )


def _order_lines(now: str, line_no_gaps: bool) -> KindSql:
    line_total = (
        "n_quantity * coalesce(n_unit_price, product_price, 0) - coalesce(n_line_discount, 0)"
    )
    return KindSql(
        parsed=[
            "coalesce(sp_text(r.store_id), r.folder_store_id) as store_id",
            "so.order_store as known_store",
            "false as has_stores",
            "sp_text(r.order_id) as order_id",
            "coalesce(try_cast(sp_num(r.line_no) as integer), case when sp_text(r.line_no) is null"
            " then "
            + (
                "cast(row_number() over (partition by r.source_file, r.store_id,"
                " r.folder_store_id, r.order_id order by r.row_number) as integer)"
                if line_no_gaps
                else "null::integer"
            )
            + " end) as line_no",
            "sp_text(r.sku) as sku",
            _num("quantity"),
            _num("unit_price"),
            _num("line_discount"),
            "so.order_currency as currency",
            "so.order_fx as fx_rate",
            "pr.price as product_price",
            "qo.order_reason",
        ],
        joins="left join (select store_id as order_store, order_id as order_key, currency as order_currency,"
        " fx_usd_per_unit as order_fx from staging.orders) so on so.order_store ="
        " coalesce(sp_text(r.store_id), r.folder_store_id) and so.order_key = sp_text(r.order_id)"
        " left join staging.products pr on pr.store_id = coalesce(sp_text(r.store_id), r.folder_store_id)"
        " and pr.sku = sp_text(r.sku)"
        " left join quarantined_orders qo on qo.store_id = coalesce(sp_text(r.store_id), r.folder_store_id)"
        " and qo.order_id = sp_text(r.order_id)",
        checks=[
            *_store_checks()[:2],
            ("order_id is null", lit("order_id is empty; every line needs its order")),
            ("sku is null", lit("sku is empty; it is required")),
            (
                "line_no is null",
                fmt("line_no '{}' is not a whole number", "r_line_no"),
            ),
            *_number_checks(
                "quantity",
                required=True,
                negative_hint="; returns go in the order's refunded_amount",
            ),
            *_number_checks("unit_price"),
            *_number_checks("line_discount"),
            (
                "known_store is null and order_reason is not null",
                fmt(
                    "order '{}' was quarantined ({}); fix the order and its lines follow",
                    "order_id",
                    "order_reason",
                ),
            ),
            (
                "known_store is null",
                fmt(
                    "order '{}' of store '{}' is not in staging.orders; "
                    "load the order (or correct the order_id) first",
                    "order_id",
                    "store_id",
                ),
            ),
        ],
        output={
            "store_id": "store_id",
            "order_id": "order_id",
            "line_no": "line_no",
            "sku": "sku",
            "quantity": "n_quantity",
            "unit_price": "coalesce(n_unit_price, product_price)",
            "line_discount": "coalesce(n_line_discount, 0)",
            "currency": "currency",
            "unit_price_usd": "coalesce(n_unit_price, product_price) * fx_rate",
            "line_discount_usd": "coalesce(n_line_discount, 0) * fx_rate",
            "line_total_usd": f"({line_total}) * fx_rate",
        },  # fmt: skip
        group_key=("store_id", "order_id"),
        row_key=("store_id", "order_id", "line_no"),
    )


def _inventory(now: str) -> KindSql:
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_date(r.snapshot_date) as snapshot_date",
            "sp_text(r.sku) as sku",
            "sp_text(r.warehouse) as warehouse",
            _num("on_hand"),
            _num("lead_time_days"),
        ],
        joins=STORE_JOIN,
        checks=[
            *_store_checks(),
            *_time_checks("snapshot_date", "snapshot_date", now, required=True),
            ("sku is null", lit("sku is empty; it is required")),
            *_number_checks("on_hand", required=True, negative_hint="; count oversold stock as 0"),
            *_number_checks("lead_time_days"),
        ],
        output={
            "snapshot_date": "snapshot_date",
            "store_id": "store_id",
            "sku": "sku",
            "warehouse": "warehouse",
            "on_hand": "n_on_hand",
            "lead_time_days": "cast(round(n_lead_time_days) as integer)",
        },  # fmt: skip
        group_key=("snapshot_date", "store_id", "sku", "warehouse"),
        row_key=("snapshot_date", "store_id", "sku", "warehouse"),
    )


def _ad_spend(now: str) -> KindSql:
    metrics = (
        "spend",
        "impressions",
        "clicks",
        "platform_conversions",
        "platform_conversion_value",
    )
    # 'Facebook', 'AdWords', 'TikTok Ads' -> meta, google, tiktok (same rules as UTM
    # sources); anything else is kept, lower-cased.
    platform, platform_join = _per_value(
        "ad_spend",
        "platform",
        "pm",
        lambda x: (
            f"case when {channel_sql(x, 'null')} not in ('other', 'direct')"
            f" then {channel_sql(x, 'null')} else lower(sp_text({x})) end"
        ),
    )
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_date(r.date) as date",
            f"{platform} as platform",
            "sp_text(r.campaign_id) as campaign_id",
            "sp_text(r.campaign_name) as campaign_name",
            "upper(sp_text(r.country)) as country",
            "upper(coalesce(sp_text(r.currency), st.store_currency, 'USD')) as currency",
            *[_num(m) for m in metrics],
            "sp_date(r.date) as fx_date",
        ],
        joins=STORE_JOIN + platform_join,
        checks=[
            *_store_checks(),
            *_time_checks("date", "date", now, required=True),
            (
                "platform is null",
                lit("platform is empty; it is required (meta, google, tiktok…)"),
            ),
            *_currency_checks(),
            *_number_checks("spend", required=True),
            *[c for m in metrics[1:] for c in _number_checks(m)],
        ],
        output={
            "date": "date",
            "store_id": "store_id",
            "platform": "platform",
            "campaign_id": "campaign_id",
            "campaign_name": "campaign_name",
            "country": "country",
            "currency": "currency",
            "spend": "n_spend",
            "impressions": "coalesce(n_impressions, 0)",
            "clicks": "coalesce(n_clicks, 0)",
            "platform_conversions": "coalesce(n_platform_conversions, 0)",
            "platform_conversion_value": "coalesce(n_platform_conversion_value, 0)",
            "spend_usd": "n_spend * fx_rate",
            "platform_conversion_value_usd": "coalesce(n_platform_conversion_value, 0) * fx_rate",
        },  # fmt: skip
        group_key=(
            "date",
            "store_id",
            "platform",
            "coalesce(campaign_id, campaign_name)",
            "country",
        ),
        row_key=(
            "date",
            "store_id",
            "platform",
            "coalesce(campaign_id, campaign_name)",
            "country",
        ),
        fx=("currency", "fx_date"),
    )


def _sessions(now: str) -> KindSql:
    counts = ("sessions", "add_to_cart", "checkout_started", "orders")
    vocabulary = ", ".join(lit(c) for c in CHANNELS)
    channel, channel_join = _per_value(
        "sessions",
        "channel",
        "cm",
        lambda x: (
            f"case when lower(sp_text({x})) in ({vocabulary}) then lower(sp_text({x}))"
            f" else {channel_sql(x, 'null')} end"
        ),
    )
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_date(r.date) as date",
            f"{channel} as channel",
            "lower(sp_text(r.device)) as device",
            *[_num(m) for m in counts],
        ],
        joins=STORE_JOIN + channel_join,
        checks=[
            *_store_checks(),
            *_time_checks("date", "date", now, required=True),
            *_number_checks("sessions", required=True),
            *[c for m in counts[1:] for c in _number_checks(m)],
        ],
        output={
            "date": "date",
            "store_id": "store_id",
            "channel": "channel",
            "device": "device",
            **{m: f"cast(round(coalesce(n_{m}, 0)) as bigint)" for m in counts},
        },
        group_key=("date", "store_id", "channel", "device"),
        row_key=("date", "store_id", "channel", "device"),
    )


def _privacy_requests(now: str) -> KindSql:
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_ts(r.requested_at) as requested_at",
            "sp_email(r.email) as email",
            "sp_text(r.customer_id) as customer_id",
            "coalesce(lower(sp_text(r.kind)), 'delete') as kind",
        ],
        joins=STORE_JOIN,
        checks=[
            *_store_checks(),
            *_time_checks("requested_at", "requested_at", now, required=True, what="date/time"),
            (
                "email is null and customer_id is null",
                lit("neither email nor customer_id is filled; the request names nobody"),
            ),
            (
                "kind not in ('delete', 'erase', 'erasure', 'forget')",
                fmt("request kind '{}' is not supported; use 'delete'", "kind"),
            ),
        ],
        output={
            "requested_at": "requested_at",
            "store_id": "store_id",
            "email": "email",
            "customer_id": "customer_id",
            "kind": "'delete'",
        },
        group_key=("requested_at", "store_id", "email", "customer_id"),
        row_key=("requested_at", "store_id", "email", "customer_id"),
    )


PAID_CHANNELS = ("meta", "google", "tiktok", "pinterest")
LIFT_SOURCES = ("meta_conversion_lift", "google_geo", "holdout", "other")
# A 90 % interval is +-1.645 standard errors (how platforms report lift).
Z90 = 1.6448536269514722


def _lift_tests(now: str) -> KindSql:
    channel, channel_join = _per_value(
        "lift_tests",
        "channel",
        "lc",
        lambda x: (
            f"case when {channel_sql(x, 'null')} not in ('other', 'direct')"
            f" then {channel_sql(x, 'null')} else lower(sp_text({x})) end"
        ),
    )
    store = "coalesce(sp_text(r.store_id), r.folder_store_id)"
    paid = ", ".join(lit(c) for c in PAID_CHANNELS)
    se = f"coalesce(n_std_error, (n_ci_high - n_ci_low) / (2 * {Z90}))"
    return KindSql(
        parsed=[
            *STORE_PARSED,
            f"{channel} as channel",
            "sp_date(r.start_date) as start_date",
            "sp_date(r.end_date) as end_date",
            "upper(coalesce(sp_text(r.currency), st.store_currency, 'USD')) as currency",
            _num("test_spend"),
            _num("incremental_revenue"),
            _num("std_error"),
            _num("ci_low"),
            _num("ci_high"),
            "lower(sp_text(r.scope)) as scope_in",
            "lower(sp_text(r.source)) as source_in",
            "sp_text(r.test_name) as test_name",
            "ch.store_channel",
            "coalesce(sp_date(r.end_date), sp_date(r.start_date)) as fx_date",
        ],
        joins=STORE_JOIN
        + channel_join
        + " left join (select distinct store_id as channel_store, platform as store_channel"
        f" from staging.ad_spend) ch on ch.channel_store = {store} and ch.store_channel = lc.value",
        checks=[
            *_store_checks(),
            ("channel is null", lit("channel is empty; name the channel tested (meta, google…)")),
            (
                f"channel not in ({paid}) and store_channel is null",
                fmt(
                    "channel '{}' is neither a known ad channel nor one this store spends on; "
                    "use the platform name of its ad_spend rows (meta, google, tiktok…)",
                    "r_channel",
                ),
            ),
            *_time_checks("start_date", "start_date", now, required=True),
            *_time_checks("end_date", "end_date", now, required=True),
            (
                "end_date < start_date",
                fmt("end_date {} is before start_date {}; correct the dates", "r_end_date",
                    "r_start_date"),
            ),
            *_currency_checks(),
            *_number_checks("incremental_revenue", required=True)[:2],
            *_number_checks("test_spend"),
            *_number_checks("std_error")[:1],
            ("n_std_error < 0", fmt("std_error {} is negative; a standard error is positive",
                                   "r_std_error")),
            ("n_std_error = 0", lit("std_error is 0; a measured lift always has some error")),
            *_number_checks("ci_low")[:1],
            *_number_checks("ci_high")[:1],
            (
                "n_std_error is null and (n_ci_low is null or n_ci_high is null)",
                lit("neither std_error nor both ci_low and ci_high are filled; add the "
                    "standard error of the measured lift (or its 90 % interval)"),
            ),
            (
                "n_std_error is null and n_ci_low >= n_ci_high",
                fmt("ci_low {} is not below ci_high {}; check the interval", "r_ci_low",
                    "r_ci_high"),
            ),
            (
                "scope_in is not null and scope_in not in ('immediate', 'total')",
                fmt("scope '{}' is not 'immediate' or 'total' (does the lift include sales "
                    "after the test window?)", "r_scope"),
            ),
        ],
        output={
            "store_id": "store_id",
            "channel": "channel",
            "start_date": "start_date",
            "end_date": "end_date",
            "currency": "currency",
            "test_spend": "n_test_spend",
            "incremental_revenue": "n_incremental_revenue",
            "std_error": se,
            "test_spend_usd": "n_test_spend * fx_rate",
            "incremental_revenue_usd": "n_incremental_revenue * fx_rate",
            "std_error_usd": f"{se} * fx_rate",
            # A lift test measures what the window's ads caused, carry-out included,
            # unless it says otherwise.
            "scope": "coalesce(scope_in, 'total')",
            "source": f"case when source_in in ({', '.join(lit(x) for x in LIFT_SOURCES)})"
            " then source_in else 'other' end",
            "test_name": "test_name",
            # Below zero with 90 % confidence: flagged, and not used as a calibration target.
            "significantly_negative": f"n_incremental_revenue + {Z90} * {se} < 0",
        },
        group_key=("store_id", "channel", "start_date", "end_date"),
        row_key=("store_id", "channel", "start_date", "end_date"),
        fx=("currency", "fx_date"),
    )  # fmt: skip


def _partners(now: str) -> KindSql:
    store = "coalesce(sp_text(r.store_id), r.folder_store_id)"
    rate = "sp_text(r.commission_rate)"
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_text(r.partner_id) as partner_id",
            "sp_text(r.partner_name) as partner_name",
            "case when lower(sp_text(r.kind)) in ('kol', 'influencer', 'creator', 'ambassador')"
            " then 'kol' when lower(sp_text(r.kind)) in ('affiliate', 'affiliates')"
            " then 'affiliate' else lower(sp_text(r.kind)) end as kind",
            "lower(sp_text(r.platform)) as platform",
            "upper(sp_text(r.discount_code)) as discount_code",
            "sp_text(r.utm_campaign) as utm_campaign",
            _num("fixed_fee"),
            # '12%' is 0.12; a plain number is a share (0.12).
            f"case when contains({rate}, '%') then sp_num(replace({rate}, '%', '')) / 100"
            f" else sp_num({rate}) end as n_commission_rate",
            "upper(coalesce(sp_text(r.currency), st.store_currency, 'USD')) as currency",
            "sp_date(r.start_date) as start_date",
            "sp_date(r.end_date) as end_date",
            "pcs.partners as code_partners",
            f"coalesce(sp_date(r.start_date), cast(timestamp {lit(now)} as date)) as fx_date",
        ],
        joins=STORE_JOIN
        # The same code for two partners in one file: orders could not be told apart.
        + " left join (select file_seq, coalesce(sp_text(store_id), folder_store_id) as code_store,"
        " upper(sp_text(discount_code)) as code,"
        " array_to_string(list_sort(list(distinct sp_text(partner_id))), ', ') as partners"
        " from raw.partners where sp_text(discount_code) is not null group by all"
        " having count(distinct sp_text(partner_id)) > 1) pcs on pcs.file_seq = r.file_seq"
        f" and pcs.code_store = {store} and pcs.code = upper(sp_text(r.discount_code))",
        checks=[
            *_store_checks(),
            ("partner_id is null", lit("partner_id is empty; every partner needs an id")),
            (
                "discount_code is null and utm_campaign is null",
                lit("neither discount_code nor utm_campaign is filled; orders cannot be "
                    "linked to this partner"),
            ),
            (
                "code_partners is not null",
                fmt("discount code '{}' is given to several partners in this file ({}); give "
                    "each partner its own code", "discount_code", "code_partners"),
            ),
            (
                "kind is not null and kind not in ('kol', 'affiliate')",
                fmt("kind '{}' is not 'kol' or 'affiliate'", "r_kind"),
            ),
            *_number_checks("fixed_fee"),
            (
                "n_commission_rate is null and sp_text(r_commission_rate) is not null",
                fmt("commission_rate '{}' is not a number (write 0.12 or 12%)",
                    "r_commission_rate"),
            ),
            (
                "n_commission_rate < 0 or n_commission_rate > 1",
                fmt("commission_rate {} is not a share between 0 and 1 (write 0.12 or 12%)",
                    "r_commission_rate"),
            ),
            *_time_checks("start_date", "start_date", now, required=False),
            *_time_checks("end_date", "end_date", now, required=False),
            (
                "end_date < start_date",
                fmt("end_date {} is before start_date {}; correct the dates", "r_end_date",
                    "r_start_date"),
            ),
            *_currency_checks(),
        ],
        output={
            "store_id": "store_id",
            "partner_id": "partner_id",
            "partner_name": "partner_name",
            "kind": "kind",
            "platform": "platform",
            "discount_code": "discount_code",
            "utm_campaign": "utm_campaign",
            "fixed_fee": "coalesce(n_fixed_fee, 0)",
            "commission_rate": "coalesce(n_commission_rate, 0)",
            "currency": "currency",
            "fixed_fee_usd": "coalesce(n_fixed_fee, 0) * fx_rate",
            "start_date": "start_date",
            "end_date": "end_date",
        },
        group_key=("store_id", "partner_id"),
        row_key=("store_id", "partner_id"),
        fx=("currency", "fx_date"),
    )  # fmt: skip


def _experiment_assignments(now: str) -> KindSql:
    store = "coalesce(sp_text(r.store_id), r.folder_store_id)"
    raw_store = "coalesce(sp_text(store_id), folder_store_id)"
    raw_subject = "coalesce(sp_text(customer_id), sp_email(email))"
    subject = "coalesce(sp_text(r.customer_id), sp_email(r.email))"
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_text(r.experiment_id) as experiment_id",
            "sp_text(r.variant) as variant",
            "coalesce(sp_text(r.customer_id), cbe.customer_id, sp_email(r.email)) as customer_id",
            "kc.customer_id as known_customer",
            "sp_ts(r.assigned_at) as assigned_at",
            "sp_text(r.experiment_name) as experiment_name",
            "lower(sp_text(r.primary_metric)) as primary_metric",
            "sp_date(r.start_date) as start_date",
            "sp_date(r.end_date) as end_date",
            "ev.n_variants",
            "ev.only_variant",
            "cv.variants as customer_variants",
        ],
        joins=STORE_JOIN
        + f" left join customer_by_email cbe on cbe.store_id = {store} and cbe.email ="
        " case when sp_text(r.customer_id) is null then sp_email(r.email) end"
        f" left join staging.customers kc on kc.store_id = {store} and kc.customer_id ="
        " coalesce(sp_text(r.customer_id), cbe.customer_id, sp_email(r.email))"
        f" left join (select {raw_store} as ev_store, sp_text(experiment_id) as ev_experiment,"
        " count(distinct sp_text(variant)) as n_variants, min(sp_text(variant)) as only_variant"
        " from raw.experiment_assignments group by all) ev"
        f" on ev.ev_store = {store} and ev.ev_experiment = sp_text(r.experiment_id)"
        f" left join (select {raw_store} as cv_store, sp_text(experiment_id) as cv_experiment,"
        f" {raw_subject} as cv_subject,"
        " array_to_string(list_sort(list(distinct sp_text(variant))), ' and ') as variants"
        " from raw.experiment_assignments group by all"
        " having count(distinct sp_text(variant)) > 1) cv"
        f" on cv.cv_store = {store} and cv.cv_experiment = sp_text(r.experiment_id)"
        f" and cv.cv_subject = {subject}",
        checks=[
            *_store_checks(),
            ("experiment_id is null", lit("experiment_id is empty; it is required")),
            ("variant is null", lit("variant is empty; it is required")),
            (
                "customer_id is null",
                lit("neither customer_id nor email is filled; the assignment names nobody"),
            ),
            *_time_checks("assigned_at", "assigned_at", now, required=True, what="date/time"),
            *_time_checks("start_date", "start_date", now, required=False),
            *_time_checks("end_date", "end_date", now, required=False),
            (
                "n_variants < 2",
                fmt("experiment '{}' has only variant '{}'; a test needs at least two variants "
                    "(check that the export holds every variant)", "experiment_id",
                    "only_variant"),
            ),
            (
                "customer_variants is not null",
                fmt("customer '{}' is in variants {} of experiment '{}'; a customer must stay in "
                    "one variant, so the readout leaves them out", "customer_id",
                    "customer_variants", "experiment_id"),
            ),
            (
                "known_customer is null",
                fmt("customer '{}' is not a customer of store '{}' (not in its customers or "
                    "orders); add them to the customers file or correct the id", "customer_id",
                    "store_id"),
            ),
        ],
        output={c: c for c in STAGING_SCHEMAS["experiment_assignments"]},
        group_key=("store_id", "experiment_id", "customer_id"),
        row_key=("store_id", "experiment_id", "customer_id"),
    )  # fmt: skip


SPECS: dict[str, Callable[[str], KindSql]] = {
    "fx_rates": _fx_rates,
    "stores": _stores,
    "customers": _customers,
    "products": _products,
    "orders": _orders,
    "inventory": _inventory,
    "ad_spend": _ad_spend,
    "sessions": _sessions,
    "privacy_requests": _privacy_requests,
    "lift_tests": _lift_tests,
    "partners": _partners,
    "experiment_assignments": _experiment_assignments,
}


def kind_sql(kind: str, now: str, *, line_no_gaps: bool = True) -> KindSql:
    """The SQL pieces of one kind. `line_no_gaps=False` says no order line lacks its
    line_no, so the row_number() window that numbers such lines (a sort of every line)
    is left out: its value would never be used."""
    if kind == "order_lines":
        return _order_lines(now, line_no_gaps)
    return SPECS[kind](now)
