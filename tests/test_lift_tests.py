"""Lift tests: input checks, calibration of the ad-ROI model, the power calculation and
the next experiment (models/lift_tests.py, models/ad_roi.py), and the generator's
lift tests (storepulse/sample_data/lift_tests.py)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from models import ad_roi, lift_tests
from models.adstock import Carryover

START = date(2024, 1, 1)
NOISE_OWN = 0.08
RIDGE_ONLY = ad_roi.AdRoiSettings(methods=("ridge",), n_jobs=1, seed=3)


def _test_row(**overrides) -> dict:
    row = {
        "store_id": "s",
        "channel": "meta",
        "start_date": date(2024, 3, 1),
        "end_date": date(2024, 3, 28),
        "test_spend_usd": 10_000.0,
        "incremental_revenue_usd": 25_000.0,
        "std_error_usd": 5_000.0,
        "scope": "total",
        "source": "meta_conversion_lift",
    }
    return {**row, **overrides}


# --- input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"end_date": date(2024, 2, 1)}, "end_date 2024-02-01 is before start_date"),
        ({"std_error_usd": -3.0}, "std_error_usd must be a positive number"),
        ({"std_error_usd": 0.0}, "std_error_usd must be a positive number"),
        ({"test_spend_usd": None}, "test_spend_usd must be a positive number"),
        ({"scope": "lifetime"}, "scope 'lifetime' is not 'immediate' or 'total'"),
        ({"incremental_revenue_usd": float("nan")}, "incremental_revenue_usd must be a number"),
        ({"channel": None}, "channel is empty"),
    ],
)
def test_bad_lift_test_rows_raise_errors_that_name_the_row(overrides, message):
    frame = pl.DataFrame([_test_row(), _test_row(**overrides)])
    with pytest.raises(ValueError, match="lift_tests row 2") as error:
        lift_tests.validate_lift_tests(frame)
    assert message in str(error.value)


def test_missing_lift_test_columns_are_named():
    frame = pl.DataFrame([_test_row()]).drop("std_error_usd", "scope")
    with pytest.raises(ValueError, match="missing column\\(s\\) std_error_usd, scope"):
        lift_tests.validate_lift_tests(frame)


def test_prepared_tests_widen_errors_and_say_why_a_test_is_not_used():
    dates = [START + timedelta(days=i) for i in range(400)]
    spend = {"meta": np.full(400, 500.0)}
    as_of = dates[-1] + timedelta(days=1)
    frame = lift_tests.validate_lift_tests(
        pl.DataFrame(
            [
                _test_row(),  # 28 days of 500/day = 14,000: tested spend 10,000 is in the band
                _test_row(channel="tiktok"),
                _test_row(start_date=date(2023, 6, 1), end_date=date(2023, 6, 20)),
                _test_row(incremental_revenue_usd=-20_000.0),
                _test_row(
                    start_date=date(2024, 3, 1), end_date=date(2024, 3, 7), test_spend_usd=3_000.0
                ),
                _test_row(test_spend_usd=1_000.0),  # covered a small part of the channel
            ]
        )
    )
    no_transfer = lift_tests.LiftTestRules(transfer=0.0)
    prepared = lift_tests.prepare_tests(frame, dates, spend, as_of, no_transfer)
    assert [t.status for t in prepared] == [
        "used",
        "unknown_channel",
        "outside_history",
        "negative_significant",
        "used",
        "used",
    ]
    used, short, partial = prepared[0], prepared[4], prepared[5]
    age = (as_of - date(2024, 3, 28)).days / 365.25
    assert used.effective_std_error_usd == pytest.approx(5_000 * (1 + 0.25 * age))
    assert used.count_stop == used.stop + 60  # 'total' counts the carry-out
    assert used.spend_ratio == pytest.approx(10_000 / 14_000)
    # a 7-day test: sqrt(14 / 7) wider (besides its age)
    short_age = (as_of - date(2024, 3, 7)).days / 365.25
    assert short.effective_std_error_usd == pytest.approx(
        5_000 * (1 + 0.25 * short_age) * np.sqrt(2)
    )
    assert "only 7 days" in short.note
    assert partial.effective_std_error_usd > 2 * used.effective_std_error_usd
    assert "spend is 7% of the channel" in partial.note
    assert "significantly negative" in prepared[3].note
    # by default a window's lift also carries the error of transferring it to the whole
    # history (15 % of the lift)
    default = lift_tests.prepare_tests(frame, dates, spend, as_of)[0]
    assert default.effective_std_error_usd == pytest.approx(
        np.hypot(5_000, 0.15 * 25_000) * (1 + 0.25 * age)
    )


# --- power calculation and the value of a test ------------------------------------------------


@pytest.mark.parametrize(("holdout", "days"), [(0.1, 14), (0.3, 28), (0.5, 42)])
def test_holdout_std_error_matches_a_simulated_test(holdout, days):
    """Simulate the test itself: each day's revenue comes from 400 audience cells with
    independent noise (day sd as given); a random `holdout` share of cells sees no ads;
    the lift for the whole audience is estimated as Y_treated / (1 - h) - Y_held / h."""
    rng = np.random.default_rng(0)
    day_sd, cells, lift_per_day = 2_000.0, 400, 1_500.0
    cell_sd = day_sd / np.sqrt(cells)
    estimates = []
    for _ in range(2_000):
        held = rng.random(cells) < holdout
        share = held.mean()
        revenue = 10_000 / cells + rng.normal(0.0, cell_sd, (days, cells))
        revenue[:, ~held] += lift_per_day / cells
        treated_total, held_total = revenue[:, ~held].sum(), revenue[:, held].sum()
        estimates.append(treated_total / (1 - share) - held_total / share)
    simulated = float(np.std(estimates))
    expected = lift_tests.holdout_std_error(day_sd, days, holdout)
    assert simulated == pytest.approx(expected, rel=0.1)
    assert float(np.mean(estimates)) == pytest.approx(lift_per_day * days, rel=0.05)


def test_holdout_std_error_rejects_impossible_designs():
    with pytest.raises(ValueError, match="holdout_share"):
        lift_tests.holdout_std_error(100.0, 14, 0.0)
    with pytest.raises(ValueError, match="duration_days"):
        lift_tests.holdout_std_error(100.0, 0, 0.2)


def test_a_sharper_test_is_worth_more_and_never_more_than_perfect_information():
    """Two decisions: shift budget to channel A or not. Half the posterior says A
    returns 1 (shift loses), half says 3 (shift gains)."""
    rng = np.random.default_rng(1)
    roas = np.where(rng.random(4_000) < 0.5, 1.0, 3.0) + rng.normal(0.0, 0.1, 4_000)
    value = np.column_stack([np.zeros(roas.size), (roas - 2.0) * 1_000.0])
    lift = roas * 10_000.0
    sharp, evpi = lift_tests.expected_value_of_test(value, lift, 2_000.0, rng)
    blunt, _ = lift_tests.expected_value_of_test(value, lift, 40_000.0, rng)
    assert evpi == pytest.approx(500.0, rel=0.1)  # E[max(0, (roas - 2) 1000)]
    assert blunt < sharp <= evpi + 1e-9
    assert sharp > 0.9 * evpi
    # with the budget plan's rule (move only on a clear gain, else keep = column 0) the
    # uncertain shift is not taken without the test, and a sharp test unlocks it
    ruled, _ = lift_tests.expected_value_of_test(value, lift, 2_000.0, rng, 0, 1 / 3)
    assert ruled == pytest.approx(500.0, rel=0.15)


# --- calibration on a world with a correlated pair ---------------------------------------------


def _pair_world(seed: int = 7, n: int = 540):
    """Two channels whose spend moves together (rho ~0.97) with very different true
    returns (search 4, social 1), and an independent third one."""
    rng = np.random.default_rng(seed)
    dates = [START + timedelta(days=i) for i in range(n)]
    t = np.arange(n)
    weekly = np.array([1.05, 1.0, 0.98, 0.97, 1.0, 1.05, 1.02])[t % 7]
    baseline = 20_000 * (1 + 0.1 * t / 365) * weekly
    steps = np.repeat(rng.lognormal(0.0, 0.5, n // 14 + 1), 14)[:n]
    spend = {
        "search": 1_500 * steps * rng.lognormal(0.0, NOISE_OWN, n),
        "social": 1_500 * steps * rng.lognormal(0.0, NOISE_OWN, n),
        "video": 1_000 * np.repeat(rng.lognormal(0.0, 0.6, n // 21 + 1), 21)[:n],
    }
    true_roas = {"search": 4.0, "social": 1.0, "video": 2.5}
    kernel = Carryover("geometric", 0.4)
    response = {c: true_roas[c] * kernel.apply(s) for c, s in spend.items()}
    revenue = (baseline + sum(response.values())) * rng.lognormal(-0.0018, 0.06, n)
    frames = [
        pl.DataFrame({"store_id": "s", "date": dates, "channel": c, "spend_usd": s})
        for c, s in spend.items()
    ]
    return {
        "dates": dates,
        "spend": spend,
        "response": response,
        "true_roas": {c: response[c].sum() / spend[c].sum() for c in spend},
        "daily_revenue": pl.DataFrame({"store_id": "s", "date": dates, "revenue_usd": revenue}),
        "daily_spend": pl.concat(frames),
    }


def _lift_test(world, channel: str, first: int, days: int, se: float) -> dict:
    """A precise holdout test (scope 'total') with its exact true lift as the measurement."""
    spend = world["spend"][channel]
    held = spend.copy()
    held[first : first + days] = 0.0
    kernel = Carryover("geometric", 0.4)
    roas = world["true_roas"][channel]
    true_lift = float(roas * (kernel.apply(spend) - kernel.apply(held))[first:].sum())
    return _test_row(
        channel=channel,
        start_date=world["dates"][first],
        end_date=world["dates"][first + days - 1],
        test_spend_usd=float(spend[first : first + days].sum()),
        incremental_revenue_usd=true_lift,
        std_error_usd=se,
    )


@pytest.fixture(scope="module")
def pair_fits():
    world = _pair_world()
    args = (world["daily_revenue"], world["daily_spend"])
    without = ad_roi.fit(*args, RIDGE_ONLY)
    tests = pl.DataFrame(
        [
            _lift_test(world, "search", 420, 28, 4_000.0),
            _lift_test(world, "social", 300, 28, 4_000.0),
        ]
    )
    with_tests = ad_roi.fit(*args, RIDGE_ONLY, lift_tests=tests)
    roi_without = ad_roi.channel_roi(without, *args, only_approved_stores=False)
    roi_with = ad_roi.channel_roi(with_tests, *args, only_approved_stores=False)
    return world, without, with_tests, roi_without, roi_with


def _overall(roi: pl.DataFrame) -> dict[str, dict]:
    return {r["channel"]: r for r in roi.filter(pl.col("period") == "all").iter_rows(named=True)}


def test_correlated_pair_is_flagged_and_its_sum_reported_without_tests(pair_fits):
    world, _, _, roi, _ = pair_fits
    rows = _overall(roi)
    assert np.corrcoef(world["spend"]["search"], world["spend"]["social"])[0, 1] > 0.9
    flagged = [c for c in ("search", "social") if not rows[c]["identified"]]
    assert flagged, "the pair should not get a confident split"
    row = rows[flagged[0]]
    partner = row["confounded_with"]
    assert partner in ("search", "social") and partner != flagged[0]
    truth = world["true_roas"]
    spend = {c: world["spend"][c].sum() for c in ("search", "social")}
    pair_roas = sum(truth[c] * spend[c] for c in spend) / sum(spend.values())
    # the sum is what the data know: its interval holds the truth and is narrower
    # (relative to its level) than the flagged channel's own
    assert row["group_roas_p10"] <= pair_roas <= row["group_roas_p90"]
    group_width = (row["group_roas_p90"] - row["group_roas_p10"]) / row["group_roas"]
    own_width = (row["incremental_roas_p90"] - row["incremental_roas_p10"]) / max(
        row["incremental_roas"], 1.0
    )
    assert group_width < own_width
    # the independent channel is identified
    assert rows["video"]["identified"]


def test_lift_tests_split_the_pair_right_and_both_numbers_are_shown(pair_fits):
    world, _, model, roi_without, roi_with = pair_fits
    truth = world["true_roas"]
    before, after = _overall(roi_without), _overall(roi_with)
    for c in ("search", "social"):
        assert after[c]["lift_tests_used"] == 1
        assert after[c]["identified"]
        assert after[c]["incremental_roas"] == pytest.approx(truth[c], rel=0.2)
        # uncalibrated side by side: the same as the fit without tests
        assert after[c]["uncalibrated_roas"] == pytest.approx(before[c]["incremental_roas"])
    error_after = sum(abs(after[c]["incremental_roas"] / truth[c] - 1) for c in truth)
    error_before = sum(abs(before[c]["incremental_roas"] / truth[c] - 1) for c in truth)
    assert error_after < error_before
    report = ad_roi.lift_test_report(model)
    assert report["status"].to_list() == ["used", "used"]
    # after calibration the model agrees with both tests
    assert (report["calibrated_z_score"].abs() < 1).all()


def test_calibration_pulls_a_wrong_split_toward_the_test(pair_fits):
    """Without tests the data credit social (true ROAS 1) with far too much of the pair's
    revenue: one test on social alone pulls social down to the truth and, through the
    pair's known sum, search up, so the split comes right."""
    world, without, _, _, _ = pair_fits
    args = (world["daily_revenue"], world["daily_spend"])
    truth = world["true_roas"]
    spend = {c: world["spend"][c].sum() for c in ("search", "social")}

    def social_share(rows: dict) -> float:
        revenue = {c: rows[c]["incremental_roas"] * spend[c] for c in spend}
        return revenue["social"] / sum(revenue.values())

    true_share = truth["social"] * spend["social"] / sum(truth[c] * spend[c] for c in spend)
    before = _overall(ad_roi.channel_roi(without, *args, only_approved_stores=False))
    assert before["social"]["incremental_roas"] > 1.5 * truth["social"]  # a wrong split
    row = _lift_test(world, "social", 300, 28, 3_000.0)
    model = ad_roi.fit(*args, RIDGE_ONLY, lift_tests=pl.DataFrame([row]))
    after = _overall(ad_roi.channel_roi(model, *args, only_approved_stores=False))
    assert after["social"]["incremental_roas"] == pytest.approx(truth["social"], rel=0.2)
    assert after["search"]["incremental_roas"] > before["search"]["incremental_roas"]
    assert abs(social_share(after) - true_share) < 0.5 * abs(social_share(before) - true_share)
    assert abs(social_share(after) - true_share) < 0.1
    assert after["search"]["lift_tests_used"] == 0 and after["social"]["lift_tests_used"] == 1


