"""The generator's ground truth: the true media response and a loader for `_truth/`.

`true_incremental_revenue` is the exact function the generator used to decide
how many customers each paid channel brought in on each day, so a test can ask
whether a budget plan's claimed uplift is real.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from .customers import MAX_PURCHASES_PER_YEAR
from .experiments import TRUTH_SCHEMA as EXPERIMENT_TRUTH
from .partners import TRUTH_SCHEMAS as PARTNER_TRUTH
from .risky_orders import TRUTH_SCHEMA as RISKY_TRUTH

TRUTH_DIR = "_truth"
MAX_RATE = MAX_PURCHASES_PER_YEAR / 365.0


def geometric_adstock(daily_spend: np.ndarray, decay: float) -> np.ndarray:
    """carry-over: adstock[t] = spend[t] + decay * adstock[t-1]."""
    spend = np.asarray(daily_spend, dtype=float)
    out = np.empty_like(spend)
    carry = 0.0
    for t, value in enumerate(spend):
        carry = value + decay * carry
        out[t] = carry
    return out


def saturation(
    adstocked: np.ndarray, kind: str, half_saturation: float, hill_shape: float
) -> np.ndarray:
    """Share of the channel's maximum daily response reached at this adstocked spend (0..1)."""
    x = np.maximum(np.asarray(adstocked, dtype=float), 0.0) / half_saturation
    if kind == "hill":
        powered = x**hill_shape
        return powered / (1.0 + powered)
    if kind == "exponential":
        # Scaled so that x = 1 (the half-saturation point) gives exactly 0.5, like the Hill curve.
        return 1.0 - np.exp(-np.log(2.0) * x)
    raise ValueError(f"unknown saturation kind {kind!r}; expected 'hill' or 'exponential'")


def true_incremental_revenue(channel_params: dict, daily_spend_usd: np.ndarray) -> np.ndarray:
    """True incremental revenue (USD) per day caused by a channel's daily spend (USD).

    channel_params is one row of `_truth/channels.csv` as a dict: adstock_decay,
    saturation_kind ('hill' | 'exponential'), half_saturation_usd, hill_shape
    (ignored for exponential) and max_daily_revenue_usd. Spend before the first
    element is taken as zero.
    """
    adstocked = geometric_adstock(daily_spend_usd, float(channel_params["adstock_decay"]))
    hill_shape = channel_params.get("hill_shape")
    share = saturation(
        adstocked,
        str(channel_params["saturation_kind"]),
        float(channel_params["half_saturation_usd"]),
        float(hill_shape) if hill_shape is not None and hill_shape == hill_shape else 1.0,
    )
    return float(channel_params["max_daily_revenue_usd"]) * share


TRUTH_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "customers": {
        "store_id": pl.String, "customer_id": pl.String, "email": pl.String,
        "acquisition_date": pl.Date, "acquisition_channel": pl.String,
        "purchase_rate_per_day": pl.Float64, "dropout_probability": pl.Float64,
        "cancel_probability": pl.Float64, "purchase_rate_prior_mean": pl.Float64,
        "dropout_prior_mean": pl.Float64, "dropout_date": pl.Date, "is_high_value": pl.Boolean,
    },
    "churn_drivers": {
        "store_id": pl.String, "driver": pl.String, "target": pl.String, "effect": pl.Float64,
    },
    "demand_calendar": {
        "store_id": pl.String, "date": pl.Date, "demand_multiplier": pl.Float64,
    },
    "channels": {
        "store_id": pl.String, "channel": pl.String, "adstock_decay": pl.Float64,
        "saturation_kind": pl.String, "half_saturation_usd": pl.Float64, "hill_shape": pl.Float64,
        "max_daily_revenue_usd": pl.Float64, "platform_over_credit": pl.Float64,
        "total_spend_usd": pl.Float64, "total_incremental_revenue_usd": pl.Float64, "true_roas": pl.Float64,
        "first_order_roas": pl.Float64, "roas_with_30d_repeats": pl.Float64,
    },
    "channel_daily": {
        "store_id": pl.String, "date": pl.Date, "channel": pl.String, "spend_usd": pl.Float64,
        "adstocked_spend_usd": pl.Float64, "incremental_revenue_usd": pl.Float64,
    },
    "sku_demand": {
        "store_id": pl.String, "sku": pl.String, "date": pl.Date, "expected_units": pl.Float64,
        "in_stock": pl.Boolean,
    },
    "lift_tests": {
        "store_id": pl.String, "channel": pl.String, "start_date": pl.Date, "end_date": pl.Date,
        "scope": pl.String, "source": pl.String, "holdout_share": pl.Float64,
        "test_spend_usd": pl.Float64, "true_lift_usd": pl.Float64,
        "measured_lift_usd": pl.Float64, "std_error_usd": pl.Float64, "inconclusive": pl.Boolean,
    },
    "dirt": {
        "store_id": pl.String, "kind": pl.String, "file": pl.String, "row_number": pl.Int64,
        "description": pl.String,
    },
    # Growth levers (growth.py): order ids as the landing files name them.
    **PARTNER_TRUTH,
    "experiments": EXPERIMENT_TRUTH,
    "risky_orders": RISKY_TRUTH,
}  # fmt: skip


