"""Staging specs of marketing data and requests: ad spend, sessions, privacy
requests."""

from __future__ import annotations

from storepulse.ingest.channels import CHANNELS, channel_sql
from storepulse.ingest.specs.common import (
    STORE_JOIN,
    STORE_PARSED,
    KindSql,
    currency_checks,
    fmt,
    lit,
    num,
    number_checks,
    per_value,
    platform_channel,
    store_checks,
    time_checks,
)


def _ad_spend(now: str) -> KindSql:
    metrics = (
        "spend",
        "impressions",
        "clicks",
        "platform_conversions",
        "platform_conversion_value",
    )
    platform, platform_join = per_value("ad_spend", "platform", "pm", platform_channel)
    return KindSql(
        parsed=[
            *STORE_PARSED,
            "sp_date(r.date) as date",
            f"{platform} as platform",
            "sp_text(r.campaign_id) as campaign_id",
            "sp_text(r.campaign_name) as campaign_name",
            "upper(sp_text(r.country)) as country",
            "upper(coalesce(sp_text(r.currency), st.store_currency, 'USD')) as currency",
            *[num(m) for m in metrics],
            "sp_date(r.date) as fx_date",
        ],
        joins=STORE_JOIN + platform_join,
        checks=[
            *store_checks(),
            *time_checks("date", "date", now, required=True),
            (
                "platform is null",
                lit("platform is empty; it is required (meta, google, tiktok…)"),
            ),
            *currency_checks(),
            *number_checks("spend", required=True),
            *[c for m in metrics[1:] for c in number_checks(m)],
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
        fx=("currency", "fx_date"),
    )


def _sessions(now: str) -> KindSql:
    counts = ("sessions", "add_to_cart", "checkout_started", "orders")
    vocabulary = ", ".join(lit(c) for c in CHANNELS)
    channel, channel_join = per_value(
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
            *[num(m) for m in counts],
        ],
        joins=STORE_JOIN + channel_join,
        checks=[
            *store_checks(),
            *time_checks("date", "date", now, required=True),
            *number_checks("sessions", required=True),
            *[c for m in counts[1:] for c in number_checks(m)],
        ],
        output={
            "date": "date",
            "store_id": "store_id",
            "channel": "channel",
            "device": "device",
            **{m: f"cast(round(coalesce(n_{m}, 0)) as bigint)" for m in counts},
        },
        group_key=("date", "store_id", "channel", "device"),
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
            *store_checks(),
            *time_checks("requested_at", "requested_at", now, required=True, what="date/time"),
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
    )