def test_significantly_negative_test_is_flagged_and_not_used(pair_fits):
    world, without, _, _, _ = pair_fits
    args = (world["daily_revenue"], world["daily_spend"])
    row = _lift_test(world, "search", 420, 28, 3_000.0)
    row["incremental_revenue_usd"] = -60_000.0
    model = ad_roi.fit(*args, RIDGE_ONLY, lift_tests=pl.DataFrame([row]))
    report = ad_roi.lift_test_report(model)
    assert report["status"].to_list() == ["negative_significant"]
    assert report["z_score"][0] < -2  # far from the model, and said so
    after = _overall(ad_roi.channel_roi(model, *args, only_approved_stores=False))
    before = _overall(ad_roi.channel_roi(without, *args, only_approved_stores=False))
    assert after["search"]["incremental_roas"] == pytest.approx(
        before["search"]["incremental_roas"]
    )
    assert after["search"]["lift_tests_used"] == 0


def test_budget_plan_never_moves_an_unidentified_channel_and_lift_plan_proposes_a_test(pair_fits):
    world, model, _, roi, _ = pair_fits
    args = (world["daily_revenue"], world["daily_spend"])
    rows = _overall(roi)
    unidentified = {c for c, r in rows.items() if not r["identified"]}
    plan = ad_roi.budget_plan(model, *args, roi)
    for r in plan.iter_rows(named=True):
        if r["channel"] in unidentified:
            assert r["spend_multiplier"] == 1.0
    assert plan["recommended_spend_usd"].sum() == pytest.approx(plan["current_spend_usd"].sum())
    proposal = ad_roi.lift_plan(model, *args, roi=roi)
    assert proposal.height == 1
    row = proposal.row(0, named=True)
    assert set(proposal.columns) >= {
        "store_id", "channel", "reason", "holdout_share", "duration_days",
        "expected_std_error", "expected_value_usd",
    }  # fmt: skip
    assert row["holdout_share"] in model.config.lift_plan_holdout_shares
    assert row["duration_days"] in model.config.lift_plan_durations
    noise = model.stores["s"].regression.daily_noise_usd
    assert row["expected_std_error"] == pytest.approx(
        lift_tests.holdout_std_error(noise, row["duration_days"], row["holdout_share"])
    )
    assert row["expected_value_usd"] >= 0
    assert row["channel"] in row["reason"] and "-day test holding out" in row["reason"]


