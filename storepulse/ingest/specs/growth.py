"""Staging specs of the growth levers: lift tests, partners, experiment
assignments (validation across rows: duplicate codes, variants)."""

from __future__ import annotations

from storepulse.ingest.kinds import STAGING_SCHEMAS
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
    required_check,
    store_checks,
    time_checks,
)

PAID_CHANNELS = ("meta", "google", "tiktok", "pinterest")
LIFT_SOURCES = ("meta_conversion_lift", "google_geo", "holdout", "other")
# A 90 % interval is +-1.645 standard errors (how platforms report lift).
Z90 = 1.6448536269514722


def _lift_tests(now: str) -> KindSql:
    channel, channel_join = per_value("lift_tests", "channel", "lc", platform_channel)
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
            num("test_spend"),
            num("incremental_revenue"),
            num("std_error"),
            num("ci_low"),
            num("ci_high"),
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
            *store_checks(),
            required_check("channel", "name the channel tested (meta, google…)"),
            (
                f"channel not in ({paid}) and store_channel is null",
                fmt(
                    "channel '{}' is neither a known ad channel nor one this store spends on; "
                    "use the platform name of its ad_spend rows (meta, google, tiktok…)",
                    "r_channel",
                ),
            ),
            *time_checks("start_date", "start_date", now, required=True),
            *time_checks("end_date", "end_date", now, required=True),
            (
                "end_date < start_date",
                fmt("end_date {} is before start_date {}; correct the dates", "r_end_date",
                    "r_start_date"),
            ),
            *currency_checks(),
            *number_checks("incremental_revenue", required=True)[:2],
            *number_checks("test_spend"),
            *number_checks("std_error")[:1],
            ("n_std_error < 0", fmt("std_error {} is negative; a standard error is positive",
                                   "r_std_error")),
            ("n_std_error = 0", lit("std_error is 0; a measured lift always has some error")),
            *number_checks("ci_low")[:1],
            *number_checks("ci_high")[:1],
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
            num("fixed_fee"),
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
            *store_checks(),
            required_check("partner_id", "every partner needs an id"),
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
            *number_checks("fixed_fee"),
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
            *time_checks("start_date", "start_date", now, required=False),
            *time_checks("end_date", "end_date", now, required=False),
            (
                "end_date < start_date",
                fmt("end_date {} is before start_date {}; correct the dates", "r_end_date",
                    "r_start_date"),
            ),
            *currency_checks(),
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
            *store_checks(),
            required_check("experiment_id"),
            required_check("variant"),
            (
                "customer_id is null",
                lit("neither customer_id nor email is filled; the assignment names nobody"),
            ),
            *time_checks("assigned_at", "assigned_at", now, required=True, what="date/time"),
            *time_checks("start_date", "start_date", now, required=False),
            *time_checks("end_date", "end_date", now, required=False),
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
    )  # fmt: skip
