"""A/B tests: a few per store, customers assigned at random, a true effect from none
to the size the test was planned to detect.

Three kinds, as small DTC stores run them:

| kind | who is in it | primary metric (window) |
|---|---|---|
| `winback_email` | customers whose last order was 90-365 days before the send day | conversion, 30 days |
| `free_shipping_threshold` | customers who ordered in the 180 days before the start | conversion, 6 weeks |
| `welcome_offer` | new customers whose first order falls in the enrolment weeks | revenue per customer, 60 days after enrolment |

Each test is planned the way the readout reads it: the store's eligible customers
split 50/50, the natural baseline (the customers' own behaviour, measured from the
store's orders), and the minimum detectable effect at 80 % power and 5 %
significance (`models.experiments`). The true effect is none, that planned effect,
or half of it (an underpowered true effect). It is real: treated customers who
would not have ordered get an order with the probability that lifts conversion by
the effect, or extra orders raise revenue per customer by it; those orders are new
rows (copies of real baskets of the store). A few large tests lose part of one
arm's assignments (a tracking bug): a sample-ratio mismatch to catch.

Truth: `_truth/experiments.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from models.experiments import mde_mean, mde_proportion

from .growth import (
    ExtraOrders,
    OrderSpec,
    StoreClock,
    build_orders,
    concat_extra,
    empty_extra,
    order_seconds,
)
from .store import StoreData

ALPHA = 0.05
PLANNED_POWER = 0.8
MIN_PER_ARM = 300
MAX_PER_EXPERIMENT = 30_000
KINDS = {
    "winback_email": ("Win-back e-mail", ("control", "winback_email"), "conversion", 30),
    "free_shipping_threshold": (
        "Free shipping from a lower threshold", ("control", "lower_threshold"), "conversion", 42,
    ),
    "welcome_offer": ("Bigger welcome offer", ("control", "bigger_offer"), "revenue_per_customer", 60),
}  # fmt: skip
EFFECTS = ("none", "planned", "half")
EFFECT_SHARE = (0.45, 0.40, 0.15)
SRM_MIN_PER_ARM = 2_000
SRM_CHANCE = 0.15
TRUTH_SCHEMA = {
    "store_id": pl.String, "experiment_id": pl.String, "kind": pl.String,
    "primary_metric": pl.String, "start_date": pl.Date, "end_date": pl.Date,
    "running": pl.Boolean, "eligible": pl.Int64, "assigned_control": pl.Int64,
    "assigned_treatment": pl.Int64, "baseline": pl.Float64, "baseline_sd": pl.Float64,
    "planned_mde_abs": pl.Float64, "planned_mde_rel": pl.Float64, "alpha": pl.Float64,
    "planned_power": pl.Float64, "effect": pl.String, "true_effect_abs": pl.Float64,
    "true_effect_rel": pl.Float64, "srm_injected": pl.Boolean, "extra_orders": pl.Int64,
}  # fmt: skip
DAY = 86_400


@dataclass
class Experiments:
    assignments: pl.DataFrame
    extra: ExtraOrders
    truth: dict[str, pl.DataFrame]


def _window_outcome(
    customers: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    order_customer,
    order_time,
    order_net,
    n_customers: int,
):
    """Per eligible customer: converted (0/1) and net revenue of valid orders in [t0, t1)."""
    position = np.full(n_customers, -1, dtype=np.int64)
    position[customers] = np.arange(customers.size)
    i = position[order_customer]
    mine = i >= 0
    i, time, net = i[mine], order_time[mine], order_net[mine]
    inside = (time >= t0[i]) & (time < t1[i])
    orders = np.bincount(i[inside], minlength=customers.size)
    revenue = np.bincount(i[inside], weights=net[inside], minlength=customers.size)
    return (orders > 0).astype(float), revenue


def draw_experiments(
    rng: np.random.Generator, data: StoreData, start: date, clock: StoreClock, fx: np.ndarray
) -> Experiments:
    profile = data.profile
    orders = data.orders
    n_days = int(fx.size)
    empty = Experiments(
        pl.DataFrame(), empty_extra(data), {"experiments": pl.DataFrame(schema=TRUTH_SCHEMA)}
    )
    if profile.orders_only or data.customers.height < 2 * MIN_PER_ARM:
        return empty
    valid = orders["cancelled_at"].is_null().to_numpy()
    day = orders["_day"].to_numpy()
    seconds = order_seconds(orders)
    time_s = day * DAY + seconds
    customer = orders["_customer_index"].to_numpy()
    net_usd = (orders["total"].to_numpy() - orders["refunded_amount"].to_numpy()) * fx[day]
    v_customer, v_time, v_net, v_day = customer[valid], time_s[valid], net_usd[valid], day[valid]
    is_first = orders["_is_first"].to_numpy()
    first_time = np.full(data.customers.height, -1, dtype=np.int64)
    first_time[customer[is_first]] = time_s[is_first]
    n_customers = data.customers.height
    # Baskets to copy: valid repeat orders that were not refunded.
    sources = np.flatnonzero(
        valid
        & ~is_first
        & (orders["refunded_amount"].to_numpy() == 0)
        & np.isin(orders["_discount_code"].to_numpy(), ["", "SAVE10", "SAVE15", "VIP5"])
    )
    if sources.size == 0:
        return empty
    last_payment = np.full(n_customers, "card", dtype=object)
    last_device = np.full(n_customers, "mobile", dtype=object)
    last_payment[customer] = orders["payment_method"].to_numpy()
    last_device[customer] = orders["device"].to_numpy()
    country = data.customers["country"].to_numpy()

    wanted = int(rng.integers(1, 4)) + (n_customers > 20_000)
    plans = []
    used_ids: set[str] = set()
    for _attempt in range(12):
        if len(plans) >= wanted:
            break
        kind = list(KINDS)[int(rng.integers(len(KINDS)))]
        name, variants, metric, window = KINDS[kind]
        # The newest test is sometimes still running on the last day of data.
        running = bool(len(plans) == wanted - 1 and wanted > 1 and rng.random() < 0.3)
        overrun = int(rng.integers(1, 21)) if running else 0
        if kind == "welcome_offer":
            enrol = int(rng.integers(21, 46))
            latest = n_days - enrol - window
            if latest < 30:
                continue
            s = latest + overrun if running else int(rng.integers(min(60, latest - 1), latest))
            in_enrol = (first_time >= s * DAY) & (first_time < (s + enrol) * DAY)
            eligible = np.flatnonzero(in_enrol)
            assigned = first_time[eligible] - rng.integers(60, 600, eligible.size)
            end_day = s + enrol - 1 + window
            window_start = first_time[eligible] + DAY  # the extra order comes after the first
        else:
            earliest = 180 if n_days > 400 else 120
            latest = n_days - window - 5
            if latest <= earliest:
                continue
            s = n_days - window + overrun if running else int(rng.integers(earliest, latest))
            last_before = np.full(n_customers, -(10**9), dtype=np.int64)
            before = v_day < s
            np.maximum.at(last_before, v_customer[before], v_day[before])
            if kind == "winback_email":
                eligible = np.flatnonzero((last_before >= s - 365) & (last_before <= s - 90))
                assigned = s * DAY + 10 * 3600 + rng.integers(0, 7200, eligible.size)
            else:
                eligible = np.flatnonzero(last_before >= s - 180)
                assigned = s * DAY + rng.integers(0, 14 * DAY, eligible.size)
            end_day = s + window - 1
            window_start = assigned
        # Nobody is assigned after the last day of data.
        known = assigned < n_days * DAY
        eligible, assigned, window_start = eligible[known], assigned[known], window_start[known]
        if eligible.size < 2 * MIN_PER_ARM:
            continue
        if eligible.size > MAX_PER_EXPERIMENT:
            keep = np.sort(rng.choice(eligible.size, MAX_PER_EXPERIMENT, replace=False))
            eligible, assigned, window_start = eligible[keep], assigned[keep], window_start[keep]
        experiment_id = f"{kind.split('_')[0]}_{(start + timedelta(days=s)):%Y_%m}"
        while experiment_id in used_ids:
            experiment_id += "b"
        used_ids.add(experiment_id)
        plans.append((experiment_id, kind, name, variants, metric, s, end_day, eligible,
                      assigned, window_start, running))  # fmt: skip

    if not plans:
        return empty
    frames, truths, extras = [], [], []
    next_order = 0
    prefix = profile.store_id[:2].upper()
    for (experiment_id, kind, name, variants, metric, _s, end_day, eligible, assigned,
         window_start, running) in plans:  # fmt: skip
        treated = rng.random(eligible.size) < 0.5
        window_end = np.full(eligible.size, min(end_day + 1, n_days) * DAY, dtype=np.int64)
        conv, revenue = _window_outcome(
            eligible, assigned, window_end, v_customer, v_time, v_net, n_customers
        )
        n_arm = eligible.size / 2
        if metric == "conversion":
            baseline, baseline_sd = float(conv.mean()), None
            mde = mde_proportion(baseline, n_arm, ALPHA, PLANNED_POWER) if 0 < baseline < 1 else 0.0
        else:
            baseline, baseline_sd = float(revenue.mean()), float(revenue.std(ddof=1))
            mde = mde_mean(baseline_sd, n_arm, ALPHA, PLANNED_POWER)
        effect = EFFECTS[int(rng.choice(len(EFFECTS), p=np.array(EFFECT_SHARE)))]
        true_abs = {"none": 0.0, "planned": mde, "half": mde / 2}[effect]
        # The orders the treatment caused.
        lucky = np.zeros(0, dtype=np.int64)
        if true_abs > 0 and metric == "conversion":
            q = min(true_abs / max(1e-9, 1 - baseline), 1.0)
            lucky = np.flatnonzero(treated & (conv == 0) & (rng.random(eligible.size) < q))
        elif true_abs > 0:
            mean_basket = float(np.mean(net_usd[sources]))
            k = int(rng.poisson(true_abs * treated.sum() / mean_basket))
            pool = np.flatnonzero(treated)
            lucky = rng.choice(pool, k, replace=True) if pool.size and k else lucky
        lucky = lucky[window_start[lucky] < window_end[lucky] - 3600]
        if lucky.size:
            lo, hi = window_start[lucky], window_end[lucky]
            when = lo + (rng.random(lucky.size) * (hi - lo - 60)).astype(np.int64)
            who = eligible[lucky]
            src = rng.choice(sources, lucky.size)
            n_new = lucky.size
            payment = last_payment[who]
            order_day = when // DAY
            status = np.where(
                (payment == "cod") & (order_day >= n_days - 7), "pending", "paid"
            ).astype(object)
            email_tag = kind != "free_shipping_threshold"
            extras.append(
                build_orders(
                    data,
                    OrderSpec(
                        source=src,
                        order_id=np.array(
                            [f"{prefix}E{100001 + next_order + i}" for i in range(n_new)],
                            dtype=object,
                        ),
                        customer_id=data.customers["customer_id"].to_numpy()[who],
                        email=data.customers["email"].to_numpy()[who],
                        customer_index=who,
                        day=order_day,
                        seconds=when % DAY,
                        payment_method=payment,
                        device=last_device[who],
                        ship_country=country[who],
                        billing_country=country[who],
                        discount_code=orders["_discount_code"].to_numpy()[src],
                        financial_status=status,
                        refunded=np.zeros(n_new, dtype=bool),
                        cancel_after_seconds=np.zeros(n_new, dtype=np.int64),
                        utm_source=np.full(n_new, "klaviyo" if email_tag else "", dtype=object),
                        utm_medium=np.full(n_new, "email" if email_tag else "", dtype=object),
                        utm_campaign=np.full(
                            n_new, experiment_id if email_tag else "", dtype=object
                        ),
                        is_first=np.zeros(n_new, dtype=bool),
                    ),
                    clock,
                    fx,
                )
            )
            next_order += n_new
        # The assignment file, with a tracking bug in a few large tests.
        in_file = np.ones(eligible.size, dtype=bool)
        srm = bool(
            min(treated.sum(), (~treated).sum()) >= SRM_MIN_PER_ARM and rng.random() < SRM_CHANCE
        )
        if srm:
            lost = treated & (rng.random(eligible.size) < rng.uniform(0.08, 0.15))
            in_file &= ~lost
        variant = np.where(treated, variants[1], variants[0]).astype(object)
        ids = data.customers["customer_id"].to_numpy()[eligible]
        emails = data.customers["email"].to_numpy()[eligible]
        a_day = assigned // DAY
        frame = pl.DataFrame(
            {
                "store_id": profile.store_id,
                "experiment_id": experiment_id,
                "experiment_name": name,
                "variant": variant,
                "customer_id": ids,
                "email": emails,
                "assigned_at": clock.stamp(a_day, assigned % DAY),
                "primary_metric": metric,
                "start_date": start + timedelta(days=int(a_day.min())),
                "end_date": start + timedelta(days=int(end_day)),
            }
        ).filter(pl.Series(in_file))
        frames.append(frame.sort("assigned_at", "customer_id"))
        truths.append(
            {
                "store_id": profile.store_id, "experiment_id": experiment_id, "kind": kind,
                "primary_metric": metric, "start_date": start + timedelta(days=int(a_day.min())),
                "end_date": start + timedelta(days=int(end_day)), "running": running,
                "eligible": int(eligible.size), "assigned_control": int((~treated & in_file).sum()),
                "assigned_treatment": int((treated & in_file).sum()), "baseline": baseline,
                "baseline_sd": baseline_sd, "planned_mde_abs": mde,
                "planned_mde_rel": mde / baseline if baseline else None, "alpha": ALPHA,
                "planned_power": PLANNED_POWER, "effect": effect, "true_effect_abs": true_abs,
                "true_effect_rel": true_abs / baseline if baseline else None,
                "srm_injected": srm, "extra_orders": int(lucky.size),
            }
        )  # fmt: skip
    assignments = pl.concat(frames)
    if profile.real_exports:  # an A/B tool export keyed by e-mail (no customer ids there)
        assignments = assignments.drop("customer_id")
    else:
        assignments = assignments.drop("email")
    extra = concat_extra(data, extras)
    return Experiments(
        assignments, extra, {"experiments": pl.DataFrame(truths, schema=TRUTH_SCHEMA)}
    )
