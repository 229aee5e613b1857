"""Warehouse fixtures for the publish and privacy tests (no tests here).

The model tables (marts.customer_rfm, scores.churn, ...) are built by other
issues; these small frames carry exactly the DESIGN §4 minimum columns so the
publish layer can be tested on its own. Two stores share a customer_id ("c1")
with different people, to catch any cross-store leak.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from storepulse import lifecycle
from storepulse.ingest.staging import create_views
from storepulse.warehouse import ensure_schemas, replace_table

AS_OF = date(2025, 6, 30)
STORE_A, STORE_B = "store-a", "store-b"
FORMULA_NAME = '=HYPERLINK("http://evil.example","x")'

CUSTOMERS = [
    # store, customer_id, email, phone, first, last, country, email ok, ads ok
    (STORE_A, "c1", " Alice.Smith@Example.com ", "447700900123", " Alice ", "Smith", "UK", True, True),
    (STORE_A, "c2", "bob@example.com", "447700900456", FORMULA_NAME, "-Jones", "GB", True, False),
    (STORE_A, "c3", "carol@example.com", "447700900789", "Carol", "King", "GB", False, False),
    (STORE_A, "cust-eve", "eve@example.com", None, "Eve", "Adams", "DE", True, True),
    (STORE_A, "c6", "frank@example.com", "4915112345678", "Frank", "Ocean", "DE", False, True),
    (STORE_B, "c1", "zed@other-store.com", "14155550100", "Zed", "Bee", "US", True, True),
    (STORE_B, "b2", "yan@other-store.com", "14155550111", "Yan", "Lo", "US", True, True),
]  # fmt: skip

# store, customer_id, segment, lifecycle_stage, monetary, m_score, action
RFM = [
    (STORE_A, "c1", "Champions", "high_value", 900.0, 5, "VIP early access"),
    (STORE_A, "c2", "Can't Lose Them", "high_value", 700.0, 5, "win-back gift"),
    (STORE_A, "c3", "Champions", "active", 300.0, 4, "VIP early access"),
    (STORE_A, "c4", "At Risk", "active", 150.0, 3, "win-back gift"),  # no customers row
    (STORE_A, "eve@example.com", "Hibernating", "churned", 80.0, 2, "reactivation care"),
    (STORE_A, "c6", "Champions", "high_value", 650.0, 5, "VIP early access"),
    (STORE_B, "c1", "Champions", "high_value", 1200.0, 5, "VIP early access"),
    (STORE_B, "b2", "Lost", "churned", 40.0, 1, "reduce spend"),
]

# store, customer_id, probability, risk_score, band, value_at_risk
CHURN = [
    (STORE_A, "c1", 0.2, 20, "low", 180.0),
    (STORE_A, "c2", 0.9, 90, "high", 630.0),
    (STORE_A, "c3", 0.5, 50, "medium", 150.0),
    (STORE_A, "c4", 0.85, 85, "high", 127.5),
    (STORE_A, "eve@example.com", 0.95, 95, "high", 76.0),
    (STORE_A, "c6", 0.88, 88, "high", 572.0),
    (STORE_B, "c1", 0.92, 92, "high", 1104.0),
    (STORE_B, "b2", 0.99, 99, "high", 39.6),
]


def build_warehouse(con: duckdb.DuckDBPyConnection, store_b_has_ads: bool = False) -> None:
    """Staging + model tables for two stores; store-b has no ad spend and no order lines."""
    ensure_schemas(con)
    lifecycle.record_store_status(
        con,
        AS_OF,
        "churn",
        [
            lifecycle.StoreOutcome(STORE_A, "churn", "fallback", "bgnbd",
                                   "scored with BG/NBD because LightGBM: too little history"),
            lifecycle.StoreOutcome(STORE_B, "churn", "ok", "lightgbm", "scored with LightGBM"),
        ],
    )  # fmt: skip
    replace_table(
        con,
        "staging.stores",
        pl.DataFrame(
            {
                "store_id": [STORE_A, STORE_B],
                "store_name": ["Alpha <Goods> & Co", "Beta Store"],
                "country": ["GB", "US"],
                "currency": ["GBP", "USD"],
                "timezone": ["Europe/London", "America/New_York"],
            }
        ),
    )
    customers = pl.DataFrame(
        CUSTOMERS,
        schema=[
            "store_id",
            "customer_id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "country",
            "accepts_email_marketing",
            "ad_personalization_consent",
        ],
        orient="row",
    ).with_columns(
        pl.col("email").str.strip_chars().str.to_lowercase(),
        pl.lit(datetime(2024, 1, 1)).alias("created_at"),
        pl.lit(False).alias("accepts_sms_marketing"),
    )
    replace_table(con, "staging.customers", customers)
    orders = []
    for store, customer, email, days_before in [
        # c1 orders every 30 days, last 40 days ago: its repurchase cycle is due.
        (STORE_A, "c1", "alice.smith@example.com", 100),
        (STORE_A, "c1", "alice.smith@example.com", 70),
        (STORE_A, "c1", "alice.smith@example.com", 40),
        # c3 orders every 30 days, last 5 days ago: not due yet.
        (STORE_A, "c3", "carol@example.com", 35),
        (STORE_A, "c3", "carol@example.com", 5),
        (STORE_A, "eve@example.com", "eve@example.com", 300),
        (STORE_B, "c1", "zed@other-store.com", 60),
        (STORE_B, "c1", "zed@other-store.com", 30),
    ]:
        day = AS_OF - timedelta(days=days_before)
        orders.append(
            {
                "store_id": store,
                "order_id": f"{store}-{customer}-{days_before}",
                "customer_id": customer,
                "email": email,
                "created_at": datetime.combine(day, datetime.min.time()),
                "order_date": day,
                "total_usd": 100.0,
                "is_cancelled": False,
                "ship_country": "GB" if store == STORE_A else "US",
            }
        )
    replace_table(con, "staging.orders", pl.DataFrame(orders))
    create_views(con)
    replace_table(
        con,
        "staging.privacy_requests",
        pl.DataFrame(
            schema={
                "requested_at": pl.Datetime,
                "store_id": pl.String,
                "email": pl.String,
                "customer_id": pl.String,
                "kind": pl.String,
            }
        ),
    )
    kpi = []
    for store in (STORE_A, STORE_B):
        for offset in range(1, 91):
            day = AS_OF - timedelta(days=offset)
            for channel, spend in (("meta", 50.0), ("google", 30.0), ("email", 0.0)):
                growth = 1.3 if offset <= 30 else 1.0  # last 30 days up 30 %
                kpi.append(
                    {
                        "store_id": store,
                        "date": day,
                        "channel": channel,
                        "gmv_usd": 200.0 * growth,
                        "orders": 4,
                        "new_customers": 1,
                        "returning_customers": 3,
                        "aov_usd": 50.0 * growth,
                        "ad_spend_usd": spend if store == STORE_A or store_b_has_ads else 0.0,
                        "sessions": 100,
                        "conversion_rate": 0.04,
                    }
                )
    replace_table(con, "marts.kpi_daily", pl.DataFrame(kpi))
    replace_table(
        con,
        "marts.customer_rfm",
        pl.DataFrame(
            RFM,
            schema=[
                "store_id",
                "customer_id",
                "segment",
                "lifecycle_stage",
                "monetary_usd",
                "m_score",
                "action",
            ],
            orient="row",
        ).with_columns(
            pl.lit(30).alias("recency_days"),
            pl.lit(3).alias("frequency"),
            pl.lit(3).alias("r_score"),
            pl.lit(3).alias("f_score"),
        ),
    )
    replace_table(
        con,
        "scores.churn",
        pl.DataFrame(
            CHURN,
            schema=[
                "store_id",
                "customer_id",
                "churn_probability",
                "risk_score",
                "risk_band",
                "value_at_risk_usd",
            ],
            orient="row",
        ).with_columns(
            pl.lit(AS_OF).alias("as_of"),
            pl.lit("recency, frequency, aov").alias("top_reasons"),
            pl.lit("churn-v1").alias("model_version"),
        ),
    )
    # Customer value: predicted 365-day revenue = 3x value at risk; next orders spread out.
    replace_table(
        con,
        "scores.clv",
        pl.DataFrame(
            [
                {
                    "store_id": store,
                    "customer_id": customer,
                    "as_of": AS_OF,
                    "p_alive": 1 - p,
                    "expected_orders_90d": 1 - p,
                    "expected_orders_365d": 3 * (1 - p),
                    "predicted_revenue_365d_usd": 3 * value,
                    "expected_next_order_date": AS_OF + timedelta(days=10 * (i + 1)),
                    "model_version": "clv-v1/bgnbd_gg",
                }
                for i, (store, customer, p, _, _, value) in enumerate(CHURN)
            ]
        ),
    )
    forecast = [
        {
            "store_id": STORE_A,
            "sku": sku,
            "date": AS_OF + timedelta(days=d),
            "p10": base * 0.5,
            "p50": base,
            "p90": base * 1.6,
            "model_version": "demand-v1",
        }
        for sku, base in (("SKU-TEE", 12.0), ("-SKU-DASH", 3.0), ("SKU-MUG", 7.0))
        for d in range(28)
    ]
    replace_table(con, "scores.demand_forecast", pl.DataFrame(forecast))
    replace_table(
        con,
        "marts.reorder_plan",
        pl.DataFrame(
            {
                "store_id": [STORE_A, STORE_A, STORE_A],
                "sku": ["SKU-TEE", "-SKU-DASH", "SKU-MUG"],
                "on_hand": [20.0, 500.0, 60.0],
                "days_of_cover": [2.0, 160.0, 9.0],
                "stockout_date": [AS_OF + timedelta(days=2), None, AS_OF + timedelta(days=9)],
                "reorder_qty": [300.0, 0.0, 150.0],
                "abc_class": ["A", "C", "B"],
                "aged_stock_flag": [False, True, False],
            }
        ),
    )
    roi_stores = [STORE_A, STORE_B] if store_b_has_ads else [STORE_A]
    replace_table(
        con,
        "marts.channel_roi",
        pl.DataFrame(
            [
                {
                    "store_id": store,
                    "channel": channel,
                    "period_start": AS_OF - timedelta(days=90),
                    "period_end": AS_OF - timedelta(days=1),
                    "spend_usd": spend,
                    "platform_roas": platform,
                    "last_click_roas": last_click,
                    "incremental_roas": incremental,
                    "marginal_roas": incremental * 0.7,
                }
                for store in roi_stores
                for channel, spend, platform, last_click, incremental in (
                    ("meta", 4500.0, 4.2, 2.1, 1.3),
                    ("google", 2700.0, 3.0, 2.6, 2.4),
                )
            ]
        ),
    )
    replace_table(
        con,
        "marts.budget_plan",
        pl.DataFrame(
            {
                "store_id": [STORE_A, STORE_A],
                "channel": ["meta", "google"],
                "current_spend_usd": [4500.0, 2700.0],
                "recommended_spend_usd": [3600.0, 3600.0],
                "expected_revenue_change_usd": [-1170.0, 2160.0],
            }
        ),
    )
