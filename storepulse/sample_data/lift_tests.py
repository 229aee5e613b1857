"""Lift tests an advertising store ran: conversion-lift studies and geo holdouts.

SAMPLE_DATA.md: advertising stores ran 1-3 conversion-lift or geo-holdout studies over
the history (Meta and Google most often, 2-6 weeks each, 10-50 % holdout). The
measured incremental revenue is the true lift over the window plus sampling noise
matching the test's size; the standard error is reported with it, as the platforms
do, and some tests are inconclusive (interval spans zero).

The true lift of a test is exact: the channel's true response (sample_data.truth)
to its actual spend minus to the same spend with the test days set to zero, summed
over the test days ('immediate', what a conversion-lift study counts) or over the test
days and the carry-out after them ('total', a geo experiment with a cool-down). A
study reports on its treated audience: spend and lift are the (1 - holdout) share of
the channel's.

Sampling noise: orders arrive one by one, so a day's revenue varies by about
revenue x order value x (1 + cv^2) (a compound Poisson). The test compares the treated
share (1 - h) with the held-out share h over its days; for the whole audience
Var = sum(day variance) / (h (1 - h)), scaled to the treated share.

`draw_lift_tests` returns the landing rows (DESIGN §3 `lift_tests`, in the store's
currency; Meta reports a standard error, Google a 90 % interval) and the truth rows.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from models.lift_tests import LIFT_TEST_ID_SCHEMA

from .calendar import black_friday
from .truth import true_incremental_revenue

SOURCE = {"meta": "meta_conversion_lift", "google": "google_geo"}
# Which channels merchants test: Meta and Google most often.
TEST_PROPENSITY = {"meta": 0.45, "google": 0.35, "tiktok": 0.15, "pinterest": 0.05}
DURATIONS = (14, 21, 28, 35, 42)
ORDER_VALUE_CV = 0.8  # spread of order values around their mean
Z90 = 1.6449

LANDING_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "start_date": pl.Date,
    "end_date": pl.Date,
    "currency": pl.String,
    "test_spend": pl.Float64,
    "incremental_revenue": pl.Float64,
    "std_error": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "scope": pl.String,
    "source": pl.String,
}
TRUTH_SCHEMA = {
    **LIFT_TEST_ID_SCHEMA,
    "holdout_share": pl.Float64,
    "test_spend_usd": pl.Float64,
    "true_lift_usd": pl.Float64,
    "measured_lift_usd": pl.Float64,
    "std_error_usd": pl.Float64,
    "inconclusive": pl.Boolean,
}


def lift_test_rng(seed: np.random.SeedSequence) -> np.random.Generator:
    """A stream of its own for a store's lift tests, so drawing them changes nothing
    else the generator draws from the store's seed."""
    return np.random.default_rng(
        np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, 1414))
    )


def true_lift(params: dict, spend_usd: np.ndarray, start: int, stop: int, scope: str) -> float:
    """USD the channel's spend on days [start, stop) caused, over those days
    ('immediate') or those days and every later one ('total')."""
    held = spend_usd.copy()
    held[start:stop] = 0.0
    diff = true_incremental_revenue(params, spend_usd) - true_incremental_revenue(params, held)
    return float(diff[start:stop].sum() if scope == "immediate" else diff[start:].sum())


def draw_lift_tests(
    rng: np.random.Generator,
    store_id: str,
    start: date,
    channels: dict[str, tuple[dict, np.ndarray]],
    daily_revenue_usd: np.ndarray,
    order_value_usd: float,
    currency: str,
    usd_per_unit: np.ndarray,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """1-3 lift tests of one advertising store: (landing rows, truth rows).

    channels: per paid channel, (its true response parameters as in
    `_truth/channels.csv`, its daily spend in USD). daily_revenue_usd: the store's
    realised daily revenue (sets the tests' noise). usd_per_unit: the store
    currency's daily rate (money is reported in the store's currency)."""
    names = [c for c in channels if channels[c][1].sum() > 0]
    if not names:
        return pl.DataFrame(schema=LANDING_SCHEMA), pl.DataFrame(schema=TRUTH_SCHEMA)
    n = daily_revenue_usd.size
    weights = np.array([TEST_PROPENSITY.get(c, 0.05) for c in names])
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    order = list(
        rng.choice(
            len(names), size=min(count, len(names)), replace=False, p=weights / weights.sum()
        )
    )
    while len(order) < count:  # a single-channel store tests its channel again
        order.append(order[-1])
    bf_days = {(black_friday(y) - start).days for y in range(start.year, start.year + n // 365 + 2)}
    landing, truth = [], []
    for index in order:
        channel = names[int(index)]
        params, spend = channels[channel]
        days = int(rng.choice(DURATIONS))
        holdout = float(np.round(rng.uniform(0.1, 0.5), 2))
        source = SOURCE.get(channel, "holdout")
        scope = "immediate" if source == "meta_conversion_lift" else "total"
        first = _window(rng, spend, days, n, bf_days)
        if first is None:
            continue
        stop = first + days
        full_lift = true_lift(params, spend, first, stop, scope)
        day_variance = np.maximum(daily_revenue_usd[first:stop], 0.0) * order_value_usd
        variance = day_variance.sum() * (1 + ORDER_VALUE_CV**2) / (holdout * (1 - holdout))
        treated = 1.0 - holdout
        se = float(np.sqrt(variance)) * treated
        lift = full_lift * treated
        measured = lift + float(rng.normal(0.0, se))
        test_spend = float(spend[first:stop].sum()) * treated
        rate = float(usd_per_unit[min(stop - 1, usd_per_unit.size - 1)])
        row = {
            "store_id": store_id,
            "channel": channel,
            "start_date": start + timedelta(days=first),
            "end_date": start + timedelta(days=stop - 1),
            "currency": currency,
            "test_spend": round(test_spend / rate, 2),
            "incremental_revenue": round(measured / rate, 2),
            "std_error": None,
            "ci_low": None,
            "ci_high": None,
            "scope": scope,
            "source": source,
        }
        if source == "google_geo":  # Google reports a 90 % interval
            row["ci_low"] = round((measured - Z90 * se) / rate, 2)
            row["ci_high"] = round((measured + Z90 * se) / rate, 2)
        else:
            row["std_error"] = round(se / rate, 2)
        landing.append(row)
        truth.append(
            {
                "store_id": store_id,
                "channel": channel,
                "start_date": row["start_date"],
                "end_date": row["end_date"],
                "scope": scope,
                "source": source,
                "holdout_share": holdout,
                "test_spend_usd": test_spend,
                "true_lift_usd": lift,
                "measured_lift_usd": measured,
                "std_error_usd": se,
                "inconclusive": bool(abs(measured) < Z90 * se),
            }
        )
    return (
        pl.DataFrame(landing, schema=LANDING_SCHEMA),
        pl.DataFrame(truth, schema=TRUTH_SCHEMA),
    )


def _window(
    rng: np.random.Generator, spend: np.ndarray, days: int, n: int, bf_days: set[int]
) -> int | None:
    """A start day: the channel spends on most test days, the window is over at least
    two weeks before the export ends (results take time) and avoids Black Friday
    week (merchants do not hold out their biggest week)."""
    latest = n - days - 14
    if latest <= 30:
        return None
    for _ in range(200):
        first = int(rng.integers(30, latest))
        if any(first - 7 <= bf < first + days + 7 for bf in bf_days):
            continue
        if (spend[first : first + days] > 0).mean() >= 0.7:
            return first
    return None
