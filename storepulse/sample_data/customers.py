"""Customer arrivals and BG/NBD-like repeat purchasing.

Each customer has a gamma-distributed purchase rate and a beta-distributed
chance of dropping out after every purchase. Time runs on the store's demand
calendar (a warped clock), so repeat orders also peak on Black Friday.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

UNPAID_ACQUISITION = {
    "organic": 0.40,
    "direct": 0.22,
    "email": 0.10,
    "affiliate": 0.13,
    "influencer": 0.15,
}
MAX_PURCHASES_PER_YEAR = 60.0


@dataclass
class PurchaseBehaviour:
    rate_shape: float  # gamma shape r: lower = more heterogeneous
    mean_rate_per_year: float
    mean_dropout_probability: float
    dropout_concentration: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PurchaseBehaviour:
        """Pick parameters so that 8-40 % of customers buy again within a year."""
        shape = float(rng.uniform(0.4, 0.8))
        mean_rate = float(rng.uniform(5.0, 10.0))
        target_repeat_within_year = float(rng.uniform(0.14, 0.32))
        # P(another purchase within a year | alive) for a gamma-mixed Poisson process.
        p_buy_again = 1.0 - (1.0 + mean_rate / shape) ** (-shape)
        dropout = float(np.clip(1.0 - target_repeat_within_year / p_buy_again, 0.2, 0.9))
        return cls(shape, mean_rate, dropout, float(rng.uniform(0.3, 0.8)))

    def frame(self, store_id: str) -> pl.DataFrame:
        """The store's process parameters as `_truth/churn_drivers.csv` rows (target 'process')."""
        values = {
            "gamma_shape": self.rate_shape,
            "mean_rate_per_year": self.mean_rate_per_year,
            "mean_dropout_probability": self.mean_dropout_probability,
            "beta_concentration": self.dropout_concentration,
        }
        return pl.DataFrame(
            {
                "store_id": store_id,
                "driver": list(values),
                "target": "process",
                "effect": [round(v, 6) for v in values.values()],
            }
        )


@dataclass
class CustomerHistory:
    acquisition_day: np.ndarray  # int, day index of the first order
    acquisition_channel: np.ndarray  # str
    purchase_rate_per_day: np.ndarray
    dropout_probability: np.ndarray
    dropout_day: np.ndarray  # int, -1 = still active at the end of history
    order_customer: np.ndarray  # int index into the customer arrays, one per order
    order_day: np.ndarray  # int
    order_is_first: np.ndarray  # bool
    # The customer's prior (before the gamma/beta draws): E[rate] and E[dropout].
    purchase_rate_prior_mean: np.ndarray | None = None
    dropout_prior_mean: np.ndarray | None = None


@dataclass
class Arrivals:
    acquisition_day: np.ndarray  # int, day index of the first order, sorted
    acquisition_channel: np.ndarray  # str


def draw_arrivals(
    rng: np.random.Generator,
    organic_new_per_day: np.ndarray,
    media_new_per_day: dict[str, np.ndarray],
) -> Arrivals:
    """Every customer's first-order day and acquisition channel, sorted by day."""
    n_days = organic_new_per_day.size
    organic_counts = rng.poisson(organic_new_per_day)
    unpaid_names = list(UNPAID_ACQUISITION)
    unpaid_probs = np.array(list(UNPAID_ACQUISITION.values()))
    organic_days = np.repeat(np.arange(n_days), organic_counts)
    organic_channels = np.array(unpaid_names)[
        rng.choice(len(unpaid_names), organic_days.size, p=unpaid_probs)
    ]
    days_parts, channel_parts = [organic_days], [organic_channels]
    for channel, counts in media_new_per_day.items():
        days = np.repeat(np.arange(n_days), counts)
        days_parts.append(days)
        channel_parts.append(np.full(days.size, channel))
    acquisition_day = np.concatenate(days_parts)
    acquisition_channel = np.concatenate(channel_parts).astype(object)
    order = np.argsort(acquisition_day, kind="stable")
    return Arrivals(acquisition_day[order], acquisition_channel[order])


