"""Partner scorecards: KOLs and affiliates next to the store's paid channels.

Pure: orders, partners and ad spend in (polars), one row per store x partner x
period out (monthly, and `overall`). No I/O.

Definitions (docs/growth.md):

- **Linked orders.** A valid order belongs to the partner whose discount code it
  carries (codes compared upper-case); an order without a partner's code belongs
  to the partner whose `utm_campaign` it carries. A code that no partner of the
  store has is not dropped: it is counted in `unlinked_codes`.
- **orders, revenue_usd, refunded_usd, net_revenue_usd, aov_usd** over the linked
  orders of the period; **refund_rate** = share of linked orders with a refund.
- **new_customers**: linked orders that were the customer's first order in the
  store and came through the partner's own channel (`influencer` for KOLs,
  `affiliate` for affiliates) or an untracked one (direct). Those customers are the
  ones the partner **brought**. A first order with the code that came through another
  tracked channel (a paid ad, an e-mail, organic search, another partner's link)
  found the code elsewhere, on a coupon site most often: counted as
  `code_only_new_customers`, not credited (the usual de-duplication of affiliate
  programmes; `credit_other_channels` turns it off). A customer's first order is the
  first one they placed: when it was cancelled, carried a partner's code or campaign and
  they ordered again, that partner brought them (its code, campaign and channel decide,
  as `placed_*` columns on the first counted order).
- **likely_leaked_customers**: a leaked code is also used by new customers who arrive
  untracked (they typed the address after finding the code), and those look like the
  partner's own. Their number is estimated from the leaks that can be seen: the code's
  `code_only_new_customers` times the store's ratio of untracked to tracked arrivals
  among new customers who used one of the store's own codes (a code no partner has),
  tracked meaning through a channel other than the partner's own. A partner's few seen
  leaks say little on their own, and capping each estimate at the partner's untracked
  arrivals lost what the others' seen leaks implied, so each partner's share of leaks
  among its untracked arrivals is drawn towards the store's (all partners' estimates
  over all their untracked arrivals): (estimate + k x store share) / (untracked + k),
  with k = `leak_prior_strength` (2 arrivals; 0: the partner's own data alone), at most
  all of them. Each untracked new customer of the partner counts for 1 - that share in
  `brought_revenue_usd` (`discount_untracked_leaks` turns it off).
- **repeat_rate_90d**: of the customers brought in the period whose first order is
  at least 90 days before as_of, the share who ordered again within 90 days;
  `store_repeat_rate_90d` is the same for every new customer of the store in the
  period.
- **brought_revenue_usd**: net revenue of every order of the customers the partner
  brought, from their first order on, with or without the code (a partner who brings
  loyal customers earns their next orders too), untracked arrivals weighted as above. Linked orders of customers the store
  already had (`existing_customer_orders`: a code found on a coupon site, a customer
  who would have bought anyway) cost commission but are not counted as value.
- **cost_usd** = fixed fee + commission. The commission is `commission_rate` of the
  net revenue of the linked orders. The fixed fee is spread over the contract's days
  (start_date to end_date) and counted up to the day before as_of; without an
  end_date it is paid on the start_date.
- **roi** = (brought_revenue_usd - cost_usd) / cost_usd; **cac_usd** = cost_usd /
  new_customers.
- **Paid channels** (kind `paid_channel`): the same figures with last-click orders
  (the order's channel) as the linked orders and ad spend as the cost.
- **Flags** (overall rows): `costs more than it brings` (roi < 0), `customers do not
  come back` (repeat rate at most `low_repeat_ratio` of the store's, over at least
  `min_customers` eligible customers), `high refunds` (refund rate at least
  `high_refund_ratio` times the store's, over at least `min_orders` orders), `code
  mostly used by existing customers` (half its linked orders or more, over at least
  `min_orders`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

REPEAT_WINDOW_DAYS = 90
PAID_CHANNELS = ("meta", "google", "tiktok", "pinterest")
# The channel a partner's own links arrive through, and channels that track nothing.
OWN_CHANNEL = {"kol": "influencer", "affiliate": "affiliate"}
UNTRACKED_CHANNELS = ("direct", "other")
SCORECARD_SCHEMA = {
    "store_id": pl.String, "partner_id": pl.String, "partner_name": pl.String,
    "kind": pl.String, "platform": pl.String, "period": pl.String, "period_start": pl.Date,
    "period_end": pl.Date, "orders": pl.Int64, "new_customers": pl.Int64,
    "revenue_usd": pl.Float64, "refunded_usd": pl.Float64, "net_revenue_usd": pl.Float64,
    "aov_usd": pl.Float64, "refund_rate": pl.Float64, "repeat_rate_90d": pl.Float64,
    "customers_eligible_90d": pl.Int64, "store_repeat_rate_90d": pl.Float64,
    "store_refund_rate": pl.Float64, "existing_customer_orders": pl.Int64,
    "code_only_new_customers": pl.Int64, "likely_leaked_customers": pl.Float64,
    "brought_revenue_usd": pl.Float64,
    "commission_usd": pl.Float64, "fixed_fee_usd": pl.Float64, "cost_usd": pl.Float64,
    "roi": pl.Float64, "cac_usd": pl.Float64, "flags": pl.String,
}  # fmt: skip
UNLINKED_SCHEMA = {
    "store_id": pl.String, "discount_code": pl.String, "orders": pl.Int64,
    "revenue_usd": pl.Float64, "first_order_date": pl.Date, "last_order_date": pl.Date,
}  # fmt: skip


@dataclass(frozen=True)
class PartnerSettings:
    """Scorecard rules (the Dagster asset exposes the same fields as run config)."""

    low_repeat_ratio: float = 0.5
    min_customers: int = 10
    high_refund_ratio: float = 2.0
    min_orders: int = 10
    include_paid_channels: bool = True
    # A new customer whose first order carries the code but came through another tracked
    # channel (a paid ad, an e-mail, organic search, another partner's link) found the
    # code elsewhere (a coupon site): not credited to the partner unless this is on.
    credit_other_channels: bool = False
    # Untracked new customers with the code count for 1 - the share of them a leaked code
    # is estimated to explain (see likely_leaked_customers); off: each counts in full.
    discount_untracked_leaks: bool = True
    # How many untracked arrivals the store-wide leak share counts for in each partner's
    # estimate (0: each partner's own seen leaks alone).
    leak_prior_strength: float = 2.0

    def validate(self) -> None:
        if not 0 <= self.low_repeat_ratio <= 1:
            raise ValueError("low_repeat_ratio must be between 0 and 1")
        if self.high_refund_ratio < 1:
            raise ValueError("high_refund_ratio must be at least 1")
        if self.leak_prior_strength < 0:
            raise ValueError("leak_prior_strength must be at least 0")


@dataclass
class Scorecard:
    rows: pl.DataFrame  # SCORECARD_SCHEMA
    unlinked_codes: pl.DataFrame  # UNLINKED_SCHEMA


def link_orders(orders: pl.DataFrame, partners: pl.DataFrame) -> pl.DataFrame:
    """orders with `partner_id`: by discount code first, else by UTM campaign."""
    # Each key normalised the same way on orders and partners: codes are matched case
    # blind, campaigns in lower case, both trimmed.
    keys = {
        "discount_code": pl.col("discount_code").str.to_uppercase().str.strip_chars(),
        "utm_campaign": pl.col("utm_campaign").str.to_lowercase().str.strip_chars(),
    }
    linked = orders.with_columns(key.alias(f"_{column}") for column, key in keys.items())
    for column, key in keys.items():
        partner_by_key = (
            partners.filter(pl.col(column).is_not_null())
            .select(
                "store_id", key.alias(f"_{column}"), pl.col("partner_id").alias(f"_by_{column}")
            )
            .unique(["store_id", f"_{column}"], keep="first")
        )
        linked = linked.join(partner_by_key, on=["store_id", f"_{column}"], how="left")
    return linked.with_columns(
        pl.coalesce("_by_discount_code", "_by_utm_campaign").alias("partner_id")
    ).drop("_discount_code", "_utm_campaign", "_by_discount_code", "_by_utm_campaign")


def unlinked_codes(linked: pl.DataFrame) -> pl.DataFrame:
    """Codes on orders that no partner of the store has: counted, not dropped."""
    frame = (
        linked.filter(
            pl.col("discount_code").is_not_null()
            & (pl.col("discount_code").str.strip_chars() != "")
            & pl.col("partner_id").is_null()
        )
        .group_by("store_id", pl.col("discount_code").str.to_uppercase())
        .agg(
            pl.len().cast(pl.Int64).alias("orders"),
            pl.col("total_usd").sum().alias("revenue_usd"),
            pl.col("order_date").min().alias("first_order_date"),
            pl.col("order_date").max().alias("last_order_date"),
        )
        .sort(["store_id", "orders"], descending=[False, True])
    )
    return frame.select(list(UNLINKED_SCHEMA)).cast(UNLINKED_SCHEMA)


def _month(column: str) -> pl.Expr:
    return pl.col(column).dt.truncate("1mo")


def _fees(partners: pl.DataFrame, as_of: date, first_day: date) -> pl.DataFrame:
    """Fixed fees per partner and month (spread over contract days up to as_of - 1)."""
    last = as_of - timedelta(days=1)
    rows = []
    for p in partners.iter_rows(named=True):
        fee = float(p.get("fixed_fee_usd") or 0.0)
        start = p.get("start_date") or first_day
        if fee == 0 or start > last:
            continue
        end = p.get("end_date")
        if end is None:  # paid once, on the start date
            rows.append((p["store_id"], p["partner_id"], start.replace(day=1), fee))
            continue
        days = (end - start).days + 1
        day = start
        while day <= min(end, last):
            month_end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            upto = min(month_end, end, last)
            rows.append(
                (
                    p["store_id"],
                    p["partner_id"],
                    day.replace(day=1),
                    fee * ((upto - day).days + 1) / days,
                )
            )
            day = upto + timedelta(days=1)
    return pl.DataFrame(
        rows,
        schema={
            "store_id": pl.String,
            "partner_id": pl.String,
            "month": pl.Date,
            "fixed_fee_usd": pl.Float64,
        },  # fmt: skip
        orient="row",
    )


def _figures(
    linked: pl.DataFrame,
    all_orders: pl.DataFrame,
    keys: list[str],
    as_of: date,
    arrivals: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per (keys..., month) and per (keys..., overall): the order and customer figures.

    linked: valid orders with the owner columns `keys` (one owner per order).
    all_orders: every valid order of the stores (for the brought customers' later orders).
    arrivals: how each new customer came (`_arrivals`: keys, customer_id, created_at,
    order_date, _credited, _weight); by default their first valid order in `linked`.
    """
    eligible_before = as_of - timedelta(days=REPEAT_WINDOW_DAYS)
    if "_credited" not in linked.columns:
        linked = linked.with_columns(pl.lit(True).alias("_credited"))
    first = pl.col("order_number") == 1
    if arrivals is None:
        arrivals = linked.filter(first).with_columns(pl.lit(1.0).alias("_weight"))
    code_only = arrivals.filter(~pl.col("_credited")).select(*keys, "order_date")
    new = arrivals.filter(pl.col("_credited")).select(
        *keys, "customer_id", pl.col("created_at").alias("first_at"), "order_date", "_weight"
    )
    second = all_orders.filter(pl.col("order_number") == 2).select(
        "store_id", "customer_id", pl.col("created_at").alias("second_at")
    )
    new = new.join(second, on=["store_id", "customer_id"], how="left").with_columns(
        (pl.col("order_date") <= eligible_before).alias("eligible"),
        (
            pl.col("second_at").is_not_null()
            & (pl.col("second_at") <= pl.col("first_at") + timedelta(days=REPEAT_WINDOW_DAYS))
        ).alias("repeated"),
    )
    # Brought revenue: every order of the customers the owner brought, from their first
    # order on. Linked orders of customers the store already had (a code found on a coupon
    # site) cost commission but bring nothing new: counted apart, not as value.
    owner_of_customer = new.select(*keys, "customer_id", "_weight").unique(
        ["store_id", "customer_id"], keep="first"
    )
    brought = all_orders.join(
        owner_of_customer, on=["store_id", "customer_id"], how="inner"
    ).select(*keys, "order_date", (pl.col("net_usd") * pl.col("_weight")).alias("net_usd"))
    existing = (
        linked.filter(~(first & ~pl.col("_credited")))
        .join(owner_of_customer.drop("_weight"), on=[*keys, "customer_id"], how="anti")
        .select(*keys, "order_date", "customer_id")
    )

    def aggregate(
        linked: pl.DataFrame,
        new: pl.DataFrame,
        brought: pl.DataFrame,
        existing: pl.DataFrame,
        code_only: pl.DataFrame,
        by: list[str],
    ) -> pl.DataFrame:
        orders = linked.group_by(by).agg(
            pl.len().cast(pl.Int64).alias("orders"),
            pl.col("total_usd").sum().alias("revenue_usd"),
            pl.col("refunded_amount_usd").sum().alias("refunded_usd"),
            (pl.col("refunded_amount_usd") > 0).mean().alias("refund_rate"),
            pl.col("order_date").min().alias("first_order"),
        )
        customers = new.group_by(by).agg(
            pl.len().cast(pl.Int64).alias("new_customers"),
            pl.col("eligible").sum().cast(pl.Int64).alias("customers_eligible_90d"),
            (1.0 - pl.col("_weight")).sum().alias("likely_leaked_customers"),
            (pl.col("repeated") & pl.col("eligible")).sum().alias("_repeaters"),
        )
        value = brought.group_by(by).agg(pl.col("net_usd").sum().alias("brought_revenue_usd"))
        old_customers = existing.group_by(by).agg(
            pl.len().cast(pl.Int64).alias("existing_customer_orders")
        )
        elsewhere = code_only.group_by(by).agg(
            pl.len().cast(pl.Int64).alias("code_only_new_customers")
        )
        return (
            orders.join(customers, on=by, how="full", coalesce=True)
            .join(value, on=by, how="full", coalesce=True)
            .join(old_customers, on=by, how="full", coalesce=True)
            .join(elsewhere, on=by, how="full", coalesce=True)
            .with_columns(
                pl.when(pl.col("customers_eligible_90d") > 0)
                .then(pl.col("_repeaters") / pl.col("customers_eligible_90d"))
                .alias("repeat_rate_90d")
            )
            .drop("_repeaters")
        )

    frames = (linked, new, brought, existing, code_only)
    monthly = aggregate(
        *(f.with_columns(_month("order_date").alias("month")) for f in frames), [*keys, "month"]
    )
    overall = aggregate(*frames, keys).with_columns(pl.lit(None, dtype=pl.Date).alias("month"))
    return pl.concat([monthly, overall.select(monthly.columns)], how="vertical_relaxed")


