"""RFM scores, segments, lifecycle stages and actions on hand-built order histories."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from models.rfm import (
    ACTIONS,
    DEFAULT_SEGMENT_ACTIONS,
    LIFECYCLE_STAGES,
    SEGMENTS,
    RfmSettings,
    score_rfm,
)

AS_OF = date(2025, 6, 1)


def orders_frame(rows: list[tuple]) -> pl.DataFrame:
    """rows: (store_id, customer_id, days_before_as_of, total_usd[, refunded_usd[, cancelled]])."""
    records = []
    for i, row in enumerate(rows):
        store, customer, days_before, total, *rest = row
        refunded = rest[0] if rest else 0.0
        cancelled = rest[1] if len(rest) > 1 else False
        records.append(
            {
                "store_id": store,
                "order_id": f"o{i}",
                "customer_id": customer,
                "order_date": AS_OF - timedelta(days=days_before),
                "total_usd": float(total),
                "refunded_amount_usd": float(refunded),
                "is_cancelled": cancelled,
            }
        )
    return pl.DataFrame(records)


def by_customer(rfm: pl.DataFrame, customer: str, store: str = "s1") -> dict:
    rows = rfm.filter((pl.col("store_id") == store) & (pl.col("customer_id") == customer))
    assert rows.height == 1, f"{customer} should appear exactly once"
    return rows.row(0, named=True)


def test_recency_quintiles_put_the_most_recent_fifth_at_five():
    # 100 one-order customers, customer k last ordered k+1 days ago.
    rows = [("s1", f"c{k:03d}", k + 1, 50.0) for k in range(100)]
    rfm = score_rfm(orders_frame(rows), AS_OF)
    scores = dict(zip(rfm["customer_id"], rfm["r_score"], strict=True))
    assert {scores[f"c{k:03d}"] for k in range(20)} == {5}
    assert {scores[f"c{k:03d}"] for k in range(80, 100)} == {1}
    assert rfm.group_by("r_score").len()["len"].to_list() == [20] * 5
    assert by_customer(rfm, "c000")["recency_days"] == 1


def test_tied_frequencies_share_one_score():
    # 70 one-time buyers and 30 repeat buyers: every one-time buyer gets the same F.
    rows = [("s1", f"one{k}", 10 + k, 40.0) for k in range(70)]
    for k in range(30):
        rows += [("s1", f"rep{k}", 5 + d * 20, 40.0) for d in range(2 + k % 4)]
    rfm = score_rfm(orders_frame(rows), AS_OF)
    one_time = rfm.filter(pl.col("customer_id").str.starts_with("one"))
    assert one_time["f_score"].n_unique() == 1
    assert one_time["f_score"][0] < rfm.filter(pl.col("frequency") >= 4)["f_score"].min()


def test_planted_customers_land_in_their_segments_with_actions():
    rows = []
    # background population so quintiles are meaningful
    for k in range(200):
        rows += [("s1", f"bg{k}", 30 + (k * 7) % 600, 30 + k % 50)]
    rows += [("s1", "champion", d, 400.0) for d in (2, 20, 45, 80, 120, 170)]
    rows += [("s1", "lost", 700, 15.0)]
    rows += [("s1", "cant_lose", d, 500.0) for d in (500, 540, 580, 620, 660, 700)]
    rows += [("s1", "newbie", 1, 20.0)]
    rfm = score_rfm(orders_frame(rows), AS_OF)

    champion = by_customer(rfm, "champion")
    assert (champion["r_score"], champion["f_score"], champion["m_score"]) == (5, 5, 5)
    assert champion["segment"] == "Champions"
    assert champion["action"] == "VIP early access"

    lost = by_customer(rfm, "lost")
    assert lost["segment"] == "Lost" and lost["action"] == "reduce spend"
    assert by_customer(rfm, "cant_lose")["segment"] == "Can't Lose Them"
    assert by_customer(rfm, "cant_lose")["action"] == "win-back gift"
    assert by_customer(rfm, "newbie")["segment"] == "New Customers"
    assert by_customer(rfm, "newbie")["action"] == "welcome offer"

    assert set(rfm["segment"]) <= set(SEGMENTS)
    assert set(rfm["action"]) <= set(ACTIONS)
    assert rfm["segment"].null_count() == 0


def test_lifecycle_stages_follow_the_configured_thresholds():
    rows = [
        ("s1", "big_spender", 30, 300.0),
        ("s1", "big_spender", 200, 250.0),  # 550 USD within 365 days -> high_value
        ("s1", "old_big", 400, 900.0),
        ("s1", "old_big", 100, 50.0),  # only 50 USD in the last 365 days -> active
        ("s1", "first_timer", 20, 60.0),  # first order 20 days ago -> new
        ("s1", "gone", 300, 80.0),  # no order for 300 days > 180 -> churned
        ("s1", "refunded", 10, 600.0, 200.0),  # net 400 USD: not high value
        ("s1", "refunded", 300, 40.0),
    ]
    rfm = score_rfm(orders_frame(rows), AS_OF)
    stage = dict(zip(rfm["customer_id"], rfm["lifecycle_stage"], strict=True))
    assert stage == {
        "big_spender": "high_value",
        "old_big": "active",
        "first_timer": "new",
        "gone": "churned",
        "refunded": "active",
    }
    assert set(stage.values()) <= set(LIFECYCLE_STAGES)
    assert by_customer(rfm, "refunded")["monetary_usd"] == pytest.approx(440.0)

    # Lower the high-value bar and lengthen the churn window: stages follow config.
    relaxed = score_rfm(
        orders_frame(rows), AS_OF, RfmSettings(high_value_usd=300.0, churned_after_days=400)
    )
    relaxed_stage = dict(zip(relaxed["customer_id"], relaxed["lifecycle_stage"], strict=True))
    assert relaxed_stage["refunded"] == "high_value"
    assert relaxed_stage["gone"] == "active"


def test_nothing_on_or_after_as_of_is_read_and_cancelled_orders_do_not_count():
    rows = [
        ("s1", "a", 10, 50.0),
        ("s1", "a", 0, 999.0),  # on as_of itself: ignored
        ("s1", "a", -5, 999.0),  # after as_of: ignored
        ("s1", "a", 3, 999.0, 0.0, True),  # cancelled: ignored
        ("s1", "future_only", -1, 10.0),
    ]
    rfm = score_rfm(orders_frame(rows), AS_OF)
    assert rfm["customer_id"].to_list() == ["a"]
    a = by_customer(rfm, "a")
    assert (a["frequency"], a["monetary_usd"], a["recency_days"]) == (1, 50.0, 10)


def test_quintiles_are_computed_within_each_store():
    # Store s2 spends ten times more; s1's best customers still get m_score 5.
    rows = [("s1", f"c{k}", 5 + k, 10.0 + k) for k in range(50)]
    rows += [("s2", f"c{k}", 5 + k, 1000.0 + k) for k in range(50)]
    rfm = score_rfm(orders_frame(rows), AS_OF)
    for store in ("s1", "s2"):
        part = rfm.filter(pl.col("store_id") == store)
        assert part.group_by("m_score").len()["len"].sort().to_list() == [10] * 5
    assert by_customer(rfm, "c49", "s1")["m_score"] == 5


def test_lookback_window_and_weights_change_the_scores():
    rows = [("s1", f"c{k}", 5 + k, 20.0) for k in range(40)]
    rows += [("s1", "old_whale", d, 2000.0) for d in (400, 420, 440)]
    rows += [("s1", "old_whale", 5, 20.0)]
    all_history = score_rfm(orders_frame(rows), AS_OF)
    last_year = score_rfm(orders_frame(rows), AS_OF, RfmSettings(lookback_days=365))
    assert by_customer(all_history, "old_whale")["frequency"] == 4
    assert by_customer(last_year, "old_whale")["frequency"] == 1
    assert by_customer(last_year, "old_whale")["monetary_usd"] == pytest.approx(20.0)


def test_invalid_configuration_is_refused_with_a_clear_message():
    incomplete_grid = RfmSettings(segment_grid=(("Champions", 4, 5, 4, 5),))
    with pytest.raises(ValueError, match="without a segment"):
        score_rfm(orders_frame([("s1", "a", 1, 10.0)]), AS_OF, incomplete_grid)
    missing_action = dict(DEFAULT_SEGMENT_ACTIONS)
    missing_action.pop("Lost")
    with pytest.raises(ValueError, match="no action"):
        score_rfm(
            orders_frame([("s1", "a", 1, 10.0)]),
            AS_OF,
            RfmSettings(segment_actions=missing_action),
        )


def test_no_orders_gives_an_empty_frame_with_the_contract_columns():
    empty = score_rfm(orders_frame([("s1", "a", -3, 10.0)]), AS_OF)
    assert empty.is_empty()
    for column in (
        "store_id",
        "customer_id",
        "recency_days",
        "frequency",
        "monetary_usd",
        "r_score",
        "f_score",
        "m_score",
        "segment",
        "lifecycle_stage",
        "action",
    ):
        assert column in empty.columns
