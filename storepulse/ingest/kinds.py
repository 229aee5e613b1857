"""The input kinds of DESIGN §3: canonical columns, header aliases, required
columns, the columns of real exports that belong to a kind without being loaded,
how a header is matched to a kind, and the staging contract of
docs/architecture.md.

How a header is judged (docs/ingest.md): a file is taken as a kind only when its
header *fits* that kind: every required column is there, at least 60 % of its
columns belong to the kind (loaded, or known columns of that kind's real
exports), and it names a column of the kind besides the identifiers every kind
shares (store_id, customer_id, email) unless it has no other columns at all.
Columns that belong to no kind count against the match. A file that fits no kind
is quarantined whole, with the candidates named.
"""

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
    # Header keys of columns that real exports of this kind carry and storepulse does
    # not load (Shopify's 'Total Spent', an address line): they count for the kind
    # when a header is judged, never against it.
    known: tuple[str, ...] = ()

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
                "phone": ("phone_number", "mobile", "telephone", "default_address_phone",
                          "billing_phone"),
                "first_name": ("firstname", "given_name"),
                "last_name": ("lastname", "surname", "family_name"),
                "country": ("country_code", "default_address_country_code", "billing_country"),
                "created_at": ("signup_date", "created", "registered_at", "date_created"),
                "accepts_email_marketing": ("accepts_marketing", "email_consent",
                                            "email_marketing", "email_opt_in",
                                            "email_marketing_consent"),
                "accepts_sms_marketing": ("accepts_sms", "sms_consent", "sms_marketing",
                                          "accepts_sms_marketing_consent", "sms_marketing_consent"),
                "ad_personalization_consent": ("ads_consent", "ad_consent", "marketing_consent_ads",
                                               "ad_personalisation_consent"),
            },
            known=(
                # Shopify "Export customers"
                "default_address_company", "default_address_address1", "default_address_address2",
                "default_address_city", "default_address_province_code", "default_address_zip",
                "total_spent", "total_orders", "note", "tax_exempt", "tags",
                # Klaviyo profile exports (and the properties storepulse itself sends there,
                # which are never read back)
                "klaviyo_id", "organization", "title", "address", "address_2", "city",
                "state_region", "region", "zip_code", "timezone", "source", "initial_source",
                "ip_address", "latitude", "longitude", "locale", "last_active", "date_added",
                "profile_created_on",
                "last_open", "last_click", "email_marketing_consent_timestamp",
                "sms_marketing_consent_timestamp", "predicted_clv", "expected_date_of_next_order",
                "churn_risk", "rfm_segment", "predicted_value", "segment",
                # other customer lists
                "company", "address1", "address2", "state", "province", "zip", "postal_code",
                "postcode", "birthday", "date_of_birth", "gender", "language", "updated_at",
                "verified_email", "orders_count", "last_order_date", "marketing_opt_in_level",
                "username", "display_name", "avatar_url", "role",
            ),
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
                # The code that links an order to a partner (KOL or affiliate).
                "discount_code", "billing_country",
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
                "discount_code": ("coupon", "coupon_code", "promo_code", "voucher_code",
                                  "coupon_codes", "discount_codes", "coupon_items"),
                "billing_country": ("billing_country_code", "bill_country"),
            },
            known=(
                "fulfillment_status", "fulfilled_at", "paid_at", "shipping_method",
                "shipping_method_title", "notes", "note", "note_attributes", "customer_note",
                "tags", "source", "source_name", "risk_level", "location", "employee",
                "payment_reference", "payment_references", "outstanding_balance", "updated_at",
                "completed_at", "date_paid", "date_completed", "transaction_id", "receipt_number",
                "billing_name", "billing_street", "billing_address1", "billing_address2",
                "billing_address_1", "billing_address_2", "billing_company", "billing_city",
                "billing_zip", "billing_postcode", "billing_province", "billing_state",
                "shipping_name", "shipping_street", "shipping_address1", "shipping_address2",
                "shipping_address_1", "shipping_address_2", "shipping_company", "shipping_city",
                "shipping_zip", "shipping_postcode", "shipping_province", "shipping_state",
                "shipping_first_name", "shipping_last_name", "shipping_phone", "items",
                "item_count", "quantity", "customer_ip_address", "customer_user_agent",
                "order_key", "cart_hash", "status",
            ),
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
            known=(
                "title", "name", "product_name", "lineitem_name", "variant_title", "product_id",
                "variant_id", "vendor", "compare_at_price", "lineitem_compare_at_price", "tax",
                "total", "line_total", "requires_shipping", "taxable", "fulfillment_status",
                "currency",
            ),
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
            known=(
                "handle", "body_html", "description", "vendor", "tags", "published", "status",
                "option1_name", "option1_value", "option2_name", "option2_value",
                "option3_name", "option3_value", "variant_grams", "variant_inventory_qty",
                "variant_barcode", "barcode", "weight", "compare_at_price",
                "variant_compare_at_price", "image_src", "updated_at", "currency", "brand",
            ),
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
            known=("title", "product_title", "variant_title", "incoming", "committed",
                   "unavailable", "reserved", "location_id", "barcode"),
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
            known=("ad_set_name", "ad_group", "ad_group_name", "ad_name", "reach", "frequency",
                   "cpm", "cpc", "ctr", "results", "result_type", "cost_per_result", "objective",
                   "campaign_status", "account_name", "account_id", "reporting_starts",
                   "reporting_ends", "roas", "cost_per_conversion", "conversion_rate"),
        ),
        KindSpec(
            "sessions",
            ("date", "store_id", "channel", "device", "sessions", "add_to_cart",
             "checkout_started", "orders"),
            (("date",), ("sessions",)),
            {
                "date": ("day",),
                "store_id": STORE_ALIASES,
                "channel": ("source", "traffic_source", "session_default_channel_group",
                            "default_channel_group", "channel_group", "session_source"),
                "device": ("device_type", "device_category"),
                "sessions": ("visits", "total_sessions"),
                "add_to_cart": ("added_to_cart", "sessions_with_cart_additions", "add_to_carts"),
                "checkout_started": ("reached_checkout", "sessions_that_reached_checkout",
                                     "checkouts"),
                "orders": ("completed_orders", "conversions", "purchases", "transactions"),
            },
            known=("users", "new_users", "total_users", "active_users", "pageviews",
                   "page_views", "views", "bounce_rate", "engaged_sessions", "engagement_rate",
                   "avg_session_duration", "average_session_duration", "conversion_rate",
                   "landing_page", "purchase_revenue", "total_revenue"),
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
            known=("request_id", "status", "notes", "handled_at", "completed_at"),
        ),
        KindSpec(
            "lift_tests",
            (
                "store_id", "channel", "start_date", "end_date", "currency", "test_spend",
                "incremental_revenue", "std_error", "ci_low", "ci_high", "scope", "source",
                "test_name",
            ),
            (("channel",), ("start_date",), ("end_date",), ("incremental_revenue",),
             ("std_error", "ci_low", "ci_high")),
            {
                "store_id": STORE_ALIASES,
                "channel": ("platform",),
                "start_date": ("start", "test_start", "starts", "start_day"),
                "end_date": ("end", "test_end", "ends", "end_day"),
                "currency": ("currency_code",),
                "test_spend": ("spend", "spend_in_test", "amount_spent"),
                "incremental_revenue": ("incremental_sales", "incremental_conversion_value",
                                        "lift_revenue", "incremental_value"),
                "std_error": ("standard_error", "se", "incremental_revenue_std_error"),
                "ci_low": ("ci_lower", "lower_90", "ci_90_low", "lower_bound"),
                "ci_high": ("ci_upper", "upper_90", "ci_90_high", "upper_bound"),
                "scope": ("lift_scope", "window_scope"),
                "source": ("study_type", "test_type", "method"),
                "test_name": ("study_name", "test_id", "study_id", "name"),
            },
            known=("confidence", "p_value", "lift_percent", "holdout_share", "notes", "status",
                   "objective", "kpi", "test_spend_usd"),
        ),
        KindSpec(
            "partners",
            (
                "store_id", "partner_id", "partner_name", "kind", "platform", "discount_code",
                "utm_campaign", "fixed_fee", "commission_rate", "currency", "start_date",
                "end_date",
            ),
            (("partner_id",), ("discount_code", "utm_campaign")),
            {
                "store_id": STORE_ALIASES,
                "partner_id": ("partner", "affiliate_id", "influencer_id", "creator_id", "kol_id"),
                "partner_name": ("name", "affiliate_name", "influencer_name", "creator_name",
                                 "kol_name"),
                "kind": ("partner_type", "type", "partner_kind"),
                "platform": ("social_platform", "network"),
                "discount_code": ("code", "coupon", "coupon_code", "promo_code"),
                "utm_campaign": ("campaign", "tracking_campaign"),
                "fixed_fee": ("fee", "flat_fee", "fixed_fee_amount"),
                "commission_rate": ("commission", "commission_pct", "commission_percent"),
                "currency": ("currency_code",),
                "start_date": ("start", "starts", "contract_start"),
                "end_date": ("end", "ends", "contract_end"),
            },
            known=("email", "contact_email", "notes", "followers", "tier", "country", "handle",
                   "instagram", "tiktok", "youtube", "website", "status"),
        ),
        KindSpec(
            "experiment_assignments",
            (
                "store_id", "experiment_id", "variant", "customer_id", "email", "assigned_at",
                "experiment_name", "primary_metric", "start_date", "end_date",
            ),
            (("experiment_id",), ("variant",), ("customer_id", "email"), ("assigned_at",)),
            {
                "store_id": STORE_ALIASES,
                "experiment_id": ("experiment", "test_id", "ab_test_id", "campaign_test_id"),
                "variant": ("variation", "arm", "group", "bucket", "treatment"),
                "customer_id": ("customer", "user_id", "profile_id"),
                "email": ("e_mail", "email_address"),
                "assigned_at": ("assignment_date", "assigned", "bucketed_at", "exposed_at",
                                "first_exposure"),
                "experiment_name": ("test_name",),
                "primary_metric": ("metric", "goal"),
                "start_date": ("experiment_start", "test_start"),
                "end_date": ("experiment_end", "test_end"),
            },
            known=("device", "session_id", "visitor_id", "user_agent", "country", "exposure"),
        ),
    )
}  # fmt: skip

