"""Lift tests (conversion-lift studies, geo experiments, holdouts): checked, turned into
evidence for the ad-ROI model, and the next one planned.

A lift test says: holding out part of the audience from `channel` between
`start_date` and `end_date` (both included) showed `incremental_revenue_usd` of
revenue caused by `test_spend_usd` of spend, with standard error `std_error_usd`,
counted over the test window (`scope` 'immediate') or over the window and the
carry-out after it ('total'). The model's counterfactual for the same question is
its revenue with the channel's actual spend minus with that spend set to zero on
the test days, summed over the same days, scaled by test spend / the channel's spend
in the window (tests that cover part of a campaign report on that part).

The standard error is made honest before it is used (DESIGN §5):
- spend mismatch: a test whose spend is far from the channel's spend in the window
  (outside `mismatch_band` of it) covered part of the channel, whose return may not
  be the channel's: add `spend_mismatch` x |log ratio beyond the band| x |lift|;
- age: effects drift, so the error grows by `age_per_year` per year since the test;
- short windows: tests shorter than `short_window_days` (delivery ramp-up, novelty)
  scale the error by sqrt(short_window_days / days).
A result significantly below zero (z < `negative_z`) is flagged and not used: in this
model ads cannot remove revenue, so such a test says something is off with the test
(sign, currency, scope), which a person should look at.

Also here: the power calculation of a holdout test from a store's daily revenue noise,
and the expected value of the information a test would bring to the budget decision.
Pure functions; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

SCOPES = ("immediate", "total")
# What names one lift test wherever it is reported: store, channel, window, what it
# measured (SCOPES) and who ran it.
LIFT_TEST_ID_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "start_date": pl.Date,
    "end_date": pl.Date,
    "scope": pl.String,
    "source": pl.String,
}
LIFT_TEST_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "start_date": pl.Date,
    "end_date": pl.Date,
    "test_spend_usd": pl.Float64,
    "incremental_revenue_usd": pl.Float64,
    "std_error_usd": pl.Float64,
    "scope": pl.String,
    "source": pl.String,
}


@dataclass(frozen=True)
class LiftTestRules:
    """How a test's standard error is widened, and when a test is not used."""

    mismatch_band: tuple[float, float] = (0.5, 1.05)
    spend_mismatch: float = 0.5
    # A window's lift speaks of the channel's whole history only through the fitted
    # carryover and saturation: this share of the lift is added as that transfer's error.
    transfer: float = 0.15
    age_per_year: float = 0.25
    short_window_days: int = 14
    negative_z: float = -1.96


