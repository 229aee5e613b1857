"""A small world written by hand, not by the generator (no tests here).

One store, as of 2025-06-30, whose partner, experiment and order-risk figures can be
worked out on paper: tests/test_growth_models.py checks the models against those
hand figures, so they are definitions, not fits to the generator.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import polars as pl

STORE = "store-a"
AS_OF = date(2025, 6, 30)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ----------------------------------------------------------------------- partners

PARTNERS = pl.DataFrame(
    {
        "store_id": STORE,
        "partner_id": ["P1", "P2", "P3"],
        "partner_name": ["Mia", "DealHub", "Ghost"],
        "kind": ["kol", "affiliate", "kol"],
        "platform": ["instagram", "awin", "tiktok"],
        "discount_code": ["MIA10", "DEALS", "GHOST"],
        "utm_campaign": [None, "aff_dealhub", None],
        "fixed_fee_usd": [300.0, 0.0, 500.0],
        "commission_rate": [0.10, 0.20, 0.0],
        "start_date": [date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)],
        "end_date": [date(2025, 3, 31), None, None],
    }
)

# order_id, customer, created_at, total_usd, refunded_usd, code, utm_campaign, channel, cancelled
_ORDERS = [
    ("o1", "e1", "2025-01-05 10:00", 70.0, 0.0, None, None, "direct", False),
    ("o2", "m1", "2025-01-10 10:00", 100.0, 0.0, "MIA10", None, "influencer", False),
    ("o3", "m2", "2025-01-20 10:00", 80.0, 80.0, "MIA10", None, "influencer", False),
    ("o4", "m3", "2025-02-05 10:00", 60.0, 0.0, "mia10", None, "influencer", False),
    ("o5", "d1", "2025-02-10 10:00", 30.0, 0.0, "DEALS", None, "affiliate", False),
    ("o6", "m1", "2025-02-15 10:00", 50.0, 0.0, None, None, "email", False),
    ("o7", "e2", "2025-02-20 10:00", 45.0, 0.0, "SPRING5", None, "direct", False),
    ("o8", "d2", "2025-03-01 10:00", 20.0, 0.0, None, "aff_dealhub", "affiliate", False),
    ("o9", "e1", "2025-03-10 10:00", 35.0, 0.0, "DEALS", None, "affiliate", False),
    ("o10", "g1", "2025-03-15 10:00", 90.0, 0.0, None, "prospecting", "meta", False),
    ("o11", "d3", "2025-04-01 10:00", 25.0, 0.0, "DEALS", None, "affiliate", True),
    ("o12", "m3", "2025-06-01 10:00", 40.0, 0.0, "MIA10", None, "direct", False),
    # Mia's code, but the customer came through a Google ad: found on a coupon site.
    ("o13", "m4", "2025-03-20 10:00", 30.0, 0.0, "MIA10", "search_generic", "google", False),
]
ALL_ORDERS = pl.DataFrame(
    [
        {
            "store_id": STORE,
            "order_id": o,
            "customer_id": c,
            "created_at": _ts(t),
            "order_date": _ts(t).date(),
            "total_usd": total,
            "refunded_amount_usd": refund,
            "discount_code": code,
            "utm_campaign": utm,
            "channel": channel,
            "is_cancelled": cancelled,
        }  # fmt: skip
        for o, c, t, total, refund, code, utm, channel, cancelled in _ORDERS
    ]
)


def valid_ranked_orders() -> pl.DataFrame:
    """What staging.ranked_orders holds for this world: valid orders, numbered per customer."""
    return (
        ALL_ORDERS.filter(~pl.col("is_cancelled"))
        .sort("created_at", "order_id")
        .with_columns(
            pl.col("created_at")
            .rank("ordinal")
            .over("customer_id")
            .cast(pl.Int64)
            .alias("order_number")
        )  # fmt: skip
        .drop("is_cancelled")
    )


AD_SPEND = pl.DataFrame(
    {
        "store_id": STORE,
        "date": [date(2025, 3, 1), date(2025, 4, 1)],
        "platform": ["meta", "meta"],
        "spend_usd": [100.0, 50.0],
    }
)

# Worked out by hand from the rows above (docs/growth.md has the definitions).
EXPECTED_OVERALL = {
    # orders, revenue, refunded, new customers, eligible (first order by 1 Apr), repeat rate,
    # existing-customer orders, brought revenue, commission, fee, cost, roi, cac
    "P1": dict(orders=5, revenue_usd=310.0, refunded_usd=80.0, new_customers=3,
               code_only_new_customers=1, customers_eligible_90d=3, repeat_rate_90d=1 / 3,
               existing_customer_orders=0, brought_revenue_usd=250.0, commission_usd=23.0,
               fixed_fee_usd=300.0, cost_usd=323.0, roi=(250 - 323) / 323, cac_usd=323 / 3,
               refund_rate=0.2, aov_usd=62.0),
    "P2": dict(orders=3, revenue_usd=85.0, refunded_usd=0.0, new_customers=2,
               customers_eligible_90d=2, repeat_rate_90d=0.0, existing_customer_orders=1,
               brought_revenue_usd=50.0, commission_usd=17.0, fixed_fee_usd=0.0,
               cost_usd=17.0, roi=(50 - 17) / 17, cac_usd=8.5, refund_rate=0.0,
               aov_usd=85 / 3),
    "P3": dict(orders=0, revenue_usd=0.0, refunded_usd=0.0, new_customers=0,
               brought_revenue_usd=0.0, commission_usd=0.0, fixed_fee_usd=500.0,
               cost_usd=500.0, roi=-1.0, cac_usd=None),
    "channel:meta": dict(orders=1, revenue_usd=90.0, new_customers=1, brought_revenue_usd=90.0,
                         cost_usd=150.0, roi=(90 - 150) / 150, cac_usd=150.0),
}  # fmt: skip
# Mia's fee of 300 over 1 Jan - 31 Mar (90 days): 31, 28 and 31 days of it.
EXPECTED_MIA_FEES = {date(2025, 1, 1): 300 * 31 / 90, date(2025, 2, 1): 300 * 28 / 90,
                     date(2025, 3, 1): 300 * 31 / 90}  # fmt: skip
# New customers with a first order by 1 Apr: m1 (back on 15 Feb), m2, m3 (back after
# 116 days), d1, d2, e1 (back after 64 days), e2, g1, m4 -> 2 of 9.
EXPECTED_STORE_REPEAT = 2 / 9


# ----------------------------------------------------------------------- experiments

# Eight customers, four per variant, assigned on 1 Apr; the test ends on 30 Apr.
# Spend in the window (revenue) and in the 180 days before assignment (pre).
_ASSIGNED = [
    # customer, variant, window revenue (0 = no order), pre-period spend
    ("x1", "control", 0.0, 10.0),
    ("x2", "control", 0.0, 0.0),
    ("x3", "control", 0.0, 20.0),
    ("x4", "control", 20.0, 40.0),
    ("x5", "treatment", 10.0, 0.0),
    ("x6", "treatment", 30.0, 30.0),
    ("x7", "treatment", 0.0, 10.0),
    ("x8", "treatment", 20.0, 20.0),
]
ASSIGNMENTS = pl.DataFrame(
    {
        "store_id": STORE,
        "experiment_id": "exp1",
        "experiment_name": "Free shipping",
        "variant": [v for _, v, _, _ in _ASSIGNED],
        "customer_id": [c for c, _, _, _ in _ASSIGNED],
        "assigned_at": datetime(2025, 4, 1, 9, 0),
        "primary_metric": "conversion",
        "start_date": date(2025, 4, 1),
        "end_date": date(2025, 4, 30),
    }
)
EXPERIMENT_ORDERS = pl.DataFrame(
    [
        {"store_id": STORE, "customer_id": c, "created_at": datetime(2025, 4, 10, 12), "net_usd": r}
        for c, _, r, _ in _ASSIGNED
        if r > 0
    ]
    + [
        {"store_id": STORE, "customer_id": c, "created_at": datetime(2025, 2, 1, 12), "net_usd": p}
        for c, _, _, p in _ASSIGNED
        if p > 0
    ]
    # Outside every window: after the end date, and long before the pre-period.
    + [
        {"store_id": STORE, "customer_id": "x2", "created_at": datetime(2025, 5, 2), "net_usd": 99.0},
        {"store_id": STORE, "customer_id": "x7", "created_at": datetime(2024, 6, 1), "net_usd": 99.0},
    ]
)  # fmt: skip
# conversion: control 1 of 4, treatment 3 of 4; revenue: 5.0 vs 15.0 per customer.
EXPECTED_CONVERSION = {"control": 0.25, "treatment": 0.75}
EXPECTED_REVENUE = {"control": 5.0, "treatment": 15.0}


# ----------------------------------------------------------------------- order risk


def risk_world() -> tuple[pl.DataFrame, pl.DataFrame, set[str]]:
    """(orders, customers, ids of the planted risky orders): 240 ordinary orders of
    $40-$65 from 160 customers spread over March-June, and four planted patterns."""
    orders, customers = [], []
    start = datetime(2025, 3, 1, 9, 0)
    for i in range(160):
        opened = start + timedelta(hours=11 * i)
        customers.append((f"n{i}", f"+1555{i:07d}", opened - timedelta(minutes=30)))
        orders.append((f"n{i}a", f"n{i}", opened, 40.0 + (i * 7) % 26, "card", "US", "US", None))
        if i % 2 == 0:
            again = opened + timedelta(days=20 + i % 9, hours=3)
            if again.date() < AS_OF:
                orders.append(
                    (f"n{i}b", f"n{i}", again, 45.0 + (i * 5) % 20, "paypal", "US", "US", None)
                )
    risky: set[str] = set()
    # Card testing: five $5 orders within twenty minutes from two brand-new accounts.
    burst = datetime(2025, 6, 28, 3, 10)
    for k in range(5):
        account = f"t{k % 2}"
        if k < 2:
            customers.append((account, None, burst - timedelta(minutes=5)))
        orders.append(
            (f"t{k}", account, burst + timedelta(minutes=4 * k), 5.0, "card", "US", "FR", None)
        )
        risky.add(f"t{k}")
    # Stolen card: a $600 first order billed in the US, shipped to Brazil.
    customers.append(("s1", "+15550009999", datetime(2025, 6, 29, 1, 0)))
    orders.append(("s1a", "s1", datetime(2025, 6, 29, 1, 5), 600.0, "card", "BR", "US", None))
    risky.add("s1a")
    # COD refuser: two parcels refused at the door, then a third COD order.
    customers.append(("r1", "+15550008888", datetime(2025, 4, 1, 9, 0)))
    for k, day in enumerate((date(2025, 4, 1), date(2025, 5, 1))):
        placed = datetime.combine(day, datetime.min.time()) + timedelta(hours=10)
        orders.append((f"r1{k}", "r1", placed, 50.0, "cod", "US", "US", placed + timedelta(days=4)))
    orders.append(("r12", "r1", datetime(2025, 6, 27, 10), 55.0, "cod", "US", "US", None))
    risky.add("r12")
    # Reseller: five accounts with one phone, a week apart; from the fourth on it shows.
    for k in range(5):
        opened = datetime(2025, 5, 1, 12) + timedelta(days=7 * k)
        customers.append((f"z{k}", "+15550007777", opened - timedelta(minutes=10)))
        orders.append((f"z{k}", f"z{k}", opened, 52.0, "card", "US", "US", None))
        if k >= 3:
            risky.add(f"z{k}")
    order_frame = pl.DataFrame(
        orders,
        schema={
            "order_id": pl.String,
            "customer_id": pl.String,
            "created_at": pl.Datetime("us"),
            "total_usd": pl.Float64,
            "payment_method": pl.String,
            "ship_country": pl.String,
            "billing_country": pl.String,
            "cancelled_at": pl.Datetime("us"),
        },  # fmt: skip
        orient="row",
    ).with_columns(pl.lit(STORE).alias("store_id"), pl.lit("paid").alias("financial_status"))
    customer_frame = pl.DataFrame(
        customers,
        schema={"customer_id": pl.String, "phone": pl.String, "created_at": pl.Datetime("us")},
        orient="row",
    ).with_columns(pl.lit(STORE).alias("store_id"))
    return order_frame, customer_frame, risky


def add_growth_tables(con) -> None:
    """The growth tables of the hand world, as the assets would write them, for store-a
    only (other stores of the warehouse get none: their report sections degrade)."""
    from models import experiments, order_risk, partners
    from storepulse.warehouse import replace_table

    card = partners.partner_scorecard(valid_ranked_orders(), PARTNERS, AS_OF, AD_SPEND)
    replace_table(con, "marts.partner_scorecard", card.rows)
    replace_table(con, "marts.partner_unlinked_codes", card.unlinked_codes)
    replace_table(
        con, "marts.experiment_readout", experiments.readout(ASSIGNMENTS, EXPERIMENT_ORDERS, AS_OF)
    )
    plan = experiments.sample_size_proportion(0.062, 0.10)
    replace_table(
        con,
        "marts.experiment_plan",
        pl.DataFrame(
            {
                "store_id": [STORE],
                "metric": ["conversion"],
                "baseline": [0.062],
                "relative_lift": [0.10],
                "alpha": [0.05],
                "power": [0.8],
                "customers_per_variant": [plan],
                "eligible_customers": [4_000],
                "period_days": [28],
                "periods_needed": [2 * plan / 4_000],
            }  # fmt: skip
        ),
    )
    orders, customers, _ = risk_world()
    scores = order_risk.score_orders(
        orders, customers, {STORE: "US"}, AS_OF, order_risk.RiskSettings(lookback_days=365)
    )
    open_orders = orders.filter(pl.col("cancelled_at").is_null()).select("store_id", "order_id")
    replace_table(
        con, "scores.order_risk", order_risk.orders_to_review(scores, open_orders, AS_OF, 3)
    )


def one_plain_sentence(section: str) -> bool:
    """A report section's body is one sentence of text: no plot, no table."""
    text = re.sub(r"<[^>]+>", " ", section)
    text = re.sub(r"\s+", " ", text).strip()
    ends = re.findall(r"[.!?](?=\s|$)", text)
    return len(ends) == 1 and "<svg" not in section and "<table" not in section