def load_truth(out: Path | str) -> dict[str, pl.DataFrame]:
    """Read every `_truth/*.csv` of a generated folder into typed polars frames, keyed by name."""
    truth_dir = Path(out) / TRUTH_DIR
    frames = {}
    for name, schema in TRUTH_SCHEMAS.items():
        path = truth_dir / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; regenerate with storepulse sample-data")
        frames[name] = pl.read_csv(path, schema=schema)
    return frames


def _clock_positions(
    demand_calendar: pl.DataFrame | None, store_ids: np.ndarray, days: np.ndarray
) -> np.ndarray:
    """Warped time at the start of each (store, date): the sum of the store's demand
    multipliers over the days before it (plain days when there is no calendar).

    `days` are dates as numpy datetime64[D]; dates past the calendar's end extend it
    with multiplier 1.
    """
    days = days.astype("datetime64[D]")
    if demand_calendar is None or demand_calendar.is_empty():
        return (days - np.datetime64("2000-01-01")).astype(np.int64).astype(float)
    out = np.full(days.size, np.nan)
    for (store,), part in demand_calendar.sort("store_id", "date").group_by(
        "store_id", maintain_order=True
    ):
        mask = store_ids == store
        if not mask.any():
            continue
        first = np.datetime64(part["date"][0], "D")
        multiplier = part["demand_multiplier"].to_numpy()
        clock = np.concatenate([[0.0], np.cumsum(multiplier)])
        index = (days[mask] - first).astype(np.int64)
        if (index < 0).any():
            raise ValueError(f"store {store}: orders before the demand calendar starts")
        beyond = np.maximum(index - multiplier.size, 0)
        out[mask] = clock[np.minimum(index, multiplier.size)] + beyond
    if np.isnan(out).any():
        missing = sorted(set(store_ids[np.isnan(out)].tolist()))
        raise ValueError(f"demand_calendar has no rows for stores {missing}")
    return out