KIND_SPECS = {
    name: KindSpec(name, (*spec.columns, ROW_PROBLEM), spec.required, spec.aliases, spec.known)
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
        "device": V, "ship_country": V, "discount_code": V, "billing_country": V,
        "source_file": V, "row_number": BI,
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
    "lift_tests": {
        "store_id": V, "channel": V, "start_date": DT, "end_date": DT, "currency": V,
        "test_spend": D, "incremental_revenue": D, "std_error": D, "test_spend_usd": D,
        "incremental_revenue_usd": D, "std_error_usd": D, "scope": V, "source": V,
        "test_name": V, "significantly_negative": B,
    },
    "partners": {
        "store_id": V, "partner_id": V, "partner_name": V, "kind": V, "platform": V,
        "discount_code": V, "utm_campaign": V, "fixed_fee": D, "commission_rate": D,
        "currency": V, "fixed_fee_usd": D, "start_date": DT, "end_date": DT,
    },
    "experiment_assignments": {
        "store_id": V, "experiment_id": V, "variant": V, "customer_id": V, "assigned_at": T,
        "experiment_name": V, "primary_metric": V, "start_date": DT, "end_date": DT,
    },
}  # fmt: skip


# Identifiers that many kinds share: a header that names nothing else of a kind
# (an A/B tool's "store_id, experiment_id, variant, customer_id") is no evidence
# that the file holds that kind's records.
SHARED_IDENTIFIERS = frozenset({"store_id", "customer_id", "email"})
# At least this share of a header's columns must belong to the kind it is taken as
# (a returns file "order_id, sku, quantity, reason, refund_amount, created_at" is half
# order-line columns, and loading it as order lines would replace the real ones).
FIT_THRESHOLD = 0.6
# ops.ingested_files names the runner-up kind when its score is this close.
RUNNER_UP_MARGIN = 0.25