def validate_lift_tests(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with canonical types, or a ValueError naming the row and the fix.

    Upstream ingest quarantines bad rows; this guards the model against anything
    that slips through (or a caller that builds the frame by hand)."""
    missing = [c for c in LIFT_TEST_SCHEMA if c not in frame.columns]
    if missing:
        raise ValueError(
            f"lift_tests: missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(LIFT_TEST_SCHEMA)} (std_error_usd from a 90 % CI: (high - low) / 3.29)"
        )
    typed = frame.select(
        [pl.col(c).cast(t, strict=False).alias(c) for c, t in LIFT_TEST_SCHEMA.items()]
    )
    for i, row in enumerate(typed.iter_rows(named=True)):
        where = f"lift_tests row {i + 1} (store {row['store_id']!r}, channel {row['channel']!r})"
        for c in ("store_id", "channel", "start_date", "end_date", "scope"):
            if row[c] is None:
                raise ValueError(f"{where}: {c} is empty or unreadable; fill it in")
        if row["end_date"] < row["start_date"]:
            raise ValueError(
                f"{where}: end_date {row['end_date']} is before start_date "
                f"{row['start_date']}; swap or correct the dates"
            )
        if row["scope"] not in SCOPES:
            raise ValueError(
                f"{where}: scope {row['scope']!r} is not 'immediate' or 'total'; use "
                "'immediate' when the lift was counted over the test days only"
            )
        for c in ("test_spend_usd", "std_error_usd"):
            value = row[c]
            if value is None or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{where}: {c} must be a positive number, got {value!r}")
        lift = row["incremental_revenue_usd"]
        if lift is None or not math.isfinite(lift):
            raise ValueError(f"{where}: incremental_revenue_usd must be a number, got {lift!r}")
    return typed


@dataclass(frozen=True)
class PreparedTest:
    """A test placed on a store's day index, with its widened standard error."""

    row: dict
    start: int
    stop: int  # exclusive
    count_stop: int  # days counted: the window, or the window plus carry-out
    spend_ratio: float  # test spend / the channel's spend in the window
    effective_std_error_usd: float
    status: str  # 'used' or why not
    note: str


def prepare_tests(
    tests: pl.DataFrame,
    dates: list[date],
    spend: dict[str, np.ndarray],
    as_of: date,
    rules: LiftTestRules | None = None,
    carry_out_days: int = 60,
) -> list[PreparedTest]:
    """One store's tests on its day index. Every test comes back, with status 'used'
    or the reason it is not ('unknown_channel', 'outside_history', 'no_spend_in_window',
    'negative_significant')."""
    rules = rules or LiftTestRules()
    index = {d: i for i, d in enumerate(dates)}
    out = []
    for row in tests.iter_rows(named=True):
        start = index.get(row["start_date"])
        last = index.get(row["end_date"])
        channel = row["channel"]
        days = (row["end_date"] - row["start_date"]).days + 1
        unused = None  # (status, note) of a test that cannot be used
        if channel not in spend:
            unused = ("unknown_channel", f"no spend for {channel!r} in this store's ad data")
        elif start is None or last is None:
            unused = (
                "outside_history",
                f"the test window is not inside the modelled days {dates[0]}..{dates[-1]}",
            )
        else:
            window_spend = float(spend[channel][start : last + 1].sum())
            if window_spend <= 0:
                unused = (
                    "no_spend_in_window",
                    "the ad data show no spend on this channel during the test",
                )
        if unused is not None:
            status, note = unused
            out.append(
                PreparedTest(
                    row=row,
                    start=start or 0,
                    stop=(last or 0) + 1,
                    count_stop=(last or 0) + 1,
                    spend_ratio=float("nan"),
                    effective_std_error_usd=row["std_error_usd"],
                    status=status,
                    note=note,
                )
            )
            continue
        ratio = row["test_spend_usd"] / window_spend
        lift = row["incremental_revenue_usd"]
        se = row["std_error_usd"]
        low, high = rules.mismatch_band
        excess = abs(math.log(ratio / min(max(ratio, low), high)))
        se = math.hypot(se, rules.spend_mismatch * excess * abs(lift), rules.transfer * abs(lift))
        age_years = max((as_of - row["end_date"]).days, 0) / 365.25
        se *= 1 + rules.age_per_year * age_years
        if days < rules.short_window_days:
            se *= math.sqrt(rules.short_window_days / days)
        notes = []
        if excess > 0:
            notes.append(f"test spend is {ratio:.0%} of the channel's spend in the window")
        if age_years >= 0.5:
            notes.append(f"{age_years:.1f} years old")
        if days < rules.short_window_days:
            notes.append(f"only {days} days")
        status = "used"
        if lift / se < rules.negative_z:
            status = "negative_significant"
            notes.insert(
                0,
                "significantly negative: ads cannot remove revenue in this model, so the "
                "test is not used; check its sign, currency and scope",
            )
        count_stop = last + 1 + (carry_out_days if row["scope"] == "total" else 0)
        out.append(
            PreparedTest(
                row=row,
                start=start,
                stop=last + 1,
                count_stop=count_stop,
                spend_ratio=ratio,
                effective_std_error_usd=se,
                status=status,
                note="; ".join(notes),
            )
        )
    return out


def z_score(measured: float, std_error: float, model_lift: np.ndarray) -> float:
    """How many standard deviations the measured lift is from the model's, counting
    both the test's error and the model's own uncertainty."""
    spread = math.sqrt(std_error**2 + float(np.var(model_lift)))
    return (measured - float(np.mean(model_lift))) / spread


# --------------------------------------------------------------------------- planning


def holdout_std_error(daily_noise_usd: float, duration_days: int, holdout_share: float) -> float:
    """Standard error (USD) of the lift a holdout test measures, from the store's daily
    revenue noise.

    The test compares the treated share (1 - h) of the audience with the held-out
    share h; the lift for the whole audience is estimated as Y_treated / (1 - h) -
    Y_holdout / h. If a day's revenue noise (variance s^2) splits in proportion to
    audience size and days are independent, over d days:
        Var = d s^2 (1 - h) / (1 - h)^2 + d s^2 h / h^2 = d s^2 / (h (1 - h)).
    The store's residual noise also holds shocks that hit both groups alike and
    cancel in a real test, so this errs on the wide side."""
    if not 0 < holdout_share < 1:
        raise ValueError(f"holdout_share must be between 0 and 1, got {holdout_share}")
    if duration_days <= 0:
        raise ValueError(f"duration_days must be positive, got {duration_days}")
    return daily_noise_usd * math.sqrt(duration_days / (holdout_share * (1 - holdout_share)))


def expected_value_of_test(
    value: np.ndarray,
    lift: np.ndarray,
    std_error: float,
    rng: np.random.Generator,
    keep: int | None = None,
    min_p10_share: float = 0.0,
) -> tuple[float, float]:
    """Expected value of the information (USD) a test brings to a decision, and the
    expected value of perfect information, by preposterior analysis over posterior
    samples.

    value[s, a]: revenue change of decision a if sample s were the truth.
    lift[s]: the lift the test would measure if sample s were the truth.
    The decision rule is the budget plan's: take the decision best on average, but
    only when its gain is clear (p10 over the samples above `min_p10_share` of its
    mean), else `keep` (the decision that changes nothing). Without the test the rule
    sees the current samples. With it, each sample in turn plays the truth, draws a
    measurement (lift + noise), the samples are reweighted by that measurement's
    likelihood, and the rule's decision under the reweighted samples is judged under
    the truth. EVSI is the mean gain over deciding without the test."""
    n = lift.size
    uniform = np.full((1, n), 1.0 / n)
    prior_choice = _rule(uniform, value, keep, min_p10_share)[0]
    measured = lift + rng.normal(0.0, std_error, n)
    log_like = -0.5 * ((measured[:, None] - lift[None, :]) / std_error) ** 2
    weights = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    choices = _rule(weights, value, keep, min_p10_share)
    truth = np.arange(n)
    evsi = float(np.mean(value[truth, choices] - value[truth, prior_choice]))
    perfect = value.max(axis=1) if keep is None else np.maximum(value.max(axis=1), value[:, keep])
    evpi = float(np.mean(perfect - value[:, prior_choice]))
    return max(evsi, 0.0), max(evpi, 0.0)


def _rule(weights: np.ndarray, value: np.ndarray, keep: int | None, share: float) -> np.ndarray:
    """Per row of weights (a posterior over the samples): the decision taken."""
    means = weights @ value
    best = np.argmax(means, axis=1)
    if keep is None:
        return best
    out = best.copy()
    for i, a in enumerate(best):
        gain = means[i, a] - means[i, keep]
        if gain <= 0:
            out[i] = keep
            continue
        diff = value[:, a] - value[:, keep]
        order = np.argsort(diff)
        cumulative = np.cumsum(weights[i, order])
        p10 = diff[order][min(np.searchsorted(cumulative, 0.1), diff.size - 1)]
        if p10 <= share * gain:
            out[i] = keep
    return out


LIFT_PLAN_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "reason": pl.String,
    "holdout_share": pl.Float64,
    "duration_days": pl.Int64,
    "expected_std_error": pl.Float64,
    "expected_value_usd": pl.Float64,
    "expected_lift_usd": pl.Float64,
    "expected_cost_usd": pl.Float64,
    "value_of_perfect_information_usd": pl.Float64,
    "model_version": pl.String,
}
