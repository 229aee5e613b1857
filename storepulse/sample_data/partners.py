"""Partners: KOLs (influencers) and affiliates with discount codes, fees and commissions.

The customers the store acquired through the `influencer` and `affiliate` channels
are the ones partners brought: each is given to one partner of that kind active on
the day of the customer's first order. Partner quality is real, not a label: a
partner who brings loyal customers is handed, more often, customers who did come
back; a discount-hunter partner customers who never returned or sent the first
order back. Nothing about the customers changes; only who brought them.

Codes: a brought customer's first order carries the partner's code (in place of the
store's welcome code: only customers whose first order used that offer are partner
customers; the other influencer and affiliate customers stay with the channel, as the
generator keeps every existing UTM tag); some of their later coupon orders reuse it;
and codes leak to coupon sites, so other customers' orders carry them too (discount
hunters' codes leak most): those orders are attributed to the partner but not caused
by it. Fees are set
so that partner value varies widely and a few cost more than they bring.

Truth (`_truth/partners.csv`, `_truth/partner_orders.csv`): what a scorecard should
find from the codes (attributed orders and revenue, to the cent) and what really
happened (the customers each partner brought, their spend since, their repeat rate,
the partner's true ROI).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from .markets import FIRST_NAMES
from .people import ascii_slug
from .store import StoreData

MIN_PARTNER_CUSTOMERS = 15
WELCOME_CODE = "WELCOME20"
COUPON_CODES = ("SAVE10", "SAVE15")
QUALITIES = ("loyal", "average", "discount_hunter")
QUALITY_SHARE = (0.35, 0.35, 0.30)
REPEAT_WINDOW_DAYS = 90
KOL_PLATFORMS = ("instagram", "tiktok", "youtube")
AFFILIATE_PLATFORMS = ("awin", "impact", "blog", "coupon_site")
AFFILIATE_NAMES = (
    "DealHub", "CouponFox", "TechTalk Reviews", "SaveSmart", "Gadget Guru", "Home Finds",
    "Bargain Bird", "Honest Picks", "Deal Radar", "Review Desk", "Cashback World", "Top Ten Lists",
    "Smart Saver", "Budget Nest", "Promo Pal", "Gift Guide", "Unboxed", "Best Buys Daily",
)  # fmt: skip
KOL_SUFFIXES = ("styles", "daily", "life", "home", "tech", "finds", "loves", "picks", "vlogs")
TRUTH_SCHEMAS = {
    "partners": {
        "store_id": pl.String, "partner_id": pl.String, "partner_name": pl.String,
        "kind": pl.String, "quality": pl.String, "discount_code": pl.String,
        "start_date": pl.Date, "end_date": pl.Date, "customers_brought": pl.Int64,
        "customers_tracked": pl.Int64, "attributed_orders": pl.Int64,
        "attributed_revenue_usd": pl.Float64, "attributed_refunded_usd": pl.Float64,
        "leaked_orders": pl.Int64, "commission_usd": pl.Float64, "fixed_fee_usd": pl.Float64,
        "cost_usd": pl.Float64, "true_incremental_revenue_usd": pl.Float64,
        "true_repeat_rate_90d": pl.Float64, "true_roi": pl.Float64,
        "costs_more_than_it_brings": pl.Boolean,
    },
    "partner_orders": {
        "store_id": pl.String, "order_id": pl.String, "customer_id": pl.String,
        "partner_id": pl.String, "leaked": pl.Boolean, "valid": pl.Boolean,
        "total_usd": pl.Float64, "refunded_usd": pl.Float64,
    },
}  # fmt: skip


@dataclass
class Partners:
    landing: pl.DataFrame  # partners.csv (empty: the store has no programme)
    discount_code: np.ndarray  # final code of every existing order ('' = none)
    truth: dict[str, pl.DataFrame]


def _empty_truth() -> dict[str, pl.DataFrame]:
    return {name: pl.DataFrame(schema=schema) for name, schema in TRUTH_SCHEMAS.items()}


def _names(rng, kind: str, count: int, language: str, used: set[str]) -> list[tuple[str, str]]:
    """(display name, discount code) pairs, codes unique within the store."""
    out = []
    pool = list(AFFILIATE_NAMES)
    rng.shuffle(pool)
    firsts = FIRST_NAMES.get(language, FIRST_NAMES["en"])
    for i in range(count):
        if kind == "kol":
            first = ascii_slug(firsts[rng.integers(len(firsts))].split()[0])
            name = f"@{first}.{KOL_SUFFIXES[rng.integers(len(KOL_SUFFIXES))]}"
            code = f"{first.upper()}{rng.integers(10, 100)}"
        else:
            name = pool[i % len(pool)] + ("" if i < len(pool) else f" {i // len(pool) + 1}")
            code = ascii_slug(name).upper()[:10]
        while code in used:
            code = f"{code[:8]}{rng.integers(10, 100)}"
        used.add(code)
        out.append((name, code))
    return out


def draw_partners(
    rng: np.random.Generator,
    data: StoreData,
    start: date,
    extra_orders: pl.DataFrame,
    fx_rounded: np.ndarray,
) -> Partners:
    """The store's partner programme (none for a store that ships orders alone, or
    has too few customers from affiliates and influencers)."""
    profile = data.profile
    orders = data.orders
    codes = orders["_discount_code"].to_numpy().astype(object).copy()
    n_days = int(fx_rounded.size)
    channel = data.truth["customers"]["acquisition_channel"].to_numpy()
    first_rows = np.flatnonzero(orders["_is_first"].to_numpy())
    customer = orders["_customer_index"].to_numpy()
    first_customer = customer[first_rows]
    # A partner's customers are the ones who came through it with its code: their first
    # order used the store's welcome offer, which the partner's code stands for. The other
    # influencer/affiliate customers stay with the channel (no partner of the programme
    # brought them; their UTM tags are left as they are).
    candidates = first_rows[
        np.isin(channel[first_customer], ["affiliate", "influencer"])
        & (codes[first_rows] == WELCOME_CODE)
    ]
    empty = Partners(pl.DataFrame(), codes, _empty_truth())
    if profile.orders_only or candidates.size < MIN_PARTNER_CUSTOMERS:
        return empty

    day = orders["_day"].to_numpy()
    valid = orders["cancelled_at"].is_null().to_numpy()
    # What each customer did after the first order: came back within 90 days, sent it back.
    first_day = np.full(data.customers.height, -1, dtype=np.int64)
    first_day[first_customer] = day[first_rows]
    later = valid & ~orders["_is_first"].to_numpy()
    gap = day - first_day[customer]
    came_back = np.zeros(data.customers.height, dtype=bool)
    came_back[customer[later & (gap > 0) & (gap <= REPEAT_WINDOW_DAYS)]] = True
    refunded_first = np.zeros(data.customers.height, dtype=bool)
    refunded_first[first_customer] = orders["refunded_amount"].to_numpy()[first_rows] > 0
    welcome_first = np.zeros(data.customers.height, dtype=bool)
    welcome_first[first_customer] = codes[first_rows] == WELCOME_CODE

    # The programme: 3-30 partners, kinds in proportion to the customers they bring.
    is_kol = channel[customer[candidates]] == "influencer"
    n_partners = int(np.clip(round(candidates.size / rng.uniform(12, 30)), 3, 30))
    n_kol = int(round(n_partners * is_kol.mean()))
    n_kol = min(max(n_kol, 1 if is_kol.any() else 0), n_partners - (0 if is_kol.all() else 1))
    kinds = ["kol"] * n_kol + ["affiliate"] * (n_partners - n_kol)
    used: set[str] = set()
    names = _names(rng, "kol", n_kol, profile.market.language, used) + _names(
        rng, "affiliate", n_partners - n_kol, profile.market.language, used
    )
    quality = rng.choice(len(QUALITIES), n_partners, p=np.array(QUALITY_SHARE))
    size = rng.lognormal(0.0, 0.7, n_partners)
    first_day_window = int(day[candidates].min())
    last_day = n_days - 1
    starts, ends = np.zeros(n_partners, dtype=np.int64), np.zeros(n_partners, dtype=np.int64)
    for p, kind in enumerate(kinds):
        if kind == "kol":  # campaigns of one to four months
            length = int(rng.integers(30, 121))
            starts[p] = int(
                rng.integers(first_day_window, max(first_day_window + 1, last_day - 20))
            )
        else:  # affiliates stay on for half a year or more
            length = int(rng.integers(180, max(181, n_days)))
            starts[p] = int(rng.integers(first_day_window, max(first_day_window + 1, n_days // 2)))
        ends[p] = starts[p] + length - 1

    # Who brought each candidate: a partner of the matching kind active that day,
    # more often the one whose quality matches what the customer went on to do.
    cand_customer = customer[candidates]
    cand_day = day[candidates]
    kind_of = np.array(kinds)
    tilt = np.stack(
        [
            np.exp(1.6 * came_back[cand_customer] - 1.2 * refunded_first[cand_customer]),
            np.ones(candidates.size),
            np.exp(
                -1.6 * came_back[cand_customer]
                + 1.6 * refunded_first[cand_customer]
                + 0.8 * welcome_first[cand_customer]
            ),
        ]
    )  # quality x candidate
    want = np.where(is_kol, "kol", "affiliate")
    active = (
        (cand_day[None, :] >= starts[:, None])
        & (cand_day[None, :] <= ends[:, None])
        & (kind_of[:, None] == want[None, :])
    )
    weights = active * size[:, None] * tilt[quality]
    totals = weights.sum(axis=0)
    draws = rng.random(candidates.size)
    cumulative = np.cumsum(weights, axis=0) / np.where(totals > 0, totals, 1.0)
    brought_by = np.where(totals > 0, (cumulative < draws[None, :]).sum(axis=0), -1)
    partner_of_customer = np.full(data.customers.height, -1, dtype=np.int64)
    partner_of_customer[cand_customer] = brought_by

    # Codes on orders: the brought customer's welcome-code first order, some later coupons.
    order_partner = partner_of_customer[customer]
    partner_codes = np.array([code for _, code in names], dtype=object)
    tracked_first = orders["_is_first"].to_numpy() & (order_partner >= 0) & (codes == WELCOME_CODE)
    reuse_p = np.array([0.6, 0.4, 0.3])[quality]
    reuse = (
        ~orders["_is_first"].to_numpy()
        & (order_partner >= 0)
        & np.isin(codes, COUPON_CODES)
        & (rng.random(orders.height) < reuse_p[np.maximum(order_partner, 0)])
    )
    attributed = np.full(orders.height, -1, dtype=np.int64)
    attributed[tracked_first | reuse] = order_partner[tracked_first | reuse]
    leaked = np.zeros(orders.height, dtype=bool)
    # Leaks: other customers' coupon or welcome orders during the partner's active days.
    leak_share = np.select(
        [quality == 0, quality == 1],
        [rng.uniform(0.0, 0.03, n_partners), rng.uniform(0.02, 0.08, n_partners)],
        rng.uniform(0.15, 0.4, n_partners),
    )
    open_pool = (
        (order_partner < 0) & (attributed < 0) & np.isin(codes, (*COUPON_CODES, WELCOME_CODE))
    )
    for p in range(n_partners):
        own = int((attributed == p).sum())
        k = int(rng.binomial(own, leak_share[p])) if own else 0
        pool = np.flatnonzero(open_pool & (day >= starts[p]) & (day <= ends[p]) & ~leaked)
        if k and pool.size:
            chosen = rng.choice(pool, min(k, pool.size), replace=False)
            attributed[chosen] = p
            leaked[chosen] = True
    codes[attributed >= 0] = partner_codes[attributed[attributed >= 0]]

    # Money (USD at the published rates): attributed orders, and everything the
    # brought customers spent from their first order on (experiment orders included).
    rate = fx_rounded[day]
    total_usd = orders["total"].to_numpy() * rate
    refund_usd = orders["refunded_amount"].to_numpy() * rate
    net_valid = np.where(valid, total_usd - refund_usd, 0.0)
    incremental = np.bincount(
        order_partner[order_partner >= 0],
        weights=net_valid[order_partner >= 0],
        minlength=n_partners,
    )
    if extra_orders.height:
        extra_customer = extra_orders["_customer_index"].to_numpy()
        known = extra_customer >= 0
        extra_partner = np.full(extra_orders.height, -1, dtype=np.int64)
        extra_partner[known] = partner_of_customer[extra_customer[known]]
        extra_rate = fx_rounded[extra_orders["_day"].to_numpy()]
        extra_net = np.where(
            extra_orders["cancelled_at"].is_null().to_numpy(),
            (extra_orders["total"].to_numpy() - extra_orders["refunded_amount"].to_numpy())
            * extra_rate,
            0.0,
        )
        mine = extra_partner >= 0
        incremental += np.bincount(
            extra_partner[mine], weights=extra_net[mine], minlength=n_partners
        )
    counted = (attributed >= 0) & valid
    att_orders = np.bincount(attributed[counted], minlength=n_partners)
    att_revenue = np.bincount(attributed[counted], weights=total_usd[counted], minlength=n_partners)
    att_refund = np.bincount(attributed[counted], weights=refund_usd[counted], minlength=n_partners)
    commission_rate = np.round(rng.uniform(0.05, 0.20, n_partners), 2)
    commission = commission_rate * (att_revenue - att_refund)

    # Fees: most partners cost 10-80 % of what they bring, a few (preferably discount
    # hunters) cost more than they bring.
    n_costly = 1 + (n_partners >= 10) + (n_partners >= 20)
    order_of_costly = np.argsort(-10.0 * (quality == 2) - rng.random(n_partners))
    ratio = rng.uniform(0.1, 0.8, n_partners)
    ratio[order_of_costly[:n_costly]] = rng.uniform(1.3, 2.5, n_costly)
    fee_usd = np.maximum(ratio * np.maximum(incremental, 0.0) - commission, 0.0)
    start_rate = fx_rounded[starts]
    fee_local = np.round(fee_usd / start_rate / 10) * 10
    fee_usd = fee_local * start_rate
    cost = fee_usd + commission
    customers_brought = np.bincount(brought_by[brought_by >= 0], minlength=n_partners)
    tracked = np.bincount(
        order_partner[tracked_first & valid & (attributed >= 0)], minlength=n_partners
    )
    observable = cand_day <= last_day - REPEAT_WINDOW_DAYS
    repeat_num = np.bincount(
        brought_by[(brought_by >= 0) & observable],
        weights=came_back[cand_customer[(brought_by >= 0) & observable]],
        minlength=n_partners,
    )
    repeat_den = np.bincount(brought_by[(brought_by >= 0) & observable], minlength=n_partners)

    def day_date(d: int) -> date:
        return start + timedelta(days=int(d))

    sid = profile.store_id
    partner_ids = [f"P{p + 1:03d}" for p in range(n_partners)]
    platforms = [
        KOL_PLATFORMS[rng.integers(len(KOL_PLATFORMS))]
        if k == "kol"
        else AFFILIATE_PLATFORMS[rng.integers(len(AFFILIATE_PLATFORMS))]
        for k in kinds
    ]
    end_dates = [day_date(e) if e <= last_day else None for e in ends]
    landing = pl.DataFrame(
        {
            "store_id": sid,
            "partner_id": partner_ids,
            "partner_name": [name for name, _ in names],
            "kind": kinds,
            "platform": platforms,
            "discount_code": [code for _, code in names],
            "utm_campaign": [
                f"{'kol' if k == 'kol' else 'aff'}_{ascii_slug(name)}"
                for k, (name, _) in zip(kinds, names, strict=True)
            ],
            "fixed_fee": fee_local,
            "commission_rate": commission_rate,
            "currency": profile.market.currency,
            "start_date": [day_date(s) for s in starts],
            "end_date": pl.Series(end_dates, dtype=pl.Date),
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        repeat_rate = np.where(repeat_den > 0, repeat_num / np.maximum(repeat_den, 1), np.nan)
        roi = np.where(cost > 0, (incremental - cost) / np.where(cost > 0, cost, 1.0), np.nan)
    truth_partners = pl.DataFrame(
        {
            "store_id": sid,
            "partner_id": partner_ids,
            "partner_name": [name for name, _ in names],
            "kind": kinds,
            "quality": [QUALITIES[q] for q in quality],
            "discount_code": [code for _, code in names],
            "start_date": [day_date(s) for s in starts],
            "end_date": pl.Series(end_dates, dtype=pl.Date),
            "customers_brought": customers_brought,
            "customers_tracked": tracked,
            "attributed_orders": att_orders,
            "attributed_revenue_usd": att_revenue,
            "attributed_refunded_usd": att_refund,
            "leaked_orders": np.bincount(attributed[counted & leaked], minlength=n_partners),
            "commission_usd": commission,
            "fixed_fee_usd": fee_usd,
            "cost_usd": cost,
            "true_incremental_revenue_usd": incremental,
            "true_repeat_rate_90d": repeat_rate,
            "true_roi": roi,
            "costs_more_than_it_brings": incremental < cost,
        }
    ).with_columns(pl.col(pl.Float64).fill_nan(None))
    coded = np.flatnonzero(attributed >= 0)
    truth_orders = pl.DataFrame(
        {
            "store_id": sid,
            "order_id": orders["order_id"].to_numpy()[coded],
            "customer_id": orders["customer_id"].to_numpy()[coded],
            "partner_id": np.array(partner_ids, dtype=object)[attributed[coded]],
            "leaked": leaked[coded],
            "valid": valid[coded],
            "total_usd": total_usd[coded],
            "refunded_usd": refund_usd[coded],
        }
    )
    return Partners(
        landing,
        codes,
        {
            "partners": truth_partners.cast(TRUTH_SCHEMAS["partners"]),
            "partner_orders": truth_orders.cast(TRUTH_SCHEMAS["partner_orders"]),
        },
    )
