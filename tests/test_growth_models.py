"""models/partners.py, models/experiments.py, models/order_risk.py on a world written by
hand (tests/growth_world.py), not by the generator: every figure is a definition
that can be checked on paper."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import polars.selectors as cs
import pytest
from growth_world import (
    AD_SPEND,
    AS_OF,
    ASSIGNMENTS,
    EXPECTED_CONVERSION,
    EXPECTED_MIA_FEES,
    EXPECTED_OVERALL,
    EXPECTED_REVENUE,
    EXPECTED_STORE_REPEAT,
    EXPERIMENT_ORDERS,
    PARTNERS,
    STORE,
    risk_world,
    valid_ranked_orders,
)
from scipy import stats

from models import experiments, order_risk, partners
from storepulse.inputs import partners as partner_inputs

# ---------------------------------------------------------------------------- partners


@pytest.fixture(scope="module")
def scorecard() -> partners.Scorecard:
    return partners.partner_scorecard(valid_ranked_orders(), PARTNERS, AS_OF, AD_SPEND)


def _overall(card: partners.Scorecard, partner_id: str) -> dict:
    rows = card.rows.filter((pl.col("period") == "overall") & (pl.col("partner_id") == partner_id))
    assert rows.height == 1, partner_id
    return rows.row(0, named=True)


@pytest.mark.parametrize("partner_id", sorted(EXPECTED_OVERALL))
def test_overall_figures_are_the_hand_worked_ones(scorecard, partner_id):
    row = _overall(scorecard, partner_id)
    for column, expected in EXPECTED_OVERALL[partner_id].items():
        if expected is None:
            assert row[column] is None, column
        else:
            assert row[column] == pytest.approx(expected, abs=1e-9), column
    assert row["period_end"] == AS_OF - timedelta(days=1)


def test_code_is_matched_case_blind_and_utm_links_orders_without_a_code(scorecard):
    linked = partners.link_orders(valid_ranked_orders(), PARTNERS)
    by_order = dict(linked.select("order_id", "partner_id").iter_rows())
    assert by_order["o4"] == "P1"  # 'mia10' on the order
    assert by_order["o8"] == "P2"  # no code, utm_campaign aff_dealhub
    assert by_order["o10"] is None  # a campaign no partner has


def test_cancelled_orders_never_count(scorecard):
    assert _overall(scorecard, "P2")["orders"] == 3  # o11 (DEALS, cancelled) left out


def test_fixed_fee_is_spread_over_contract_days_and_months_add_up(scorecard):
    months = scorecard.rows.filter((pl.col("partner_id") == "P1") & (pl.col("period") == "month"))
    fees = dict(months.select("period_start", "fixed_fee_usd").iter_rows())
    for month, fee in EXPECTED_MIA_FEES.items():
        assert fees[month] == pytest.approx(fee)
    for column in ("orders", "revenue_usd", "cost_usd", "brought_revenue_usd", "new_customers",
                   "code_only_new_customers"):  # fmt: skip
        assert months[column].sum() == pytest.approx(_overall(scorecard, "P1")[column]), column
    # Ghost has no end date: the fee is paid once, on its start date.
    ghost = scorecard.rows.filter((pl.col("partner_id") == "P3") & (pl.col("period") == "month"))
    assert ghost.select("period_start", "fixed_fee_usd").rows() == [(date(2025, 5, 1), 500.0)]


def test_store_repeat_rate_and_flags(scorecard):
    assert _overall(scorecard, "P1")["store_repeat_rate_90d"] == pytest.approx(
        EXPECTED_STORE_REPEAT
    )
    assert _overall(scorecard, "P1")["flags"].startswith("costs more than it brings (323 cost")
    assert _overall(scorecard, "P3")["flags"].startswith("costs more than it brings")
    assert _overall(scorecard, "P2")["flags"] is None  # 2 customers: too few to judge repeats
    strict = partners.partner_scorecard(
        valid_ranked_orders(),
        PARTNERS,
        AS_OF,
        AD_SPEND,
        partners.PartnerSettings(min_customers=2, min_orders=3),
    )
    flags = _overall(strict, "P2")["flags"]
    assert "customers do not come back (0% repeat in 90 days vs 22% for the store)" in flags


def test_a_code_from_another_tracked_channel_is_not_a_customer_the_partner_brought():
    credited = partners.partner_scorecard(
        valid_ranked_orders(),
        PARTNERS,
        AS_OF,
        AD_SPEND,
        partners.PartnerSettings(credit_other_channels=True),
    )
    row = _overall(credited, "P1")
    assert (row["new_customers"], row["code_only_new_customers"]) == (4, 0)
    assert row["brought_revenue_usd"] == 280.0  # m4's $30 now counts


def _staged(orders: list[tuple]) -> duckdb.DuckDBPyConnection:
    """staging.orders of store-a with the two staging views, in memory."""
    con = duckdb.connect()
    con.execute("create schema staging")
    con.register("frame", pl.DataFrame(
        [{"store_id": STORE, "order_id": o, "customer_id": c, "created_at": datetime.fromisoformat(t),
          "order_date": datetime.fromisoformat(t).date(), "total_usd": total,
          "refunded_amount_usd": 0.0, "discount_code": code, "utm_campaign": None,
          "channel": channel, "is_cancelled": cancelled}
         for o, c, t, total, code, channel, cancelled in orders]
    ).cast({"discount_code": pl.String, "utm_campaign": pl.String}).to_arrow())  # fmt: skip
    con.execute("create table staging.orders as select * from frame")
    for view in ("valid_orders", "ranked_orders"):
        sql = (Path(__file__).parents[1] / "sql" / "staging" / f"{view}.sql").read_text()
        con.execute(f"create view staging.{view} as {sql}")
    return con


def test_a_customer_whose_first_placed_order_was_cancelled_came_through_that_order():
    # c1 came with Mia's code (cancelled: the card failed), then ordered again without it;
    # c2's first placement was cancelled too but carried no code: nobody brought c2.
    con = _staged([
        ("o1", "c1", "2025-01-10 10:00", 60.0, "MIA10", "influencer", True),
        ("o2", "c1", "2025-01-10 10:30", 60.0, None, "direct", False),
        ("o3", "c1", "2025-03-01 10:00", 40.0, None, "email", False),
        ("o4", "c2", "2025-01-12 10:00", 50.0, None, "direct", True),
        ("o5", "c2", "2025-01-13 10:00", 50.0, "MIA10", "influencer", False),
    ])  # fmt: skip
    orders = partner_inputs.load_orders(con, AS_OF)
    placed = orders.filter(pl.col("placed_created_at").is_not_null())
    assert set(placed.select("order_id", "placed_discount_code").rows()) == {
        ("o2", "MIA10"),
        ("o5", None),
    }
    mia = _overall(partners.partner_scorecard(orders, PARTNERS, AS_OF), "P1")
    # c1 (o2 + o3 = 100) and c2, whose first counted order o5 carries the code (50).
    assert (mia["orders"], mia["new_customers"], mia["brought_revenue_usd"]) == (1, 2, 150.0)
    # Without the placement columns only c2 counts: the cancelled arrival is lost.
    plain = partners.partner_scorecard(orders.drop(cs.starts_with("placed_")), PARTNERS, AS_OF)
    assert (_overall(plain, "P1")["new_customers"], _overall(plain, "P1")["brought_revenue_usd"]) == (
        1, 50.0)  # fmt: skip


def test_untracked_arrivals_of_a_leaked_code_are_discounted_by_the_leaks_seen():
    # The store's own code WELCOME: 2 untracked (direct) and 4 tracked (google) first
    # orders -> 0.5 untracked arrivals per tracked one. Mia's code: 2 customers through
    # her own channel, 2 through Google (seen leaks), 4 direct: 2 x 0.5 = 1 of the 4
    # direct ones is likely a leak, so each counts for 3/4.
    rows = [
        (f"w{i}", f"w{i}", f"2025-02-0{i + 1} 10:00", 10.0, "WELCOME", ch, False)
        for i, ch in enumerate(["direct", "direct", "google", "google", "google", "google"])
    ]
    rows += [(f"m{i}", f"m{i}", f"2025-03-0{i + 1} 10:00", 100.0, "MIA10", ch, False)
             for i, ch in enumerate(["influencer", "influencer", "google", "google",
                                     "direct", "direct", "direct", "direct"])]  # fmt: skip
    orders = partner_inputs.load_orders(_staged(rows), AS_OF)
    mia = _overall(partners.partner_scorecard(orders, PARTNERS, AS_OF), "P1")
    assert (mia["new_customers"], mia["code_only_new_customers"]) == (6, 2)
    assert mia["likely_leaked_customers"] == pytest.approx(1.0)
    assert mia["brought_revenue_usd"] == pytest.approx(2 * 100.0 + 4 * 100.0 * 0.75)
    full = partners.partner_scorecard(
        orders, PARTNERS, AS_OF, settings=partners.PartnerSettings(discount_untracked_leaks=False)
    )
    assert _overall(full, "P1")["brought_revenue_usd"] == pytest.approx(600.0)
    assert _overall(full, "P1")["likely_leaked_customers"] == 0.0
    # More leaks seen than untracked arrivals: the share stops at all of them.
    more = rows + [(f"x{i}", f"x{i}", f"2025-04-0{i + 1} 10:00", 100.0, "MIA10", "google", False)
                   for i in range(8)]  # fmt: skip
    card = partners.partner_scorecard(partner_inputs.load_orders(_staged(more), AS_OF), PARTNERS,
                                      AS_OF)  # fmt: skip
    assert _overall(card, "P1")["likely_leaked_customers"] == pytest.approx(4.0)
    assert _overall(card, "P1")["brought_revenue_usd"] == pytest.approx(200.0)


def test_each_partners_leak_share_is_drawn_towards_the_stores():
    # The store's own code: 2 direct and 4 Google first orders -> 0.5 untracked arrivals
    # per tracked one. Mia: 4 leaks seen through Google (4 x 0.5 = 2 expected untracked
    # leaks) but only 1 direct arrival. DealHub: no leak seen, 3 direct arrivals. Alone,
    # Mia's estimate stops at her 1 arrival and DealHub's is 0: 1 of the 2 expected
    # leaks is lost. The store's share is (2 + 0) / (1 + 3) = 0.5; with k = 2 arrivals,
    # Mia (2 + 2 x 0.5) / (1 + 2) = 1 (all), DealHub (0 + 2 x 0.5) / (3 + 2) = 0.2.
    rows = [
        (f"w{i}", f"w{i}", f"2025-02-0{i + 1} 10:00", 10.0, "WELCOME", ch, False)
        for i, ch in enumerate(["direct", "direct", "google", "google", "google", "google"])
    ]
    rows += [(f"m{i}", f"m{i}", f"2025-03-0{i + 1} 10:00", 100.0, "MIA10", ch, False)
             for i, ch in enumerate(["google"] * 4 + ["direct"])]  # fmt: skip
    rows += [(f"d{i}", f"d{i}", f"2025-04-0{i + 1} 10:00", 100.0, "DEALS", "direct", False)
             for i in range(3)]  # fmt: skip
    orders = partner_inputs.load_orders(_staged(rows), AS_OF)
    pooled = partners.partner_scorecard(orders, PARTNERS, AS_OF)
    assert partners.PartnerSettings().leak_prior_strength == 2.0
    assert _overall(pooled, "P1")["likely_leaked_customers"] == pytest.approx(1.0)
    assert _overall(pooled, "P2")["likely_leaked_customers"] == pytest.approx(0.6)
    assert _overall(pooled, "P2")["brought_revenue_usd"] == pytest.approx(3 * 100.0 * 0.8)
    alone = partners.partner_scorecard(
        orders, PARTNERS, AS_OF, settings=partners.PartnerSettings(leak_prior_strength=0.0)
    )
    assert _overall(alone, "P1")["likely_leaked_customers"] == pytest.approx(1.0)
    assert _overall(alone, "P2")["likely_leaked_customers"] == 0.0
    assert _overall(alone, "P2")["brought_revenue_usd"] == pytest.approx(300.0)
    with pytest.raises(ValueError, match="leak_prior_strength"):
        partners.partner_scorecard(
            orders, PARTNERS, AS_OF, settings=partners.PartnerSettings(leak_prior_strength=-1)
        )


def test_a_code_no_partner_has_is_counted_not_dropped(scorecard):
    assert scorecard.unlinked_codes.select("discount_code", "orders", "revenue_usd").rows() == [
        ("SPRING5", 1, 45.0)
    ]


def test_a_store_without_partners_gets_no_rows_but_its_codes_are_counted():
    card = partners.partner_scorecard(valid_ranked_orders(), PARTNERS.clear(), AS_OF)
    assert card.rows.is_empty()
    assert set(card.unlinked_codes["discount_code"]) == {"MIA10", "DEALS", "SPRING5"}


# ---------------------------------------------------------------------------- experiments


@pytest.fixture(scope="module")
def readout() -> pl.DataFrame:
    return experiments.readout(ASSIGNMENTS, EXPERIMENT_ORDERS, AS_OF)


def _row(frame: pl.DataFrame, metric: str, variant: str) -> dict:
    return frame.filter((pl.col("metric") == metric) & (pl.col("variant") == variant)).row(
        0, named=True
    )


def test_values_are_means_over_the_window_only(readout):
    for variant in ("control", "treatment"):
        assert _row(readout, "conversion", variant)["value"] == EXPECTED_CONVERSION[variant]
        assert _row(readout, "revenue_per_customer", variant)["value"] == pytest.approx(
            EXPECTED_REVENUE[variant]
        )
        assert _row(readout, "conversion", variant)["customers"] == 4


def test_raw_lift_interval_and_p_value_by_hand(readout):
    row = _row(readout, "conversion", "treatment")
    # 0.75 vs 0.25; both variances (ddof 1) 0.25 -> se = sqrt(0.25/4 + 0.25/4).
    se = math.sqrt(0.25 / 4 + 0.25 / 4)
    assert row["raw_lift"] == pytest.approx(0.5 / 0.25)
    assert row["raw_p_value"] == pytest.approx(2 * stats.norm.sf(0.5 / se))
    assert row["raw_ci_low"] == pytest.approx((0.5 - 1.959963984540054 * se) / 0.25)
    assert row["raw_ci_high"] == pytest.approx((0.5 + 1.959963984540054 * se) / 0.25)


def test_cuped_is_the_textbook_adjustment_and_narrows_the_interval(readout):
    # Independent computation: theta = cov(y, x) / var(x) over both variants.
    y = np.array([0, 0, 0, 20, 10, 30, 0, 20], dtype=float)
    x = np.array([10, 0, 20, 40, 0, 30, 10, 20], dtype=float)
    theta = np.cov(y, x, ddof=1)[0, 1] / np.var(x, ddof=1)
    adjusted = y - theta * (x - x.mean())
    treated, control = adjusted[4:], adjusted[:4]
    diff = treated.mean() - control.mean()
    se = math.sqrt(treated.var(ddof=1) / 4 + control.var(ddof=1) / 4)
    row = _row(readout, "revenue_per_customer", "treatment")
    assert row["difference"] == pytest.approx(diff)
    assert row["lift"] == pytest.approx(diff / control.mean())
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(diff) / se))
    assert row["variance_reduction"] == pytest.approx(1 - adjusted.var(ddof=1) / y.var(ddof=1))
    assert row["variance_reduction"] > 0.2
    raw_width = row["raw_ci_high"] - row["raw_ci_low"]
    assert row["ci_high"] - row["ci_low"] < raw_width
    assert row["ci_width_reduction"] > 0


def test_fixed_horizon_no_decision_before_the_end(readout):
    assert set(readout["status"]) == {"complete"}
    assert set(readout["experiment_decision"]) == {"no_difference"}  # p = 0.16 with n = 4
    early = experiments.readout(ASSIGNMENTS, EXPERIMENT_ORDERS, date(2025, 4, 20))
    assert set(early["experiment_decision"]) == {"running"}
    assert set(early.filter(~pl.col("is_control"))["decision"]) == {"running"}
    assert "no decision before the planned end" in early["decision_text"][0]


def test_sample_ratio_mismatch_is_a_chi_square_and_stops_the_reading():
    rows = [("control", 600), ("treatment", 400)]
    assignments = pl.DataFrame(
        {
            "store_id": STORE,
            "experiment_id": "skewed",
            "variant": [v for v, n in rows for _ in range(n)],
            "customer_id": [f"{v}{i}" for v, n in rows for i in range(n)],
            "assigned_at": datetime(2025, 4, 1),
            "end_date": date(2025, 4, 30),
        }
    )
    frame = experiments.readout(assignments, EXPERIMENT_ORDERS.clear(), AS_OF)
    expected_p = stats.chisquare([600, 400]).pvalue  # (100^2/500) * 2 = 40 -> p ~ 2.5e-10
    assert frame["srm_p_value"][0] == pytest.approx(expected_p)
    assert set(frame["experiment_decision"]) == {"srm"}


def test_sample_size_matches_the_published_formula():
    # Two proportions, 3.0 % -> 3.3 %, alpha 0.05 two-sided, power 0.8: ~53,200 per arm
    # (Fleiss; the same figure as Evan Miller's calculator).
    assert experiments.sample_size_proportion(0.03, 0.10) == 53_211
    n = experiments.sample_size_mean(50.0, 120.0, 0.10, power=0.9)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.9)
    assert n == math.ceil(2 * z**2 * 120**2 / 5**2)
    mde = experiments.mde_proportion(0.03, 53_211)
    assert mde == pytest.approx(0.003, rel=1e-3)
    assert experiments.power_proportion(0.03, 0.003, 53_211) == pytest.approx(0.8, abs=0.01)


# ---------------------------------------------------------------------------- order risk


@pytest.fixture(scope="module")
def risk_scores():
    orders, customers, planted = risk_world()
    settings = order_risk.RiskSettings(lookback_days=365)
    scores = order_risk.score_orders(orders, customers, {STORE: "US"}, AS_OF, settings)
    return scores, planted


def test_each_planted_pattern_is_flagged_with_its_reason(risk_scores):
    scores, _ = risk_scores
    rules = dict(scores.select("order_id", "rules").iter_rows())
    flagged = set(scores.filter("flagged")["order_id"])
    for order in ("t0", "t1", "t2", "t3", "t4"):
        assert "burst" in rules[order] and order in flagged
    assert {"country_mismatch", "big_first_order"} <= set(rules["s1a"].split(","))
    assert "s1a" in flagged
    assert "cod_refusals" in rules["r12"] and "r12" in flagged
    assert "refused 2 of 2 COD parcels" in scores.filter(pl.col("order_id") == "r12")["flags"][0]
    assert "shared_phone" in rules["z3"] and {"z3", "z4"} <= flagged


def test_no_ordinary_order_is_flagged_and_every_flag_has_reasons(risk_scores):
    scores, planted = risk_scores
    flagged = scores.filter("flagged")
    assert set(flagged["order_id"]) <= planted
    assert flagged["flags"].is_not_null().all() and (flagged["flags"] != "").all()


def test_precision_at_n_and_what_cannot_be_known_yet(risk_scores):
    scores, planted = risk_scores
    # The first refused parcels and the first reseller accounts look like anybody's:
    # nothing known when they were placed gives them away.
    everything = planted | {"r10", "r11", "z0", "z1", "z2"}
    ids = {(STORE, o) for o in everything}
    assert order_risk.precision_at(scores, ids, len(everything)) >= 0.6
    assert order_risk.precision_at(scores, {(STORE, o) for o in planted}, len(planted)) == 1.0


def test_the_score_never_reads_the_orders_own_outcome():
    orders, customers, _ = risk_world()
    settings = order_risk.RiskSettings(lookback_days=365)
    base = order_risk.score_orders(orders, customers, {STORE: "US"}, AS_OF, settings)
    # Refusing the stolen-card order afterwards changes nothing about its own score.
    refused = orders.with_columns(
        pl.when(pl.col("order_id") == "s1a")
        .then(pl.col("created_at") + timedelta(days=3))
        .otherwise(pl.col("cancelled_at"))
        .alias("cancelled_at")
    )
    again = order_risk.score_orders(refused, customers, {STORE: "US"}, AS_OF, settings)
    score = dict(base.select("order_id", "risk_score").iter_rows())
    assert dict(again.select("order_id", "risk_score").iter_rows())["s1a"] == score["s1a"]


def test_a_dates_only_export_turns_the_clock_rules_off_and_keeps_the_others():
    """Exports with dates but no times put every order at midnight: three orders of one
    customer on one day would read as "3 orders within an hour". With no clock, the
    burst rules are off for the store; the rules that need no clock still fire."""
    orders, customers, planted = risk_world()
    day = datetime(2025, 6, 10)
    repeat = pl.DataFrame(
        {
            "order_id": ["d1a", "d1b", "d1c"],
            "customer_id": ["n5"] * 3,
            "created_at": [day + timedelta(hours=h) for h in (9, 13, 18)],
            "total_usd": [48.0, 52.0, 61.0],
            "payment_method": ["card"] * 3,
            "ship_country": ["US"] * 3,
            "billing_country": ["US"] * 3,
        }
    ).with_columns(
        pl.lit(None, dtype=pl.Datetime("us")).alias("cancelled_at"),
        pl.lit(STORE).alias("store_id"),
        pl.lit("paid").alias("financial_status"),
    )
    orders = pl.concat([orders, repeat.select(orders.columns)])
    midnight = [pl.col(c).dt.truncate("1d") for c in ("created_at", "cancelled_at")]
    dates_only = orders.with_columns(midnight)
    accounts = customers.with_columns(pl.col("created_at").dt.truncate("1d"))
    settings = order_risk.RiskSettings(lookback_days=365)

    assert order_risk.stores_without_clock(orders) == set()
    assert order_risk.stores_without_clock(dates_only) == {STORE}
    scores = order_risk.score_orders(dates_only, accounts, {STORE: "US"}, AS_OF, settings)
    flagged = scores.filter("flagged")
    assert not flagged["rules"].str.contains("burst").any()
    assert set(flagged["order_id"]) <= planted  # the repeat customer's day is not a burst
    assert {"s1a", "r12", "z3", "z4"} <= set(flagged["order_id"])
    # With its clock, the same store's card-testing burst is found and the day is not.
    clocked = order_risk.score_orders(orders, customers, {STORE: "US"}, AS_OF, settings)
    rules = dict(clocked.select("order_id", "rules").iter_rows())
    assert all("burst" in rules[f"t{k}"] for k in range(5))
    assert not any(rules[o] and "burst" in rules[o] for o in ("d1a", "d1b", "d1c"))


def test_orders_to_review_are_flagged_open_and_recent(risk_scores):
    scores, _ = risk_scores
    open_orders = scores.filter(pl.col("order_id") != "t0").select("store_id", "order_id")
    marked = order_risk.orders_to_review(scores, open_orders, AS_OF, review_days=3)
    review = set(marked.filter("to_review")["order_id"])
    assert review == {"t1", "t2", "t3", "t4", "s1a", "r12"}  # z3/z4 are weeks old, t0 closed


def test_sample_size_command(capsys):
    from storepulse.cli import main

    assert main(["sample-size", "--baseline-rate", "0.03", "--lift", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("53,211 customers per variant (106,422 for an A/B test)")
    assert "80% power at 5% significance" in out
    assert main(["sample-size", "--baseline-mean", "50", "--lift", "0.1"]) == 2
    assert "--baseline-sd" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample-size", "--baseline-rate", "3", "--lift", "0.1"])
