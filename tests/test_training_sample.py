"""A bounded training sample (models.sampling) and the memory guard (storepulse.memory):
training memory stops growing with the number of stores, small data trains exactly as
before, and a run that would outgrow its budget lowers its sample and says so."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from models import churn, sampling
from storepulse import memory, settings


def _orders(customers_per_store: dict[str, int], orders_each: int = 2) -> pl.DataFrame:
    rows = [
        {"store_id": store, "customer_id": f"{store}-{c}", "order_id": f"{store}-{c}-{k}",
         "order_date": date(2026, 1, 1) + timedelta(days=k)}
        for store, n in customers_per_store.items()
        for c in range(n)
        for k in range(orders_each)
    ]  # fmt: skip
    return pl.DataFrame(rows)


def test_under_the_cap_the_orders_come_back_untouched():
    orders = _orders({"a": 50, "b": 30})
    sample = sampling.sample_customers(orders, 1_000, seed=3)
    assert sample.orders is orders and not sample.is_sample
    assert sample.describe() == "all 80 customers"
    assert sampling.sample_customers(orders, None, seed=3).orders is orders


def test_the_sample_is_drawn_per_store_keeps_whole_customers_and_is_seeded():
    orders = _orders({"big": 4_000, "mid": 900, "tiny": 40})
    sample = sampling.sample_customers(orders, 1_000, seed=7, min_per_store=100)
    kept = sample.orders.group_by("store_id").agg(pl.col("customer_id").n_unique())
    kept = dict(kept.iter_rows())
    # the same share of each store (about 1000 / 4940), but at least 100 (or all)
    assert kept["big"] == int(np.ceil(4_000 * 1_000 / 4_940))
    assert kept["mid"] == int(np.ceil(900 * 1_000 / 4_940))
    assert kept["tiny"] == 40
    assert sample.sampled == sum(kept.values()) and sample.customers == 4_940
    # every order of a kept customer, in the original order
    per_customer = sample.orders.group_by("customer_id").len()["len"]
    assert (per_customer == 2).all()
    assert sample.orders["order_id"].to_list() == [
        o for o in orders["order_id"] if o in set(sample.orders["order_id"])
    ]
    again = sampling.sample_customers(orders, 1_000, seed=7, min_per_store=100)
    other = sampling.sample_customers(orders, 1_000, seed=8, min_per_store=100)
    assert again.orders.equals(sample.orders)
    assert not other.orders.equals(sample.orders)
    assert "a sample of" in sample.describe() and "of 4,940 customers" in sample.describe()


@pytest.fixture(scope="module")
def tiny_inputs(tiny_warehouse, tmp_path_factory):
    """The churn inputs of the tiny sample, as the pipeline loads them, and as_of."""
    from homes import copy_warehouse

    from storepulse.inputs.churn import load_inputs
    from storepulse.inputs.demand import load_history
    from storepulse.warehouse import Warehouse, scalar

    root = tmp_path_factory.mktemp("training_sample")
    with Warehouse(copy_warehouse(tiny_warehouse, root / "warehouse.duckdb")).writer() as con:
        as_of = scalar(con, "select max(order_date) + 1 from staging.orders")
        return load_inputs(con, as_of), as_of, load_history(con, as_of)


def test_churn_trains_on_the_sample_and_says_so(tiny_inputs, monkeypatch):
    inputs, as_of, _ = tiny_inputs
    orders = inputs["orders"]
    customers = orders.select("store_id", "customer_id").n_unique()
    full = churn.train(orders, as_of, seed=1)
    assert full.training_sample == f"all {customers:,} customers"
    monkeypatch.setattr(sampling, "MIN_PER_STORE", 0)
    cap = customers // 2
    sampled = churn.train(
        orders, as_of, seed=1, settings=churn.ChurnSettings(max_train_customers=cap)
    )
    kept = int(sampled.training_sample.split()[3].replace(",", ""))
    assert cap <= kept <= cap + 2  # each of the two stores rounds its share up
    assert sampled.training_sample.startswith(f"a sample of {kept:,} of {customers:,}")
    assert sampled.backtest is not None
    assert sampled.backtest.metrics["n_customers"] < full.backtest.metrics["n_customers"]


def test_the_memory_guard_lowers_the_sample_to_fit_the_budget(monkeypatch):
    monkeypatch.setattr(memory, "rss_bytes", lambda: 1_000_000_000)
    roomy = memory.training_allowance(150_000, 500_000, 12_000, "churn", budget=10**10)
    assert roomy == memory.Allowance(150_000, None)
    tight = memory.training_allowance(150_000, 500_000, 12_000, "churn", budget=2 * 10**9)
    assert tight.customers == 83_333
    assert "lowered from 150,000 to 83,333 customers" in tight.note and "2.0 GB" in tight.note
    # 'all' (0) is judged against the customers there are
    small = memory.training_allowance(0, 40_000, 12_000, "CLV", budget=2 * 10**9)
    assert small == memory.Allowance(None, None)
    floor = memory.training_allowance(0, 500_000, 12_000, "CLV", budget=10**9)
    assert floor.customers == memory.MIN_TRAINING_CUSTOMERS


def test_the_memory_budget_reads_sizes_and_shares():
    ram = settings.physical_memory_bytes()
    assert settings.memory_budget_bytes({}) == int(0.75 * ram)
    assert settings.memory_budget_bytes({"STOREPULSE_MEMORY_BUDGET": "8GB"}) == 8 * 10**9
    assert settings.memory_budget_bytes({"STOREPULSE_MEMORY_BUDGET": "512MiB"}) == 512 * 2**20
    assert settings.memory_budget_bytes({"STOREPULSE_MEMORY_BUDGET": "50%"}) == int(0.5 * ram)
    with pytest.raises(ValueError, match="write it like 8GB or 75%"):
        settings.memory_budget_bytes({"STOREPULSE_MEMORY_BUDGET": "lots"})


def test_demand_trains_on_a_sample_of_series_and_still_forecasts_every_series(
    tiny_inputs, monkeypatch
):
    from models import demand

    monkeypatch.setattr(demand, "MIN_SERIES_PER_STORE", 0)
    _, _, history = tiny_inputs
    series = history.series.height
    settings = demand.DemandSettings(num_boost_round=30, max_train_series=series // 2)
    found = demand.train_candidates(history, settings, seed=0)
    kept = int(found.training_sample.split()[3].replace(",", ""))
    assert series // 2 <= kept <= series // 2 + 2
    assert found.training_sample.endswith(f"of {series:,} series (drawn per store)")
    forecast = found.artifact.forecast(history, demand.LEARNED)
    assert forecast.select("store_id", "sku").n_unique() == series
    full = demand.train_candidates(history, demand.DemandSettings(num_boost_round=30), seed=0)
    assert full.training_sample == f"all {series:,} series"


def test_glibc_arenas_are_capped_unless_malloc_arena_max_says_otherwise(monkeypatch):
    assert settings.malloc_arena_max({}) == settings.DEFAULT_MALLOC_ARENAS == 2
    assert settings.malloc_arena_max({"MALLOC_ARENA_MAX": "4"}) is None  # glibc applied it
    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(memory, "_glibc", Libc)
    monkeypatch.setattr(settings, "malloc_arena_max", lambda: 2)
    assert memory.limit_malloc_arenas() and calls == [(memory._M_ARENA_MAX, 2)]
    # A small process skips the release (a full collection costs more than it frees).
    assert not memory.release_free_memory(min_rss_bytes=memory.rss_bytes() * 4)
    assert calls == [(memory._M_ARENA_MAX, 2)]
    assert memory.release_free_memory(min_rss_bytes=0)
    assert calls[-1] == ("trim", 0)
    monkeypatch.setattr(memory, "_glibc", lambda: None)  # not glibc: nothing to do
    assert not memory.limit_malloc_arenas()
    assert memory.release_free_memory(min_rss_bytes=0)