def _credited(settings: PartnerSettings) -> pl.Expr:
    """A linked first order brought the customer unless it came through another tracked
    channel than the partner's own (needs `channel` and the partner's `kind`)."""
    own = pl.col("kind").replace_strict(OWN_CHANNEL, default=None)
    return (
        pl.lit(settings.credit_other_channels)
        | pl.col("channel").is_null()
        | pl.col("channel").is_in(UNTRACKED_CHANNELS)
        | (pl.col("channel") == own)
        | own.is_null()
    )


PLACED = {
    column: f"placed_{column}"
    for column in ("created_at", "order_date", "discount_code", "utm_campaign", "channel")
}


def _arrivals(
    orders: pl.DataFrame, partners: pl.DataFrame, settings: PartnerSettings
) -> pl.DataFrame:
    """How each new customer came, for the partners' figures: store_id, partner_id,
    customer_id, created_at, order_date, _credited, _weight.

    The arrival is the first order the customer placed when it was cancelled and carries
    a partner's code or campaign (`placed_*`), else the first counted order. `_weight` is
    1 - the estimated share of leaked-code customers among the partner's untracked
    arrivals (module docstring).
    """
    first = orders.filter(pl.col("order_number") == 1)
    counted = link_orders(first.select("store_id", "customer_id", *PLACED), partners)
    if set(PLACED.values()) <= set(first.columns):
        placed = link_orders(
            first.filter(pl.col("placed_created_at").is_not_null()).select(
                "store_id",
                "customer_id",
                *(pl.col(placed).alias(column) for column, placed in PLACED.items()),
            ),
            partners,
        ).filter(pl.col("partner_id").is_not_null())
        counted = pl.concat(
            [placed, counted.join(placed, on=["store_id", "customer_id"], how="anti")]
        )
    first = counted.with_columns(
        (pl.col("channel").is_null() | pl.col("channel").is_in(UNTRACKED_CHANNELS)).alias(
            "_untracked"
        )
    )
    keys = ["store_id", "partner_id"]
    arrivals = (
        first.filter(pl.col("partner_id").is_not_null())
        .join(partners.select(*keys, "kind"), on=keys, how="left")
        .with_columns(_credited(settings).alias("_credited"))
    )
    if not settings.discount_untracked_leaks:
        return arrivals.with_columns(pl.lit(1.0).alias("_weight"))
    # The store's own codes: untracked arrivals per tracked arrival, tracked meaning
    # through any channel but the one a partner of that kind sends its customers by.
    own_codes = first.filter(
        pl.col("partner_id").is_null()
        & (pl.col("discount_code").str.strip_chars().str.len_chars() > 0)
    )
    ratios = pl.concat(
        [
            own_codes.group_by("store_id").agg(
                pl.lit(kind).alias("kind"),
                pl.col("_untracked").sum().alias("_untracked_n"),
                (~pl.col("_untracked") & (pl.col("channel") != own)).sum().alias("_tracked_n"),
            )
            for kind, own in OWN_CHANNEL.items()
        ]
    ).with_columns(
        pl.when(pl.col("_tracked_n") > 0)
        .then(pl.col("_untracked_n") / pl.col("_tracked_n"))
        .otherwise(0.0)
        .alias("_ratio")
    )
    leaks = (
        arrivals.group_by(keys)
        .agg(
            pl.col("kind").first(),
            (~pl.col("_credited")).sum().alias("_seen"),
            (pl.col("_credited") & pl.col("_untracked")).sum().alias("_unseen"),
        )
        .join(ratios.select("store_id", "kind", "_ratio"), on=["store_id", "kind"], how="left")
        .with_columns((pl.col("_seen") * pl.col("_ratio").fill_null(0.0)).alias("_expected"))
        # The store's share of leaks among all its partners' untracked arrivals: each
        # partner's own share is drawn towards it by `leak_prior_strength` arrivals (a
        # partner's few seen leaks say little on their own).
        .with_columns(
            pl.when(pl.col("_unseen").sum().over("store_id") > 0)
            .then(
                (
                    pl.col("_expected").sum().over("store_id")
                    / pl.col("_unseen").sum().over("store_id")
                ).clip(0.0, 1.0)
            )
            .otherwise(0.0)
            .alias("_store_share")
        )
        .select(
            *keys,
            pl.when(pl.col("_unseen") > 0)
            .then(
                (
                    (pl.col("_expected") + settings.leak_prior_strength * pl.col("_store_share"))
                    / (pl.col("_unseen") + settings.leak_prior_strength)
                ).clip(0.0, 1.0)
            )
            .otherwise(0.0)
            .alias("_leaked_share"),
        )
    )
    return (
        arrivals.join(leaks, on=keys, how="left")
        .with_columns(
            pl.when(pl.col("_credited") & pl.col("_untracked"))
            .then(1.0 - pl.col("_leaked_share"))
            .otherwise(1.0)
            .alias("_weight")
        )
        .drop("_leaked_share", "_untracked", "kind")
    )