# --- the generator's lift tests ------------------------------------------------------------------


def test_generator_lift_tests_measure_the_true_lift_with_honest_noise():
    from storepulse.sample_data.lift_tests import LANDING_SCHEMA, draw_lift_tests
    from storepulse.sample_data.truth import true_incremental_revenue

    n = 730
    rng = np.random.default_rng(0)
    params = {
        "meta": {
            "adstock_decay": 0.5,
            "saturation_kind": "hill",
            "half_saturation_usd": 3_000.0,
            "hill_shape": 1.2,
            "max_daily_revenue_usd": 12_000.0,
        },
        "google": {
            "adstock_decay": 0.2,
            "saturation_kind": "exponential",
            "half_saturation_usd": 1_500.0,
            "hill_shape": None,
            "max_daily_revenue_usd": 6_000.0,
        },
    }
    params["tiktok"] = {**params["google"], "max_daily_revenue_usd": 1_000.0}  # a small one
    spend = {c: rng.lognormal(7.3, 0.4, n) for c in params}
    channels = {c: (params[c], spend[c]) for c in params}
    revenue = 30_000 + sum(true_incremental_revenue(params[c], spend[c]) for c in params)
    eur = np.full(n, 1.1)  # USD per EUR
    zs, rows, inconclusive = [], 0, 0
    for seed in range(60):
        landing, truth = draw_lift_tests(
            np.random.default_rng(seed), "s", START, channels, revenue, 55.0, "EUR", eur
        )
        assert landing.schema == pl.Schema(LANDING_SCHEMA)
        assert landing.height in (1, 2, 3) and landing.height == truth.height
        for land, true in zip(
            landing.iter_rows(named=True), truth.iter_rows(named=True), strict=True
        ):
            days = (land["end_date"] - land["start_date"]).days + 1
            assert 14 <= days <= 42 and 0.1 <= true["holdout_share"] <= 0.5
            assert land["currency"] == "EUR"
            assert land["incremental_revenue"] == pytest.approx(
                true["measured_lift_usd"] / 1.1, abs=0.01
            )
            if land["source"] == "google_geo":  # a 90 % interval instead of a standard error
                assert land["std_error"] is None
                se = (land["ci_high"] - land["ci_low"]) / (2 * 1.6449) * 1.1
            else:
                se = land["std_error"] * 1.1
            assert se == pytest.approx(true["std_error_usd"], rel=1e-3)
            zs.append((true["measured_lift_usd"] - true["true_lift_usd"]) / true["std_error_usd"])
            rows += 1
            inconclusive += true["inconclusive"]
    # measured = true + noise of the stated size; some tests are inconclusive, not all
    assert abs(np.mean(zs)) < 0.3 and 0.8 < np.std(zs) < 1.2
    assert 0 < inconclusive < rows