@dataclass(frozen=True)
class HeaderMatch:
    kind: str
    mapping: dict[str, str]  # file column -> canonical column
    missing: tuple[str, ...]  # required columns not found, as 'a or b'
    # Other file columns for an already mapped canonical column (Shopify's 'Phone' and
    # 'Default Address Phone'), in order of preference: used where the first is empty.
    fallbacks: tuple[tuple[str, str], ...] = ()
    header_currency: str | None = None  # from 'Total (EUR)' when no currency column
    known: tuple[str, ...] = ()  # file columns of the kind's real exports, not loaded
    unknown: tuple[str, ...] = ()  # file columns that are not the kind's

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def used(self) -> int:
        """File columns that are loaded (the preferred one and its fallbacks)."""
        return len(self.mapping) + len(self.fallbacks)

    @property
    def score(self) -> float:
        """Share of the header's named columns that belong to this kind (0..1)."""
        total = self.used + len(self.known) + len(self.unknown)
        return (self.used + len(self.known)) / total if total else 0.0

    @property
    def evidence(self) -> tuple[str, ...]:
        """Loaded canonical columns other than the identifiers every kind shares."""
        return tuple(sorted(set(self.mapping.values()) - SHARED_IDENTIFIERS))

    @property
    def fits(self) -> bool:
        """Safe to load as this kind (see the module docstring). A header of shared
        identifiers alone ('customer_id, email': an id map) fits only when it has no
        other columns."""
        return (
            self.complete
            and self.score >= FIT_THRESHOLD
            and (bool(self.evidence) or not self.unknown)
        )

    def describe(self) -> str:
        """'customers (score 0.33: 2 of 6 columns are customers columns: customer_id,
        email; not: points_balance, tier, ...)' for messages."""
        total = self.used + len(self.known) + len(self.unknown)
        mine = [c for c in self.mapping] + [c for c, _ in self.fallbacks] + list(self.known)
        text = (
            f"{self.kind} (score {self.score:.2f}: {self.used + len(self.known)} of {total} "
            f"columns are {self.kind} columns: {_listing(mine)}"
        )
        if self.unknown:
            text += f"; not: {_listing(list(self.unknown))}"
        if self.missing:
            text += f"; missing: {', '.join(self.missing)}"
        return text + ")"


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


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
    known_keys = set(spec.known)
    candidates: dict[str, list[tuple[int, int, str]]] = {}
    currencies: list[str] = []
    known: list[str] = []
    unknown: list[str] = []
    for position, column in enumerate(columns):
        canonical, key, currency = _canonical_for(column, lookup)
        if canonical is None:
            if key in known_keys:
                known.append(column)
            elif key:  # an empty name (a trailing delimiter) says nothing either way
                unknown.append(column)
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
    return HeaderMatch(
        kind, mapping, missing, tuple(fallbacks), header_currency, tuple(known), tuple(unknown)
    )


def rank_kinds(columns: list[str]) -> list[HeaderMatch]:
    """Every kind that names at least one column of the header, best first: the kind
    that loads the most of its columns, then a complete one, one the header fits,
    the higher score, and the kind with fewer columns (the tighter fit). Only the
    first is ever taken, and only if the header fits it (`HeaderMatch.fits`): a file
    never falls through to a kind that explains fewer of its columns."""
    matches = [m for m in (match_header(columns, kind) for kind in KINDS) if m.mapping]
    return sorted(
        matches,
        key=lambda m: (
            len(m.mapping), m.complete, m.fits, m.score, -len(KIND_SPECS[m.kind].columns),
        ),
        reverse=True,
    )  # fmt: skip


def runner_up(ranked: list[HeaderMatch]) -> HeaderMatch | None:
    """The second-best kind when it came close to the best (for ops.ingested_files)."""
    if len(ranked) < 2 or ranked[1].used < 2:
        return None
    return ranked[1] if ranked[1].score >= ranked[0].score - RUNNER_UP_MARGIN else None
