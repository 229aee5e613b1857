"""Reorder plan: cover, stock-out date, (s, S) quantities, safety stock, FIFO age, order."""

from __future__ import annotations

import math
from datetime import date, timedelta

import polars as pl
import pytest
from scipy.stats import norm

from models import reorder

AS_OF = date(2025, 6, 1)
HORIZON = 28


def flat_forecast(store: str, sku: str, per_day: float, p10: float, p90: float) -> pl.DataFrame:
    days = [AS_OF + timedelta(days=i) for i in range(HORIZON)]
    return pl.DataFrame(
        {
            "store_id": [store] * HORIZON,
            "sku": [sku] * HORIZON,
            "date": days,
            "p10": [p10] * HORIZON,
            "p50": [per_day] * HORIZON,
            "p90": [p90] * HORIZON,
            "expected_units": [per_day] * HORIZON,
        }
    )


def snapshot(rows: list[tuple]) -> pl.DataFrame:
    """rows: (days_before_as_of, store, sku, warehouse, on_hand, lead_time_days)."""
    return pl.DataFrame(
        [(AS_OF - timedelta(days=d), s, k, w, float(q), lt) for d, s, k, w, q, lt in rows],
        schema={
            "snapshot_date": pl.Date,
            "store_id": pl.String,
            "sku": pl.String,
            "warehouse": pl.String,
            "on_hand": pl.Float64,
            "lead_time_days": pl.Int32,
        },
        orient="row",
    )


NO_SALES = pl.DataFrame(
    schema={"store_id": pl.String, "sku": pl.String, "date": pl.Date, "units": pl.Float64}
)


