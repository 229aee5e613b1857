"""Staging specs of the store's own records: FX rates, stores, customers,
products, orders, order lines, inventory."""

from __future__ import annotations

from storepulse.ingest.kinds import STAGING_SCHEMAS
from storepulse.ingest.specs.common import (
    STORE_JOIN,
    STORE_PARSED,
    STORE_SLUG,
    KindSql,
    currency_checks,
    fmt,
    lit,
    num,
    number_checks,
    required_check,
    store_checks,
    time_checks,
)


def _fx_rates(now: str) -> KindSql:
    return KindSql(
        parsed=[
            "sp_date(r.date) as date",
            "upper(sp_text(r.currency)) as currency",
            num("usd_per_unit"),
        ],
        joins="",
        checks=[
            *time_checks("date", "date", now, required=True),
            required_check("currency"),
            (
                "not regexp_full_match(currency, '[A-Z]{3}')",
                fmt("currency '{}' is not a 3-letter ISO code", "currency"),
            ),
            *number_checks("usd_per_unit", required=True),
            ("n_usd_per_unit = 0", lit("usd_per_unit is 0; a rate must be positive")),
        ],
        output={"date": "date", "currency": "currency", "usd_per_unit": "n_usd_per_unit"},
        group_key=("date", "currency"),
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
            required_check("store_id"),
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
            *store_checks(),
            (
                "customer_id is null",
                lit("neither customer_id nor email is filled; add one to identify the customer"),
            ),
            (
                "email is not null and not regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')",
                fmt("email '{}' is not an e-mail address; correct or empty it", "r_email"),
            ),
            *time_checks("created_at", "created_at", now, required=False, what="date/time"),
        ],
        output={
            **{c: c for c in STAGING_SCHEMAS["customers"]},
            "email_sha256": "case when email is not null then sha256(email) end",
        },
        group_key=("store_id", "customer_id"),
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
            num("price"),
            num("unit_cost"),
            "sp_date(r.launched_at) as launched_at",
            "upper(coalesce(st.store_currency, 'USD')) as currency",
            f"cast(timestamp {lit(now)} as date) as fx_date",
        ],
        joins=STORE_JOIN,
        checks=[
            *store_checks(),
            required_check("sku"),
            *number_checks("price"),
            *number_checks("unit_cost"),
            *time_checks("launched_at", "launched_at", now, required=False),
            *currency_checks(),
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
            *[num(m) for m in money],
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
            *store_checks(),
            required_check("order_id", "every order needs its id"),
            (
                "customer_id_in is null and email is null",
                lit("neither customer_id nor email is filled; add one so the order has a customer"),
            ),
            (
                "customer_id_in is null and not regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')",
                fmt("email '{}' is not an e-mail address and there is no customer_id", "r_email"),
            ),
            *time_checks("created_at", "created_at", now, required=True, what="date/time"),
            *currency_checks(),
            *number_checks("total", required=True, negative_hint="; refunds go in refunded_amount"),
            *[c for m in money if m != "total" for c in number_checks(m)],
            *[
                c
                for c in time_checks(
                    "cancelled_at", "cancelled_at", now, required=False, what="date/time"
                )
                if "future" not in c[1]
            ],
        ],
        output=out,
        group_key=("store_id", "order_id"),
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
            num("quantity"),
            num("unit_price"),
            num("line_discount"),
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
            *store_checks()[:2],
            required_check("order_id", "every line needs its order"),
            required_check("sku"),
            (
                "line_no is null",
                fmt("line_no '{}' is not a whole number", "r_line_no"),
            ),
            *number_checks(
                "quantity",
                required=True,
                negative_hint="; returns go in the order's refunded_amount",
            ),
            *number_checks("unit_price"),
            *number_checks("line_discount"),
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
            num("on_hand"),
            num("lead_time_days"),
        ],
        joins=STORE_JOIN,
        checks=[
            *store_checks(),
            *time_checks("snapshot_date", "snapshot_date", now, required=True),
            required_check("sku"),
            *number_checks("on_hand", required=True, negative_hint="; count oversold stock as 0"),
            *number_checks("lead_time_days"),
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
    )