def _with_overall(monthly: pl.DataFrame, overall: pl.DataFrame) -> pl.DataFrame:
    """The monthly rows, then the overall ones (month null) in the same columns."""
    overall = overall.with_columns(pl.lit(None, dtype=pl.Date).alias("month"))
    return pl.concat([monthly, overall.select(monthly.columns)])


def _store_rates(all_orders: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Per store and month (and overall, month null): repeat rate of new customers and
    refund rate of orders."""
    store_keys = ["store_id"]
    figures = _figures(
        all_orders.with_columns(pl.lit("store").alias("_owner")),
        all_orders,
        [*store_keys, "_owner"],
        as_of,
    )
    return figures.select(
        "store_id",
        "month",
        pl.col("repeat_rate_90d").alias("store_repeat_rate_90d"),
        pl.col("refund_rate").alias("store_refund_rate"),
    )


def partner_scorecard(
    orders: pl.DataFrame,
    partners: pl.DataFrame,
    as_of: date,
    ad_spend: pl.DataFrame | None = None,
    settings: PartnerSettings = PartnerSettings(),
) -> Scorecard:
    """Scorecards of every partner (and paid channel) per month and overall.

    orders: valid orders before as_of with store_id, order_id, customer_id,
    created_at, order_date, total_usd, refunded_amount_usd, discount_code,
    utm_campaign, channel, order_number (1 = the customer's first valid order).
    partners: store_id, partner_id, partner_name, kind, platform, discount_code,
    utm_campaign, fixed_fee_usd, commission_rate, start_date, end_date.
    ad_spend: store_id, date, platform, spend_usd (optional).
    """
    settings.validate()
    orders = orders.filter(pl.col("order_date") < as_of).with_columns(
        (pl.col("total_usd") - pl.col("refunded_amount_usd").fill_null(0.0)).alias("net_usd"),
        pl.col("refunded_amount_usd").fill_null(0.0),
    )
    if orders.is_empty() or partners.is_empty():
        empty = pl.DataFrame(schema=SCORECARD_SCHEMA)
        if orders.is_empty():
            return Scorecard(empty, pl.DataFrame(schema=UNLINKED_SCHEMA))
        linked_all = (
            link_orders(orders, partners)
            if not partners.is_empty()
            else (orders.with_columns(pl.lit(None, dtype=pl.String).alias("partner_id")))
        )
        return Scorecard(empty, unlinked_codes(linked_all))
    partners = partners.unique(["store_id", "partner_id"], keep="first")
    linked_all = link_orders(orders, partners)
    keys = ["store_id", "partner_id"]
    linked = (
        linked_all.filter(pl.col("partner_id").is_not_null())
        .join(partners.select(*keys, "kind"), on=keys, how="left")
        .with_columns(_credited(settings).alias("_credited"))
        .drop("kind")
    )
    figures = _figures(linked, orders, keys, as_of, _arrivals(orders, partners, settings))
    commissions = linked.join(
        partners.select(*keys, "commission_rate"), on=keys, how="left"
    ).with_columns(
        (pl.col("net_usd") * pl.col("commission_rate").fill_null(0.0)).alias("commission_usd"),
        _month("order_date").alias("month"),
    )
    commission = _with_overall(
        commissions.group_by(*keys, "month").agg(pl.col("commission_usd").sum()),
        commissions.group_by(keys).agg(pl.col("commission_usd").sum()),
    )
    first_day = orders["order_date"].min()
    fees_m = _fees(partners, as_of, first_day)
    fees = _with_overall(fees_m, fees_m.group_by(keys).agg(pl.col("fixed_fee_usd").sum()))
    # Every partner gets an overall row, even one with no order yet.
    skeleton = partners.select(keys).with_columns(pl.lit(None, dtype=pl.Date).alias("month"))
    rows = (
        pl.concat(
            [
                figures.select(*keys, "month"),
                fees.select(*keys, "month"),
                skeleton,
            ]
        )
        .unique()
        .join(figures, on=[*keys, "month"], how="left", nulls_equal=True)
        .join(commission, on=[*keys, "month"], how="left", nulls_equal=True)
        .join(fees, on=[*keys, "month"], how="left", nulls_equal=True)
        .join(partners.select(*keys, "partner_name", "kind", "platform"), on=keys, how="left")
    )
    rows = rows.with_columns(
        pl.col("commission_usd").fill_null(0.0),
        pl.col("fixed_fee_usd").fill_null(0.0),
    ).with_columns((pl.col("commission_usd") + pl.col("fixed_fee_usd")).alias("cost_usd"))
    parts = [rows]
    if settings.include_paid_channels and ad_spend is not None and not ad_spend.is_empty():
        parts.append(_paid_channels(orders, ad_spend, as_of))
    return Scorecard(_finish(pl.concat(parts, how="diagonal_relaxed"), orders, as_of, settings),
                     unlinked_codes(linked_all))  # fmt: skip


def _paid_channels(orders: pl.DataFrame, ad_spend: pl.DataFrame, as_of: date) -> pl.DataFrame:
    spend = ad_spend.filter(pl.col("date") < as_of).with_columns(
        pl.col("platform").str.to_lowercase().alias("channel")
    )
    channels = spend.select("store_id", "channel").unique()
    linked = orders.join(channels, on=["store_id", "channel"], how="inner").with_columns(
        ("channel:" + pl.col("channel")).alias("partner_id")
    )
    keys = ["store_id", "partner_id"]
    figures = _figures(linked, orders, keys, as_of)
    cost_m = spend.group_by(
        "store_id",
        ("channel:" + pl.col("channel")).alias("partner_id"),
        _month("date").alias("month"),
    ).agg(pl.col("spend_usd").sum().alias("cost_usd"))
    cost = _with_overall(cost_m, cost_m.group_by(keys).agg(pl.col("cost_usd").sum()))
    out = (
        pl.concat([figures.select(*keys, "month"), cost.select(*keys, "month")])
        .unique()
        .join(figures, on=[*keys, "month"], how="left", nulls_equal=True)
        .join(cost, on=[*keys, "month"], how="left", nulls_equal=True)
        .with_columns(
            pl.col("partner_id").str.strip_prefix("channel:").alias("partner_name"),
            pl.lit("paid_channel").alias("kind"),
            pl.col("partner_id").str.strip_prefix("channel:").alias("platform"),
            pl.lit(0.0).alias("commission_usd"),
            pl.lit(0.0).alias("fixed_fee_usd"),
            pl.col("cost_usd").fill_null(0.0),
        )
    )
    return out


def _finish(
    rows: pl.DataFrame, orders: pl.DataFrame, as_of: date, settings: PartnerSettings
) -> pl.DataFrame:
    last = as_of - timedelta(days=1)
    store = _store_rates(orders, as_of)
    starts = rows.group_by("store_id", "partner_id").agg(
        pl.min_horizontal(pl.col("month").min(), pl.col("first_order").min()).alias("_first")
    )
    rows = (
        rows.join(store, on=["store_id", "month"], how="left", nulls_equal=True)
        .join(starts, on=["store_id", "partner_id"], how="left")
        .with_columns(
            pl.when(pl.col("month").is_null())
            .then(pl.lit("overall"))
            .otherwise(pl.lit("month"))
            .alias("period"),
            pl.coalesce(
                "month", pl.col("_first").dt.truncate("1mo"), pl.lit(last.replace(day=1))
            ).alias("period_start"),
            pl.when(pl.col("month").is_null())
            .then(pl.lit(last))
            .otherwise(pl.min_horizontal(pl.col("month").dt.month_end(), pl.lit(last)))
            .alias("period_end"),
            pl.col("orders").fill_null(0),
            pl.col("new_customers").fill_null(0),
            pl.col("customers_eligible_90d").fill_null(0),
            pl.col("revenue_usd").fill_null(0.0),
            pl.col("refunded_usd").fill_null(0.0),
            pl.col("brought_revenue_usd").fill_null(0.0),
            pl.col("existing_customer_orders").fill_null(0),
            pl.col("code_only_new_customers").fill_null(0),
            pl.col("likely_leaked_customers").fill_null(0.0),
        )
        .with_columns(
            (pl.col("revenue_usd") - pl.col("refunded_usd")).alias("net_revenue_usd"),
            pl.when(pl.col("orders") > 0)
            .then(pl.col("revenue_usd") / pl.col("orders"))
            .alias("aov_usd"),
            pl.when(pl.col("cost_usd") > 0)
            .then((pl.col("brought_revenue_usd") - pl.col("cost_usd")) / pl.col("cost_usd"))
            .alias("roi"),
            pl.when(pl.col("new_customers") > 0)
            .then(pl.col("cost_usd") / pl.col("new_customers"))
            .alias("cac_usd"),
        )
    )
    rows = rows.with_columns(_flags(settings).alias("flags"))
    return (
        rows.select(list(SCORECARD_SCHEMA))
        .cast(SCORECARD_SCHEMA)
        .sort(
            ["store_id", "kind", "partner_id", "period", "period_start"],
            descending=[False, False, False, True, False],
        )
    )


def _flags(settings: PartnerSettings) -> pl.Expr:
    """Plain-language flags on the overall rows (null when nothing is wrong)."""
    overall = pl.col("period") == "overall"
    costly = (
        overall & (pl.col("cost_usd") > 0) & (pl.col("brought_revenue_usd") < pl.col("cost_usd"))
    )
    no_return = (
        overall
        & (pl.col("customers_eligible_90d") >= settings.min_customers)
        & (
            pl.col("repeat_rate_90d")
            <= settings.low_repeat_ratio * pl.col("store_repeat_rate_90d").fill_null(0.0)
        )
    )
    refunds = (
        overall
        & (pl.col("orders") >= settings.min_orders)
        & (pl.col("refund_rate") >= settings.high_refund_ratio * pl.col("store_refund_rate"))
        & (pl.col("refund_rate") > 0)
    )
    coupon = (
        overall
        & (pl.col("orders") >= settings.min_orders)
        & (pl.col("existing_customer_orders") >= 0.5 * pl.col("orders"))
    )
    parts = [
        pl.when(costly).then(
            pl.format(
                "costs more than it brings ({} cost, {} net revenue)",
                pl.col("cost_usd").round(0).cast(pl.Int64),
                pl.col("brought_revenue_usd").round(0).cast(pl.Int64),
            )
        ),
        pl.when(no_return).then(
            pl.format(
                "customers do not come back ({}% repeat in 90 days vs {}% for the store)",
                (pl.col("repeat_rate_90d") * 100).round(0).cast(pl.Int64),
                (pl.col("store_repeat_rate_90d") * 100).round(0).cast(pl.Int64),
            )
        ),
        pl.when(refunds).then(
            pl.format(
                "high refunds ({}% of orders vs {}% for the store)",
                (pl.col("refund_rate") * 100).round(0).cast(pl.Int64),
                (pl.col("store_refund_rate") * 100).round(0).cast(pl.Int64),
            )
        ),
        pl.when(coupon).then(
            pl.format(
                "code mostly used by existing customers ({} of {} orders): is it on a coupon site?",
                pl.col("existing_customer_orders"),
                pl.col("orders"),
            )
        ),
    ]
    joined = pl.concat_list(parts).list.drop_nulls().list.join("; ")
    return pl.when(joined != "").then(joined)
