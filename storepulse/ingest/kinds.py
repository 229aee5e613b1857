"""The ten input kinds of DESIGN §3: canonical columns, header aliases, required
columns, and the staging contract of docs/architecture.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def header_key(name: str) -> str:
    """'Amount spent (EUR)' -> 'amount_spent_eur'; how headers are compared."""
    text = str(name).replace("\ufeff", "").strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


@dataclass(frozen=True)
class KindSpec:
    name: str
    columns: tuple[str, ...]
    # Each entry is a set of alternatives; one of them must be a column of the file.
    required: tuple[tuple[str, ...], ...]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def priority(self, key: str, canonical: str) -> int:
        """How `key` names `canonical`: 0 for the name itself, then the alias order."""
        if key == canonical:
            return 0
        keys = [header_key(a) for a in self.aliases.get(canonical, ())]
        return 1 + keys.index(key) if key in keys else 99

    def lookup(self) -> dict[str, str]:
        """header_key -> canonical column."""
        table = {c: c for c in self.columns if c != ROW_PROBLEM}
        for column, names in self.aliases.items():
            for alias in names:
                table.setdefault(header_key(alias), column)
        return table


STORE_ALIASES = ("store", "shop", "shop_id", "store_code", "merchant_id")
# Not a column of any export: carries a problem the reader or layout found in a row
# (a row cut off, more fields than the header, an order split across files) into raw,
# where staging turns it into that row's quarantine reason.
ROW_PROBLEM = "row_problem"
# 'Total (EUR)', 'Amount [GBP]': a money header that names its currency.
CURRENCY_SUFFIX = re.compile(r"^(.*?)\s*[\(\[]\s*([A-Za-z]{3})\s*[\)\]]\s*$")

KIND_SPECS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            "stores",
            ("store_id", "store_name", "country", "currency", "timezone"),
            (("store_id",),),
            {
                "store_id": STORE_ALIASES,
                "store_name": ("name", "shop_name"),
                "timezone": ("time_zone", "tz", "iana_timezone"),
                "currency": ("currency_code", "default_currency"),
                "country": ("country_code",),
            },
        ),
        KindSpec(
            "customers",
            (
                "store_id", "customer_id", "email", "phone", "first_name", "last_name",
                "country", "created_at", "accepts_email_marketing", "accepts_sms_marketing",
                "ad_personalization_consent",
            ),
            (("customer_id", "email"),),
            {
                "store_id": STORE_ALIASES,
                "customer_id": ("customer", "id", "client_id", "user_id", "customer_number"),
                "email": ("e_mail", "email_address", "customer_email", "billing_email",
                          "billing_email_address"),
                "phone": ("phone_number", "mobile", "telephone", "default_address_phone"),
                "first_name": ("firstname", "given_name"),
                "last_name": ("lastname", "surname", "family_name"),
                "country": ("country_code", "default_address_country_code"),
                "created_at": ("signup_date", "created", "registered_at"),
                "accepts_email_marketing": ("accepts_marketing", "email_consent",
                                            "email_marketing", "email_opt_in"),
                "accepts_sms_marketing": ("accepts_sms", "sms_consent", "sms_marketing",
                                          "accepts_sms_marketing_consent"),
                "ad_personalization_consent": ("ads_consent", "ad_consent", "marketing_consent_ads",
                                               "ad_personalisation_consent"),
            },
        ),
        KindSpec(
            "orders",
            (
                "store_id", "order_id", "customer_id", "email", "created_at", "currency",
                "subtotal", "discount", "shipping", "tax", "total", "financial_status",
                "refunded_amount", "cancelled_at", "payment_method", "utm_source", "utm_medium",
                "utm_campaign", "device", "ship_country",
                # Customer details some exports carry on the order (Shopify, WooCommerce):
                # they build staging.customers for a store that has no customers file.
                "phone", "first_name", "last_name", "accepts_email_marketing",
            ),
            (("order_id",), ("customer_id", "email"), ("created_at",), ("total",)),
            {
                "store_id": STORE_ALIASES,
                "order_id": ("order", "order_number", "order_no", "order_name"),
                "customer_id": ("customer", "client_id", "user_id", "customer_user",
                                "customer_user_id"),
                "email": ("customer_email", "e_mail", "email_address", "billing_email",
                          "billing_email_address"),
                "created_at": ("order_date", "created", "order_created_at", "processed_at",
                               "placed_at", "ordered_at", "order_time", "date_created"),
                "currency": ("currency_code", "presentment_currency", "order_currency"),
                "subtotal": ("subtotal_price", "sub_total"),
                "discount": ("discounts", "total_discounts", "discount_amount", "cart_discount_amount", "discount_total"),
                "shipping": ("shipping_amount", "total_shipping", "shipping_cost", "shipping_price", "order_shipping_amount", "shipping_total"),
                "tax": ("taxes", "total_tax", "tax_amount", "order_total_tax_amount", "tax_total"),
                "total": ("total_price", "order_total", "grand_total", "total_amount", "order_total_amount"),
                "financial_status": ("payment_status", "order_status"),
                "refunded_amount": ("refunded", "refund_amount", "total_refunded", "refunds",
                                    "order_refund_amount", "refund_total", "order_refund"),
                "cancelled_at": ("canceled_at", "cancelled", "cancel_date"),
                "payment_method": ("payment_gateway", "gateway", "payment_type", "payment_method_title"),
                "device": ("device_type",),
                "ship_country": ("shipping_country", "shipping_country_code", "country"),
                "phone": ("billing_phone", "customer_phone", "phone_number"),
                "first_name": ("billing_first_name", "customer_first_name"),
                "last_name": ("billing_last_name", "customer_last_name"),
                "accepts_email_marketing": ("accepts_marketing", "buyer_accepts_marketing"),
            },
        ),
        KindSpec(
            "order_lines",
            ("store_id", "order_id", "line_no", "sku", "quantity", "unit_price", "line_discount"),
            (("order_id",), ("sku",), ("quantity",)),
            {
                "store_id": STORE_ALIASES,
                "order_id": ("order", "order_number", "order_no", "order_name"),
                "line_no": ("line", "line_number", "line_item_id", "position"),
                "sku": ("variant_sku", "product_sku", "lineitem_sku"),
                "quantity": ("qty", "units", "lineitem_quantity"),
                "unit_price": ("price", "item_price", "lineitem_price"),
                "line_discount": ("discount", "discount_amount", "lineitem_discount"),
            },
        ),
        KindSpec(
            "products",
            ("store_id", "sku", "title", "category", "price", "unit_cost", "launched_at"),
            (("sku",),),
            {
                "store_id": STORE_ALIASES,
                "sku": ("variant_sku", "product_sku"),
                "title": ("product_title", "product_name", "name"),
                "category": ("product_type", "product_category", "type"),
                "price": ("variant_price", "list_price"),
                "unit_cost": ("cost", "cost_per_item", "cogs", "unit_cost_price"),
                "launched_at": ("published_at", "launch_date", "created_at"),
            },
        ),
        KindSpec(
            "inventory",
            ("snapshot_date", "store_id", "sku", "warehouse", "on_hand", "lead_time_days"),
            (("snapshot_date",), ("sku",), ("on_hand",)),
            {
                "snapshot_date": ("date", "as_of", "snapshot"),
                "store_id": STORE_ALIASES,
                "sku": ("variant_sku", "product_sku"),
                "warehouse": ("location", "warehouse_id", "location_name"),
                "on_hand": ("available", "quantity_on_hand", "stock", "inventory_quantity",
                            "qty_on_hand"),
                "lead_time_days": ("lead_time", "supplier_lead_time_days"),
            },
        ),
        KindSpec(
            "ad_spend",
            (
                "date", "store_id", "platform", "campaign_id", "campaign_name", "country",
                "currency", "spend", "impressions", "clicks", "platform_conversions",
                "platform_conversion_value",
            ),
            (("date",), ("platform",), ("spend",)),
            {
                "date": ("day", "report_date", "by_day", "stat_time_day"),
                "store_id": STORE_ALIASES,
                "platform": ("channel", "network", "source"),
                "campaign_id": ("campaign_code",),
                "campaign_name": ("campaign",),
                "currency": ("currency_code",),
                "spend": ("cost", "amount_spent", "ad_spend"),
                "impressions": ("impr",),
                "platform_conversions": ("conversions", "purchases"),
                "platform_conversion_value": ("conversion_value", "conv_value", "revenue",
                                              "purchases_conversion_value"),
            },
        ),
        KindSpec(
            "sessions",
            ("date", "store_id", "channel", "device", "sessions", "add_to_cart",
             "checkout_started", "orders"),
            (("date",), ("sessions",)),
            {
                "date": ("day",),
                "store_id": STORE_ALIASES,
                "channel": ("source", "traffic_source"),
                "device": ("device_type", "device_category"),
                "sessions": ("visits", "total_sessions"),
                "add_to_cart": ("added_to_cart", "sessions_with_cart_additions", "add_to_carts"),
                "checkout_started": ("reached_checkout", "sessions_that_reached_checkout",
                                     "checkouts"),
                "orders": ("completed_orders", "conversions"),
            },
        ),
        KindSpec(
            "fx_rates",
            ("date", "currency", "usd_per_unit"),
            (("date",), ("currency",), ("usd_per_unit",)),
            {"date": ("day", "rate_date"), "currency": ("currency_code", "code"),
             "usd_per_unit": ("rate", "usd_rate", "fx_rate")},
        ),
        KindSpec(
            "privacy_requests",
            ("requested_at", "store_id", "email", "customer_id", "kind"),
            (("email", "customer_id"), ("requested_at",)),
            {
                "requested_at": ("request_date", "requested", "received_at"),
                "store_id": STORE_ALIASES,
                "email": ("e_mail", "email_address"),
                "kind": ("request_type", "type", "action"),
            },
        ),
    )
}  # fmt: skip

KIND_SPECS = {
    name: KindSpec(name, (*spec.columns, ROW_PROBLEM), spec.required, spec.aliases)
    for name, spec in KIND_SPECS.items()
}
KINDS = tuple(KIND_SPECS)

# The staging contract (docs/architecture.md): column -> DuckDB type.
V, D, T, DT, B, INT, BI = "varchar", "double", "timestamp", "date", "boolean", "integer", "bigint"
STAGING_SCHEMAS: dict[str, dict[str, str]] = {
    "stores": {"store_id": V, "store_name": V, "country": V, "currency": V, "timezone": V},
    "customers": {
        "store_id": V, "customer_id": V, "email": V, "email_sha256": V, "phone": V,
        "first_name": V, "last_name": V, "country": V, "created_at": T,
        "accepts_email_marketing": B, "accepts_sms_marketing": B, "ad_personalization_consent": B,
    },
    "orders": {
        "store_id": V, "order_id": V, "customer_id": V, "email": V, "created_at": T,
        "order_date": DT, "currency": V, "subtotal": D, "discount": D, "shipping": D, "tax": D,
        "total": D, "refunded_amount": D, "fx_usd_per_unit": D, "subtotal_usd": D,
        "discount_usd": D, "shipping_usd": D, "tax_usd": D, "total_usd": D,
        "refunded_amount_usd": D, "financial_status": V, "cancelled_at": T, "is_cancelled": B,
        "payment_method": V, "utm_source": V, "utm_medium": V, "utm_campaign": V, "channel": V,
        "device": V, "ship_country": V, "source_file": V, "row_number": BI,
    },
    "order_lines": {
        "store_id": V, "order_id": V, "line_no": INT, "sku": V, "quantity": D, "unit_price": D,
        "line_discount": D, "currency": V, "unit_price_usd": D, "line_discount_usd": D,
        "line_total_usd": D,
    },
    "products": {
        "store_id": V, "sku": V, "title": V, "category": V, "price": D, "unit_cost": D,
        "price_usd": D, "unit_cost_usd": D, "launched_at": DT,
    },
    "inventory": {
        "snapshot_date": DT, "store_id": V, "sku": V, "warehouse": V, "on_hand": D,
        "lead_time_days": INT,
    },
    "ad_spend": {
        "date": DT, "store_id": V, "platform": V, "campaign_id": V, "campaign_name": V,
        "country": V, "currency": V, "spend": D, "impressions": D, "clicks": D,
        "platform_conversions": D, "platform_conversion_value": D, "spend_usd": D,
        "platform_conversion_value_usd": D,
    },
    "sessions": {
        "date": DT, "store_id": V, "channel": V, "device": V, "sessions": BI, "add_to_cart": BI,
        "checkout_started": BI, "orders": BI,
    },
    "fx_rates": {"date": DT, "currency": V, "usd_per_unit": D},
    "privacy_requests": {
        "requested_at": T, "store_id": V, "email": V, "customer_id": V, "kind": V,
    },
}  # fmt: skip


@dataclass(frozen=True)
class HeaderMatch:
    kind: str
    mapping: dict[str, str]  # file column -> canonical column
    missing: tuple[str, ...]  # required columns not found, as 'a or b'
    # Other file columns for an already mapped canonical column (Shopify's 'Phone' and
    # 'Default Address Phone'), in order of preference: used where the first is empty.
    fallbacks: tuple[tuple[str, str], ...] = ()
    header_currency: str | None = None  # from 'Total (EUR)' when no currency column

    @property
    def complete(self) -> bool:
        return not self.missing


def _canonical_for(column: str, lookup: dict[str, str]) -> tuple[str | None, str, str | None]:
    """(canonical, the header key it matched by, currency named in the header)."""
    key = header_key(column)
    if key in lookup:
        return lookup[key], key, None
    found = CURRENCY_SUFFIX.match(str(column).replace("\ufeff", "").strip())
    if found:
        base = header_key(found.group(1))
        if base in lookup:
            return lookup[base], base, found.group(2).upper()
    return None, key, None


def match_header(columns: list[str], kind: str) -> HeaderMatch:
    spec = KIND_SPECS[kind]
    lookup = spec.lookup()
    candidates: dict[str, list[tuple[int, int, str]]] = {}
    currencies: list[str] = []
    for position, column in enumerate(columns):
        canonical, key, currency = _canonical_for(column, lookup)
        if canonical is None:
            continue
        candidates.setdefault(canonical, []).append(
            (spec.priority(key, canonical), position, column)
        )
        if currency and canonical != "currency":
            currencies.append(currency)
    mapping: dict[str, str] = {}
    fallbacks: list[tuple[str, str]] = []
    for canonical, found in candidates.items():
        ranked = [column for _, _, column in sorted(found)]
        mapping[ranked[0]] = canonical
        fallbacks += [(column, canonical) for column in ranked[1:]]
    present = set(mapping.values())
    missing = tuple(" or ".join(alts) for alts in spec.required if not present.intersection(alts))
    header_currency = currencies[0] if currencies and len(set(currencies)) == 1 else None
    return HeaderMatch(kind, mapping, missing, tuple(fallbacks), header_currency)


def best_canonical_match(columns: list[str]) -> HeaderMatch | None:
    """The kind whose columns the header matches best (None below two matches).

    Scored by matched columns; a tie goes to the kind whose required columns are
    all there, then to the kind with fewer columns (the tighter fit).
    """
    ranked = sorted(
        (match_header(columns, kind) for kind in KINDS),
        key=lambda m: (len(m.mapping), m.complete, -len(KIND_SPECS[m.kind].columns)),
        reverse=True,
    )
    best = ranked[0]
    return best if len(best.mapping) >= 2 else None
