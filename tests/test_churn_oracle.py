"""The sample-data generator's churn oracle: the truth's churn probability matches a
Monte Carlo of the generator's own purchase process, for one customer and for many, and
the drivers-only ceiling is calibrated and sits between the blind and the oracle."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest


def _simulate_process(n: int, seed: int, calendar: np.ndarray):
    """The generator's own purchase process (warped clock, dropout after every purchase,
    per-order cancellation) for n customers with heterogeneous drivers; returns the
    truth frame and every order (cancelled ones flagged)."""
    from storepulse.sample_data.customers import Arrivals, PurchaseBehaviour, simulate_purchases

    rng = np.random.default_rng(seed)
    acquisition = np.sort(rng.integers(0, 200, n))
    arrivals = Arrivals(acquisition, np.full(n, "organic", dtype=object))
    behaviour = PurchaseBehaviour(0.6, 6.0, 0.5, 0.6)
    shift = rng.normal(0.0, 0.6, n)
    history = simulate_purchases(rng, calendar, arrivals, behaviour, shift, 0.3 * shift)
    cancel_p = np.where(rng.random(n) < 0.3, 0.075, 0.025)
    cancelled = rng.random(history.order_customer.size) < cancel_p[history.order_customer]
    start = date(2025, 1, 1)
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    truth = pl.DataFrame(
        {
            "store_id": "s",
            "customer_id": ids,
            "purchase_rate_per_day": history.purchase_rate_per_day,
            "dropout_probability": history.dropout_probability,
            "cancel_probability": cancel_p,
            "purchase_rate_prior_mean": history.purchase_rate_prior_mean,
            "dropout_prior_mean": history.dropout_prior_mean,
            "acquisition_date": np.datetime64(start, "D") + acquisition,
        }
    )
    orders = pl.DataFrame(
        {
            "store_id": "s",
            "customer_id": ids[history.order_customer],
            "order_date": np.datetime64(start, "D") + history.order_day,
            "is_cancelled": cancelled,
        }
    )
    calendar_frame = pl.DataFrame(
        {
            "store_id": "s",
            "date": np.datetime64(start, "D") + np.arange(calendar.size),
            "demand_multiplier": calendar,
        }
    )
    return truth, orders, calendar_frame, start


def _returned(orders: pl.DataFrame, cutoff: date, horizon: int) -> pl.DataFrame:
    """customer_id of everyone with a valid order in [cutoff, cutoff + horizon)."""
    end = cutoff + timedelta(days=horizon)
    return (
        orders.filter(
            ~pl.col("is_cancelled")
            & (pl.col("order_date") >= cutoff)
            & (pl.col("order_date") < end)
        )
        .select("customer_id")
        .unique()
        .with_columns(returned=pl.lit(True))
    )


def _calibration_z(predicted: np.ndarray, churned: np.ndarray, bins: int = 10) -> float:
    """Largest |mean predicted - observed| over predicted-probability deciles, in standard errors."""
    order = np.argsort(predicted, kind="stable")
    worst = 0.0
    for part in np.array_split(order, bins):
        p = predicted[part]
        se = np.sqrt(max((p * (1 - p)).sum(), 1.0)) / part.size
        worst = max(worst, abs(p.mean() - churned[part].mean()) / se)
    return worst


def test_oracle_matches_a_monte_carlo_of_the_generator_process():
    """The oracle is calibrated on the generator's own process, bin by bin, including a
    Black-Friday-like peak inside the horizon; ignoring the warped clock is not."""
    from storepulse.sample_data.truth import oracle_churn_probability

    calendar = np.ones(400)
    calendar[280:294] = 4.0  # a x4 fortnight (Black Friday to Christmas) inside the horizon
    calendar[294:310] = 0.4  # and the slump after it
    calendar[150:160] = 2.5  # a peak shortly before the cutoff
    truth, orders, calendar_frame, start = _simulate_process(40_000, 11, calendar)
    cutoff, horizon = start + timedelta(days=250), 90
    oracle = oracle_churn_probability(
        truth, orders, cutoff, horizon, demand_calendar=calendar_frame
    )
    assert oracle.columns == ["store_id", "customer_id", "churn_probability"]
    returned = _returned(orders, cutoff, horizon)
    scored = oracle.join(returned, on="customer_id", how="left").with_columns(
        churned=(~pl.col("returned").fill_null(False)).cast(pl.Float64)
    )
    # Everyone acquired before the cutoff has a row.
    assert scored.height == truth.height
    predicted, churned = scored["churn_probability"].to_numpy(), scored["churned"].to_numpy()
    assert 0.05 < churned.mean() < 0.95
    assert abs(predicted.mean() - churned.mean()) < 0.01
    assert _calibration_z(predicted, churned) < 4.0
    # The same formula on plain days misses the x4 week: clearly miscalibrated.
    plain = oracle_churn_probability(truth, orders, cutoff, horizon).join(
        scored.select("customer_id", "churned"), on="customer_id"
    )
    assert _calibration_z(plain["churn_probability"].to_numpy(), churned) > 6.0


def test_oracle_single_customer_against_direct_simulation():
    """One customer type, last order on a known day: the oracle's P(churn) equals the
    frequency over many simulated histories with that same observed history."""
    from storepulse.sample_data.truth import oracle_churn_probability

    rng = np.random.default_rng(5)
    lam, p, c, h = 0.02, 0.3, 0.05, 60
    n = 400_000
    # Acquired at a uniform time in day 0; condition on no other order before day 100.
    w = rng.random(n)
    alive = rng.random(n) >= p
    nxt = w + rng.exponential(1.0 / lam, n)
    keep = ~alive | (nxt >= 100)  # observed history: the first order only
    alive, nxt = alive[keep], nxt[keep]
    churned = np.ones(alive.size, dtype=bool)
    t, live = nxt.copy(), alive.copy()
    while live.any():
        inside = live & (t < 100 + h)
        valid = inside & (rng.random(alive.size) >= c)
        churned[valid] = False
        live = inside & ~valid & (rng.random(alive.size) >= p)  # cancelled, then maybe dropout
        t = t + rng.exponential(1.0 / lam, alive.size)
    start = date(2025, 1, 1)
    truth = pl.DataFrame(
        {
            "store_id": ["s"],
            "customer_id": ["c"],
            "purchase_rate_per_day": [lam],
            "dropout_probability": [p],
            "cancel_probability": [c],
        }
    )
    orders = pl.DataFrame({"store_id": ["s"], "customer_id": ["c"], "order_date": [start]})
    oracle = oracle_churn_probability(truth, orders, start + timedelta(days=100), h)
    expected = float(churned.mean())
    assert oracle["churn_probability"][0] == pytest.approx(expected, abs=0.004)
    # Knowing the parameters but ignoring the history would be far off.
    assert abs((1 - (1 - p) * (1 - np.exp(-lam * h))) - expected) > 0.05


def test_driver_ceiling_is_calibrated_and_sits_between_blind_and_oracle():
    """The driver-aware ceiling (true driver effects, not the customer's own draws) is
    calibrated on the process, also for customers acquired before the orders start;
    it beats the same Bayes computation without the drivers and stays below the oracle."""
    from storepulse.sample_data.truth import (
        driver_ceiling_churn_probability,
        oracle_churn_probability,
    )

    calendar = np.ones(400)
    calendar[280:294] = 4.0
    truth, orders, calendar_frame, start = _simulate_process(20_000, 3, calendar)
    # The export window starts on day 100: earlier orders are not in the files.
    orders = orders.filter(pl.col("order_date") >= start + timedelta(days=100))
    process = pl.DataFrame(
        {
            "store_id": "s",
            "driver": ["gamma_shape", "beta_concentration"],
            "target": "process",
            "effect": [0.6, 0.6],
        }
    )
    cutoff, horizon = start + timedelta(days=250), 90
    kwargs = {"demand_calendar": calendar_frame, "churn_drivers": process, "n_draws": 400}
    ceiling = driver_ceiling_churn_probability(truth, orders, cutoff, horizon, **kwargs)
    blind_truth = truth.with_columns(
        purchase_rate_prior_mean=pl.lit(6.0 / 365.0), dropout_prior_mean=pl.lit(0.5)
    )
    blind = driver_ceiling_churn_probability(blind_truth, orders, cutoff, horizon, **kwargs)
    oracle = oracle_churn_probability(
        truth, orders, cutoff, horizon, demand_calendar=calendar_frame
    )
    returned = _returned(orders, cutoff, horizon)
    scored = (
        ceiling.join(blind.rename({"churn_probability": "blind"}), on=["store_id", "customer_id"])
        .join(oracle.rename({"churn_probability": "oracle"}), on=["store_id", "customer_id"])
        .join(truth.select("customer_id", "acquisition_date"), on="customer_id")
        .join(returned, on="customer_id", how="left")
        .with_columns(churned=(~pl.col("returned").fill_null(False)).cast(pl.Float64))
    )
    y = scored["churned"].to_numpy()
    earlier = (scored["acquisition_date"] < start + timedelta(days=100)).to_numpy()
    assert earlier.sum() > 500 and (~earlier).sum() > 500
    for part in (earlier, ~earlier):
        predicted = scored["churn_probability"].to_numpy()[part]
        assert abs(predicted.mean() - y[part].mean()) < 0.015
        assert _calibration_z(predicted, y[part]) < 4.0

    def brier(column: str) -> float:
        return float(np.mean((scored[column].to_numpy() - y) ** 2))

    assert brier("oracle") < brier("churn_probability") < brier("blind")
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, scored["churn_probability"]) < roc_auc_score(y, scored["oracle"])


def test_driver_ceiling_takes_a_store_that_opened_after_the_others():
    """A young store's window opens when it opened: its customers get a ceiling (it raised
    'orders before the demand calendar starts' before), and the old store's is unchanged."""
    from storepulse.sample_data.truth import driver_ceiling_churn_probability

    calendar = np.ones(400)
    truth, orders, calendar_frame, start = _simulate_process(2_000, 5, calendar)
    young = {"store_id": pl.lit("y")}
    shift = pl.duration(days=150)
    both_truth = pl.concat(
        [truth, truth.with_columns(**young, acquisition_date=pl.col("acquisition_date") + shift)]
    )
    both_orders = pl.concat(
        [orders, orders.with_columns(**young, order_date=pl.col("order_date") + shift)]
    )
    both_calendar = pl.concat(
        [calendar_frame, calendar_frame.with_columns(**young, date=pl.col("date") + shift)]
    )
    process = pl.DataFrame(
        {
            "store_id": ["s", "s", "y", "y"],
            "driver": ["gamma_shape", "beta_concentration"] * 2,
            "target": "process",
            "effect": 0.6,
        }
    )
    cutoff, horizon = start + timedelta(days=300), 90

    def ceiling(t, o, c):
        kwargs = {"demand_calendar": c, "churn_drivers": process, "n_draws": 200}
        return driver_ceiling_churn_probability(t, o, cutoff, horizon, **kwargs)

    both = ceiling(both_truth, both_orders, both_calendar)
    alone = ceiling(truth, orders, calendar_frame)
    young_rows = both.filter(pl.col("store_id") == "y")["churn_probability"]
    assert young_rows.len() > 1000 and young_rows.is_between(0, 1).all()
    assert both.filter(pl.col("store_id") == "s").equals(alone)