def abc(*rows: tuple[str, str, str, float]) -> pl.DataFrame:
    schema = {
        "store_id": pl.String,
        "sku": pl.String,
        "abc_class": pl.String,
        "revenue_usd": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def plan_for(forecast, inventory, classes, sales=NO_SALES, **config) -> pl.DataFrame:
    return reorder.reorder_plan(
        forecast, inventory, sales, classes, AS_OF, reorder.ReorderSettings(**config)
    )


def test_days_of_cover_and_stockout_date_follow_cumulative_expected_demand():
    forecast = pl.concat(
        [
            flat_forecast("s", "low_stock", 2.0, 1.0, 3.0),
            flat_forecast("s", "deep_stock", 2.0, 1.0, 3.0),
            flat_forecast("s", "no_demand", 0.0, 0.0, 0.0),
            flat_forecast("s", "sold_out", 2.0, 1.0, 3.0),
        ]
    )
    inventory = snapshot(
        [
            (1, "s", "low_stock", "w", 9, 10),
            (1, "s", "deep_stock", "w", 100, 10),
            (1, "s", "no_demand", "w", 40, 10),
            (1, "s", "sold_out", "w", 0, 10),
        ]
    )
    plan = plan_for(forecast, inventory, abc(("s", "low_stock", "A", 1.0)))
    row = {r["sku"]: r for r in plan.iter_rows(named=True)}
    # 9 units at 2/day: gone halfway through the fifth day.
    assert row["low_stock"]["days_of_cover"] == pytest.approx(4.5)
    assert row["low_stock"]["stockout_date"] == AS_OF + timedelta(days=4)
    # Past the 28-day horizon the horizon's rate continues: 28 + (100 - 56) / 2.
    assert row["deep_stock"]["days_of_cover"] == pytest.approx(50.0)
    assert row["no_demand"]["days_of_cover"] is None and row["no_demand"]["stockout_date"] is None
    assert row["no_demand"]["overstock_flag"] and not row["deep_stock"]["overstock_flag"]
    assert row["sold_out"]["days_of_cover"] == 0.0 and row["sold_out"]["stockout_date"] == AS_OF


def test_reorder_quantity_covers_lead_time_and_order_cycle_plus_safety_stock():
    lead, cycle, per_day = 10, 28, 4.0
    p10, p90 = 1.0, 8.0
    forecast = pl.concat(
        [flat_forecast("s", sku, per_day, p10, p90) for sku in ("short", "plenty")]
    )
    inventory = snapshot([(1, "s", "short", "w", 15, lead), (1, "s", "plenty", "w", 400, lead)])
    classes = abc(("s", "short", "A", 10.0), ("s", "plenty", "A", 5.0))
    plan = plan_for(forecast, inventory, classes, order_cycle_days=cycle)
    row = {r["sku"]: r for r in plan.iter_rows(named=True)}

    z = norm.ppf(0.98)  # class A service level
    sigma = (p90 - p10) / (2 * norm.ppf(0.9))  # wider than sqrt(4) = 2, so it is used
    safety_stock = z * sigma * math.sqrt(lead + cycle)
    reorder_point = per_day * lead + z * sigma * math.sqrt(lead)
    assert row["short"]["safety_stock"] == pytest.approx(safety_stock)
    assert row["short"]["reorder_point"] == pytest.approx(reorder_point)
    assert row["short"]["reorder_qty"] == math.ceil(per_day * (lead + cycle) + safety_stock - 15)
    assert row["plenty"]["reorder_qty"] == 0  # above its reorder point: nothing to order yet
    assert row["short"]["lead_time_days"] == lead


def test_safety_stock_grows_with_uncertainty_and_service_level():
    forecast = pl.concat(
        [
            flat_forecast("s", "narrow", 5.0, 4.0, 6.0),
            flat_forecast("s", "wide", 5.0, 0.0, 14.0),
            flat_forecast("s", "wide_c", 5.0, 0.0, 14.0),
        ]
    )
    inventory = snapshot([(1, "s", sku, "w", 10, 14) for sku in ("narrow", "wide", "wide_c")])
    classes = abc(("s", "narrow", "A", 3.0), ("s", "wide", "A", 2.0), ("s", "wide_c", "C", 1.0))
    plan = {r["sku"]: r for r in plan_for(forecast, inventory, classes).iter_rows(named=True)}
    assert plan["wide"]["safety_stock"] > plan["narrow"]["safety_stock"] > 0
    assert plan["wide"]["safety_stock"] > plan["wide_c"]["safety_stock"]  # A 98 % vs C 90 %
    # Whole-unit quantiles of 0..0 still leave Poisson-level uncertainty.
    slow = plan_for(
        flat_forecast("s", "slow", 0.3, 0.0, 0.0), snapshot([(1, "s", "slow", "w", 1, 14)]), abc()
    )
    assert slow["safety_stock"][0] > 0


def test_fifo_age_counts_stock_not_covered_by_recent_receipts():
    # never_restocked: 120 units 300 days ago, sells 0.2/day, never receives again.
    # restocked: topped up to 100 every 30 days, sells 3/day: all of it is recent.
    # new_sku: snapshots only for 60 days, so its age is unknown (not flagged).
    rows, sales = [], []
    for d in range(300, 0, -1):
        rows.append((d, "s", "never_restocked", "w", 120 - 0.2 * (300 - d), 30))
        day_in_cycle = (300 - d) % 30
        rows.append((d, "s", "restocked", "w", 100 - 3 * day_in_cycle, 30))
        sales.append((AS_OF - timedelta(days=d), "s", "never_restocked", 0.2))
        sales.append((AS_OF - timedelta(days=d), "s", "restocked", 3.0 if day_in_cycle else 0.0))
        if d <= 60:
            rows.append((d, "s", "new_sku", "w", 500, 30))
    inventory = snapshot(rows)
    daily = pl.DataFrame(sales, schema=["date", "store_id", "sku", "units"], orient="row")
    ages = {r["sku"]: r for r in reorder.stock_age(inventory, daily, AS_OF).iter_rows(named=True)}
    on_hand_now = 120 - 0.2 * 299
    assert ages["never_restocked"]["aged_units"] == pytest.approx(on_hand_now)
    assert ages["restocked"]["aged_units"] == 0
    assert ages["new_sku"]["aged_units"] == 0 and not ages["new_sku"]["age_known"]

    forecast = pl.concat(
        [flat_forecast("s", k, 1.0, 0.0, 2.0) for k in ("never_restocked", "restocked", "new_sku")]
    )
    plan = {r["sku"]: r for r in plan_for(forecast, inventory, abc(), daily).iter_rows(named=True)}
    assert plan["never_restocked"]["aged_stock_flag"]
    assert not plan["restocked"]["aged_stock_flag"] and not plan["new_sku"]["aged_stock_flag"]


def test_lead_time_is_on_hand_weighted_over_warehouses_with_a_default():
    forecast = pl.concat([flat_forecast("s", k, 1.0, 0.0, 2.0) for k in ("split", "unknown")])
    inventory = snapshot(
        [
            (1, "s", "split", "local", 30, 7),
            (1, "s", "split", "overseas", 10, 40),
            (1, "s", "unknown", "w", 10, None),
        ]
    )
    plan = {
        r["sku"]: r
        for r in plan_for(forecast, inventory, abc(), default_lead_time_days=21).iter_rows(
            named=True
        )
    }
    assert plan["split"]["on_hand"] == 40
    assert plan["split"]["lead_time_days"] == math.ceil((30 * 7 + 10 * 40) / 40)
    assert plan["unknown"]["lead_time_days"] == 21


def test_plan_puts_the_most_urgent_reorders_first_and_only_covers_forecast_stores():
    forecast = pl.concat(
        [
            flat_forecast("s", "fine", 1.0, 0.0, 2.0),
            flat_forecast("s", "urgent", 5.0, 2.0, 8.0),
            flat_forecast("s", "soon", 2.0, 0.0, 4.0),
        ]
    )
    inventory = snapshot(
        [
            (1, "s", "fine", "w", 200, 14),
            (1, "s", "urgent", "w", 5, 14),  # one day of cover, two weeks of lead time
            (1, "s", "soon", "w", 30, 14),  # 15 days of cover
            (1, "other", "anything", "w", 50, 14),  # a store with no forecast
        ]
    )
    plan = plan_for(forecast, inventory, abc())
    assert plan["sku"].to_list() == ["urgent", "soon", "fine"]
    assert plan["reorder_qty"].to_list()[:2] == [q for q in plan["reorder_qty"][:2] if q > 0]
    assert "other" not in set(plan["store_id"])
    assert plan.columns[:8] == [
        "store_id", "sku", "on_hand", "days_of_cover", "stockout_date", "reorder_qty",
        "abc_class", "aged_stock_flag",
    ]  # fmt: skip


def test_a_dead_sku_at_zero_stock_is_not_reordered_but_a_slow_seller_is():
    forecast = pl.concat(
        [
            flat_forecast("s", "dead", 0.01, 0.0, 0.0),  # < 1 unit over lead time + cycle
            flat_forecast("s", "slow", 0.1, 0.0, 1.0),
        ]
    )
    inventory = snapshot([(1, "s", "dead", "w", 0, 14), (1, "s", "slow", "w", 0, 14)])
    plan = {r["sku"]: r for r in plan_for(forecast, inventory, abc()).iter_rows(named=True)}
    assert plan["dead"]["reorder_qty"] == 0
    assert plan["slow"]["reorder_qty"] >= math.ceil(0.1 * (14 + 28))


def test_forecast_totals_add_expected_units_and_band_the_total_like_a_simulation():
    """A slow mover's daily quantiles are 0..0, yet over 28 days it sells: the total is
    the sum of the daily expected units, and its 80 % band holds the simulated totals
    about 8 times in 10 (daily counts drawn as Poisson around the expected units)."""
    import numpy as np
    from scipy.stats import poisson

    start = date(2026, 1, 1)
    slow = [0.05 + 0.04 * (d % 7 == 5) for d in range(28)]
    fast = [6.0 + 2.0 * (d % 7 == 5) for d in range(28)]
    rows = [
        {"store_id": "s", "sku": sku, "date": start + timedelta(days=d), "expected_units": m,
         "p10": float(lo), "p50": float(med), "p90": float(hi)}
        for sku, means in (("slow", slow), ("fast", fast))
        for d, m in enumerate(means)
        for lo, med, hi in [poisson.ppf([0.1, 0.5, 0.9], m)]
    ]  # fmt: skip
    forecast = pl.DataFrame(rows)
    totals = {r["sku"]: r for r in reorder.forecast_totals(forecast).iter_rows(named=True)}
    assert forecast.filter(pl.col("sku") == "slow")["p90"].sum() == 0  # quantiles say 0..0
    assert totals["slow"]["expected"] == pytest.approx(sum(slow))
    assert totals["fast"]["expected"] == pytest.approx(sum(fast))
    assert totals["slow"]["days"] == 28
    rng = np.random.default_rng(0)
    for sku, means in (("slow", slow), ("fast", fast)):
        simulated = rng.poisson(np.array(means), size=(20_000, 28)).sum(axis=1)
        inside = (simulated >= totals[sku]["low"]) & (simulated <= totals[sku]["high"])
        assert 0.7 <= inside.mean() <= 0.95, (sku, inside.mean())