def warped_clock(demand_multiplier: np.ndarray) -> np.ndarray:
    """clock[d] = warped time at the start of day d (one unit = one ordinary day of demand)."""
    return np.concatenate([[0.0], np.cumsum(demand_multiplier)])


def simulate_purchases(
    rng: np.random.Generator,
    demand_multiplier: np.ndarray,
    arrivals: Arrivals,
    behaviour: PurchaseBehaviour,
    dropout_log_odds_shift: np.ndarray | None = None,
    rate_log_shift: np.ndarray | None = None,
) -> CustomerHistory:
    """Repeat purchases of every arrived customer (the first order is on the arrival day).

    Each customer's purchase rate is gamma x exp(rate_log_shift); their chance of
    dropping out after every purchase (the first one included) is a beta draw
    whose mean is sigmoid(logit(mean dropout) + dropout_log_odds_shift). The
    shifts carry the observable churn drivers, the gamma and beta draws the
    unobserved rest.
    """
    acquisition_day = arrivals.acquisition_day
    n = acquisition_day.size
    scale = behaviour.mean_rate_per_year / behaviour.rate_shape / 365.0
    rate = rng.gamma(behaviour.rate_shape, scale, n)
    rate_multiplier = np.ones(n) if rate_log_shift is None else np.exp(rate_log_shift)
    rate = rate * rate_multiplier
    rate = np.minimum(rate, MAX_PURCHASES_PER_YEAR / 365.0)
    k = behaviour.dropout_concentration
    p_mean = np.full(n, behaviour.mean_dropout_probability)
    if dropout_log_odds_shift is not None:
        # The drivers move the customer's expected dropout probability (the mean of
        # their beta), so a shift changes how many customers are one-timers.
        log_odds = np.log(p_mean / (1.0 - p_mean)) + dropout_log_odds_shift
        p_mean = 1.0 / (1.0 + np.exp(-log_odds))
    dropout_p = rng.beta(p_mean * k, (1.0 - p_mean) * k, n)
    # Rounded here so that `_truth/customers.csv` holds exactly the probability used.
    dropout_p = np.clip(np.round(dropout_p, 6), 1e-6, 1.0 - 1e-6)

    clock = warped_clock(demand_multiplier)
    warped = clock[acquisition_day] + rng.random(n) * demand_multiplier[acquisition_day]
    dropout_day = np.full(n, -1, dtype=np.int64)

    order_customer = [np.arange(n)]
    order_day = [acquisition_day.copy()]
    active = np.arange(n)
    current_day = acquisition_day.copy()
    while active.size:
        dropped = rng.random(active.size) < dropout_p[active]
        dropout_day[active[dropped]] = current_day[dropped]
        active, warped = active[~dropped], warped[~dropped]
        warped = warped + rng.exponential(1.0, active.size) / rate[active]
        inside = warped < clock[-1]
        active, warped = active[inside], warped[inside]
        current_day = np.searchsorted(clock, warped, side="right") - 1
        order_customer.append(active)
        order_day.append(current_day)

    customers = np.concatenate(order_customer)
    days = np.concatenate(order_day)
    is_first = np.zeros(customers.size, dtype=bool)
    is_first[:n] = True
    by_day = np.lexsort((customers, days))
    return CustomerHistory(
        acquisition_day=acquisition_day,
        acquisition_channel=arrivals.acquisition_channel,
        purchase_rate_per_day=rate,
        dropout_probability=dropout_p,
        dropout_day=dropout_day,
        order_customer=customers[by_day],
        order_day=days[by_day],
        order_is_first=is_first[by_day],
        purchase_rate_prior_mean=behaviour.mean_rate_per_year / 365.0 * rate_multiplier,
        dropout_prior_mean=p_mean,
    )


def simulate_customers(
    rng: np.random.Generator,
    demand_multiplier: np.ndarray,
    organic_new_per_day: np.ndarray,
    media_new_per_day: dict[str, np.ndarray],
    behaviour: PurchaseBehaviour,
) -> CustomerHistory:
    """Arrivals and purchases without churn drivers (every customer alike a priori)."""
    arrivals = draw_arrivals(rng, organic_new_per_day, media_new_per_day)
    return simulate_purchases(rng, demand_multiplier, arrivals, behaviour)
