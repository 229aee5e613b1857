"""A bounded training sample of customers, so training memory does not grow with
the number of stores (issue #18).

Global models (churn, customer value) stack every customer over several cutoffs:
memory grows with the sum of all stores. Training on at most `max_customers`
customers, drawn per store, bounds it; scoring still covers every customer, store
by store. Under the cap the orders come back untouched, so small data trains
exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# A store keeps at least this many of its customers (or all of them), so a small
# store is still in the training set and its own backtest can choose its champion.
MIN_PER_STORE = 2_000


@dataclass(frozen=True)
class TrainingSample:
    """What was trained on: the orders kept, and how many customers of how many."""

    orders: pl.DataFrame
    customers: int  # customers with an order in the data
    sampled: int  # customers kept (== customers when under the cap)

    @property
    def is_sample(self) -> bool:
        return self.sampled < self.customers

    def describe(self) -> str:
        if not self.is_sample:
            return f"all {self.customers:,} customers"
        return (
            f"a sample of {self.sampled:,} of {self.customers:,} customers "
            f"({self.sampled / self.customers:.0%}, drawn per store)"
        )


def sample_customers(
    orders: pl.DataFrame,
    max_customers: int | None,
    seed: int,
    min_per_store: int | None = None,
) -> TrainingSample:
    """The orders of at most about `max_customers` customers (None or 0: all).

    Each store keeps the same share of its customers, but at least
    min(its customers, min_per_store); which customers is a seeded random draw per
    store, so the sample is deterministic. Every order of a kept customer is kept."""
    kept, total = sample_keys(orders, "customer_id", max_customers, seed, min_per_store)
    if kept is None:
        return TrainingSample(orders, total, total)
    sampled = orders.join(kept, on=["store_id", "customer_id"], how="semi", maintain_order="left")
    return TrainingSample(sampled, total, kept.height)


def presampled(orders: pl.DataFrame, population: int) -> TrainingSample:
    """The TrainingSample of orders that already hold only the sampled customers (drawn
    with sample_keys from `population` customers, e.g. by a loader reading only them)."""
    sampled = orders.select("store_id", "customer_id").n_unique() if orders.height else 0
    return TrainingSample(orders, population, sampled)


def sample_keys(
    frame: pl.DataFrame,
    key: str,
    max_keys: int | None,
    seed: int,
    min_per_store: int | None = None,
) -> tuple[pl.DataFrame | None, int]:
    """(store_id, key) pairs drawn per store, at most about `max_keys` of them, and how
    many there are; None instead of the pairs when all are kept (under the cap)."""
    keys = frame.select("store_id", key).unique().sort("store_id", key)
    total = keys.height
    if not max_keys or total <= max_keys:
        return None, total
    min_per_store = MIN_PER_STORE if min_per_store is None else min_per_store
    share = max_keys / total
    draw = np.random.default_rng(seed).random(total)
    ranked = keys.with_columns(draw=pl.Series(draw)).with_columns(
        rank=pl.col("draw").rank("ordinal").over("store_id"),
        n=pl.len().over("store_id"),
    )
    quota = pl.max_horizontal(
        pl.min_horizontal(pl.col("n"), pl.lit(min_per_store)),
        (pl.col("n") * share).ceil().cast(pl.UInt32),
    )
    return ranked.filter(pl.col("rank") <= quota).select("store_id", key), total


def restrict(frame: pl.DataFrame | None, orders: pl.DataFrame) -> pl.DataFrame | None:
    """`frame` (e.g. customers) limited to the customers of `orders`."""
    if frame is None or "customer_id" not in frame.columns:
        return frame
    keys = orders.select("store_id", "customer_id").unique()
    return frame.join(keys, on=["store_id", "customer_id"], how="semi", maintain_order="left")


def training_customers(
    orders: pl.DataFrame,
    customers: pl.DataFrame | None,
    population: int | None,
    max_customers: int | None,
    seed: int,
) -> tuple[TrainingSample, pl.DataFrame, pl.DataFrame | None]:
    """(the sample, its orders, its customers) for a model that trains on at most about
    `max_customers` customers: drawn here, or already drawn (`population` given: the
    orders hold only the sample, e.g. read so in SQL)."""
    if population is not None:
        return presampled(orders, population), orders, customers
    sample = sample_customers(orders, max_customers, seed)
    if sample.is_sample:
        return sample, sample.orders, restrict(customers, sample.orders)
    return sample, orders, customers
