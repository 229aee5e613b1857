"""Customer arrivals and BG/NBD-like repeat purchasing.

Each customer has a gamma-distributed purchase rate and a beta-distributed
chance of dropping out after every purchase. Time runs on the store's demand
calendar (a warped clock), so repeat orders also peak on Black Friday.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def simulate_customers(
    rng: np.random.Generator,
    demand_multiplier: np.ndarray,
    organic_new_per_day: np.ndarray,
    media_new_per_day: dict[str, np.ndarray],
    behaviour: PurchaseBehaviour,
) -> CustomerHistory:
    """Draw every customer's arrival and purchase days over the history."""
    n_days = demand_multiplier.size
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
    acquisition_day, acquisition_channel = acquisition_day[order], acquisition_channel[order]
    n = acquisition_day.size

    scale = behaviour.mean_rate_per_year / behaviour.rate_shape / 365.0
    rate = np.minimum(rng.gamma(behaviour.rate_shape, scale, n), MAX_PURCHASES_PER_YEAR / 365.0)
    k = behaviour.dropout_concentration
    p_mean = behaviour.mean_dropout_probability
    dropout_p = rng.beta(p_mean * k, (1.0 - p_mean) * k, n)

    # Warped clock: one unit of warped time = one ordinary day of demand.
    clock = np.concatenate([[0.0], np.cumsum(demand_multiplier)])
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
        acquisition_channel=acquisition_channel,
        purchase_rate_per_day=rate,
        dropout_probability=dropout_p,
        dropout_day=dropout_day,
        order_customer=customers[by_day],
        order_day=days[by_day],
        order_is_first=is_first[by_day],
    )