def oracle_churn_probability(
    truth_customers: pl.DataFrame,
    orders: pl.DataFrame,
    cutoff: date,
    horizon_days: int,
    *,
    demand_calendar: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Bayes-optimal P(no valid order in [cutoff, cutoff + horizon_days)) given each
    customer's order history before `cutoff` and their TRUE parameters.

    The generator's process (customers.simulate_purchases): purchases arrive as a
    Poisson process with rate `purchase_rate_per_day` on the store's warped clock
    (one unit = one ordinary day of demand, `_truth/demand_calendar.csv`); after
    every purchase, the first included, the customer leaves for good with
    probability `dropout_probability`; each order is cancelled with probability
    `cancel_probability`, and cancelled orders do not count as orders (as in
    models/churn.py). With w the warped time of the last order before the cutoff
    (uniform within its day), C the cutoff and H the horizon's warped length:

        P(alive) = (1-p) E[exp(-λ (C - w))] / ((1-p) E[exp(-λ (C - w))] + p)
        P(no valid order | alive) = exp(-λ q H) + (1 - exp(-λ q H)) c p / q,
            q = 1 - c (1 - p)  (a cancelled order may still be followed by a dropout)
        churn = 1 - P(alive) (1 - P(no valid order | alive)).

    This is the ceiling for any model (it knows λ and p but not the realised
    dropout date). `orders` needs store_id, customer_id, order_date and should hold
    every order (cancelled ones included: they were purchases of the process);
    customers without an order before the cutoff get no row. Without
    `demand_calendar` plain days are used, which is only approximate for generated
    data. Returns store_id, customer_id, churn_probability.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    last = (
        orders.lazy()
        .filter(pl.col("order_date").cast(pl.Date) < cutoff)
        .group_by("store_id", "customer_id")
        .agg(last_order_date=pl.col("order_date").cast(pl.Date).max())
        .collect()
    )
    params = ["purchase_rate_per_day", "dropout_probability"]
    has_cancel = "cancel_probability" in truth_customers.columns
    joined = last.join(
        truth_customers.select(
            "store_id", "customer_id", *params, *(["cancel_probability"] if has_cancel else [])
        ),
        on=["store_id", "customer_id"],
        how="inner",
    ).sort("store_id", "customer_id")
    if not has_cancel:
        joined = joined.with_columns(cancel_probability=pl.lit(0.0))
    stores = joined["store_id"].to_numpy()
    last_day = joined["last_order_date"].to_numpy().astype("datetime64[D]")
    cutoff_day = np.full(joined.height, np.datetime64(cutoff, "D"))
    a = _clock_positions(demand_calendar, stores, last_day)
    b = _clock_positions(demand_calendar, stores, last_day + 1)
    c_start = _clock_positions(demand_calendar, stores, cutoff_day)
    c_end = _clock_positions(demand_calendar, stores, cutoff_day + horizon_days)
    lam = joined["purchase_rate_per_day"].to_numpy()
    p = joined["dropout_probability"].to_numpy()
    c = joined["cancel_probability"].to_numpy()
    width = np.maximum(b - a, 1e-12)
    # E over w ~ U[a, b] of exp(-λ (C - w)) = exp(-λ (C - b)) (1 - exp(-λ width)) / (λ width)
    day_average = np.where(
        lam * width > 1e-9, -np.expm1(-lam * width) / np.maximum(lam * width, 1e-300), 1.0
    )
    survive = np.exp(-lam * (c_start - b)) * day_average
    alive_weight = (1.0 - p) * survive
    p_alive = alive_weight / (alive_weight + p)
    q = 1.0 - c * (1.0 - p)
    ends = -np.expm1(-lam * q * (c_end - c_start))  # P(an order or a cancel-then-dropout)
    p_order_if_alive = ends * (1.0 - c * p / q)
    churn = 1.0 - p_alive * p_order_if_alive
    return joined.select("store_id", "customer_id").with_columns(
        churn_probability=pl.Series(np.clip(churn, 0.0, 1.0))
    )


def driver_ceiling_churn_probability(
    truth_customers: pl.DataFrame,
    orders: pl.DataFrame,
    cutoff: date,
    horizon_days: int,
    *,
    demand_calendar: pl.DataFrame,
    churn_drivers: pl.DataFrame,
    n_draws: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """The best any model reading observables can do: Bayes P(churn) given the order
    history and each customer's PRIOR from the churn drivers (their true effects), but
    not the customer's own gamma/beta draws (which `oracle_churn_probability` knows).

    Per customer: purchase rate ~ Gamma(shape, mean = `purchase_rate_prior_mean`),
    dropout ~ Beta(mean `dropout_prior_mean`, concentration), both from
    `_truth/churn_drivers.csv` (target 'process'); the posterior given the history is
    integrated by importance sampling with `n_draws` prior draws. Customers acquired
    before the first order in `orders` (before the export window) are handled
    exactly too: alive at the first seen day's start with probability
    (1-p) exp(-λ p (S - a)). Monte-Carlo, so reproducible for a seed only.
    """
    process = (
        churn_drivers.filter(pl.col("target") == "process")
        .pivot(on="driver", index="store_id", values="effect")
        .select("store_id", "gamma_shape", "beta_concentration")
    )
    events = (
        orders.lazy()
        .with_columns(pl.col("order_date").cast(pl.Date))
        .filter(pl.col("order_date") < cutoff)
        .group_by("store_id", "customer_id")
        .agg(
            n=pl.len(),
            first_day=pl.col("order_date").min(),
            last_day=pl.col("order_date").max(),
        )
        .collect()
    )
    window_start = orders["order_date"].cast(pl.Date).min()
    frame = (
        events.join(truth_customers, on=["store_id", "customer_id"], how="inner")
        .join(process, on="store_id", how="inner")
        .sort("store_id", "customer_id")
    )
    stores = frame["store_id"].to_numpy()

    def clock(days: np.ndarray) -> np.ndarray:
        return _clock_positions(demand_calendar, stores, days.astype("datetime64[D]"))

    first = frame["first_day"].to_numpy().astype("datetime64[D]")
    last = frame["last_day"].to_numpy().astype("datetime64[D]")
    acquired = frame["acquisition_date"].to_numpy().astype("datetime64[D]")
    # The window opens with the data, or with the store when it opened later (a
    # young store's customers are all acquired inside its own window).
    start = np.full(frame.height, np.datetime64(window_start, "D"))
    if demand_calendar is not None and not demand_calendar.is_empty():
        opened = dict(demand_calendar.group_by("store_id").agg(pl.col("date").min()).iter_rows())
        store_start = np.array([np.datetime64(opened.get(s, window_start), "D") for s in stores])
        start = np.maximum(start, store_start)
    before_window = acquired < start
    cutoff_day = np.full(frame.height, np.datetime64(cutoff, "D"))
    w_first = (clock(first) + clock(first + 1)) / 2
    w_last = (clock(last) + clock(last + 1)) / 2
    c_start, c_end = clock(cutoff_day), clock(cutoff_day + horizon_days)
    window_clock = clock(start)
    pre_exposure = np.where(
        before_window, window_clock - (clock(acquired) + clock(acquired + 1)) / 2, 0
    )
    # In-window purchases with a rate factor: all of them for earlier customers (their
    # first in-window purchase arrived after the window start), all but the first else.
    n = frame["n"].to_numpy().astype(float)
    rated = np.where(before_window, n, n - 1)
    survived = n - 1 + before_window  # survived dropouts before the last one seen
    span_start = np.where(before_window, window_clock, w_first)
    shape = frame["gamma_shape"].to_numpy()
    mean_rate = frame["purchase_rate_prior_mean"].to_numpy()
    mean_p = frame["dropout_prior_mean"].to_numpy()
    k = frame["beta_concentration"].to_numpy()
    cancel = frame["cancel_probability"].to_numpy()
    rng = np.random.default_rng(seed)
    out = np.empty(frame.height)
    for lo in range(0, frame.height, 1000):
        s = slice(lo, lo + 1000)
        size = (out[s].size, n_draws)
        lam = np.minimum(
            rng.gamma(shape[s, None], (mean_rate[s] / shape[s])[:, None], size), MAX_RATE
        )
        lam = np.maximum(lam, 1e-12)
        p = rng.beta((mean_p[s] * k[s])[:, None], ((1 - mean_p[s]) * k[s])[:, None], size)
        p = np.clip(p, 1e-9, 1 - 1e-9)
        stay = (1 - p) * np.exp(-lam * (c_start[s] - w_last[s])[:, None])
        log_weight = (
            rated[s, None] * np.log(lam)
            + survived[s, None] * np.log(1 - p)
            - lam * (w_last[s] - span_start[s])[:, None]
            - lam * p * pre_exposure[s, None]
            + np.log(stay + p)
        )
        weight = np.exp(log_weight - log_weight.max(axis=1, keepdims=True))
        q = 1 - cancel[s, None] * (1 - p)
        order = -np.expm1(-lam * q * (c_end[s] - c_start[s])[:, None]) * (
            1 - cancel[s, None] * p / q
        )
        churn = 1 - stay / (stay + p) * order
        out[s] = (weight * churn).sum(axis=1) / weight.sum(axis=1)
    return frame.select("store_id", "customer_id").with_columns(
        churn_probability=pl.Series(np.clip(out, 0.0, 1.0))
    )
