"""Churn and customer value read one store at a time for scoring and only the training
sample's customers for training (issue #18): the same data, the same version, the same
backtests and the same scores as reading every store at once."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from models import churn, clv, sampling
from pipelines.assets.churn import CHURN_SPEC, CLV_SPEC, ChurnConfig, ClvConfig
from pipelines.model_assets import of_store
from storepulse import lifecycle
from storepulse.inputs.churn import QUERIES, load_inputs, load_store
from storepulse.lifecycle import version_of
from storepulse.model_store import fingerprint
from storepulse.publish import store_ids
from storepulse.warehouse import Warehouse, query, scalar


@pytest.fixture(scope="module")
def warehouse(tiny_sample, tiny_warehouse, tmp_path_factory):
    from homes import copy_warehouse

    root = tmp_path_factory.mktemp("per_store_inputs")
    shutil.copytree(tiny_sample, root / "landing", ignore=shutil.ignore_patterns("_truth"))
    wh = Warehouse(copy_warehouse(tiny_warehouse, root / "warehouse.duckdb"))  # ingested
    with wh.writer() as con:
        as_of = scalar(con, "select max(order_date) + 1 from staging.orders")
    return wh, as_of


def test_a_store_read_on_its_own_is_its_slice_of_every_store(warehouse):
    wh, as_of = warehouse
    with wh.writer() as con:
        every = load_inputs(con, as_of)
        stores = store_ids(con)
        assert len(stores) > 1
        for store in stores:
            mine = load_store(con, as_of, store)
            for name, frame in of_store(every, store).items():
                assert mine[name].equals(frame), (store, name)


def test_a_fingerprint_read_as_a_stream_is_the_frames(warehouse, monkeypatch):
    wh, as_of = warehouse
    monkeypatch.setattr(lifecycle, "FINGERPRINT_BATCH_ROWS", 997)  # many batches
    with wh.writer() as con:
        orders = query(con, QUERIES["orders"], [as_of])
        assert orders.height > 3 * 997
        assert lifecycle.query_fingerprint(con, QUERIES["orders"], [as_of]) == fingerprint(orders)
        none = "select * from staging.orders where false"
        assert lifecycle.query_fingerprint(con, none) == "empty"


def _scores(name, artifact, inputs, as_of, store, method):
    if name == "churn":
        return churn.score_methods(
            artifact, inputs["orders"], as_of, "v", method_of_store={store: method},
            customers=inputs["customers"], sessions=inputs["sessions"],
        )  # fmt: skip
    return clv.score(
        artifact, inputs["orders"], as_of, "v", customers=inputs["customers"],
        sessions=inputs["sessions"], method_of_store={store: method},
    )  # fmt: skip


@pytest.mark.parametrize("cap", [0, "half"])
@pytest.mark.parametrize("name", ["churn", "clv"])
def test_per_store_loading_gives_the_scores_of_the_all_stores_load(
    name, cap, warehouse, monkeypatch
):
    """Trained on the loader's sample and scored store by store from load_store: the same
    version, candidates and scores as training and scoring from every store's frames.
    'half': a real sample (half the customers, no per-store minimum on the tiny data)."""
    wh, as_of = warehouse
    monkeypatch.setattr(sampling, "MIN_PER_STORE", 0)
    spec, config = (CHURN_SPEC, ChurnConfig) if name == "churn" else (CLV_SPEC, ClvConfig)
    with wh.writer() as con:
        every = load_inputs(con, as_of)
        customers = every["orders"].select("store_id", "customer_id").n_unique()
        config = config(max_train_customers=customers // 2 if cap == "half" else 0)
        sample = spec.load_training(con, as_of, config)
        stores = store_ids(con)
    assert sample["population"] == customers
    if cap == "half":
        assert sample["orders"].height < every["orders"].height
        drawn = sampling.sample_customers(every["orders"], customers // 2, config.seed)
        assert drawn.is_sample
        key = ["store_id", "order_id"]
        assert sample["orders"].sort(key).equals(drawn.orders.sort(key))
    else:
        assert sample["orders"].equals(every["orders"])
    assert spec.fingerprint(sample) == spec.fingerprint(every)
    assert version_of(spec, as_of, spec.fingerprint(sample), config) == version_of(
        replace(spec, load_training=None), as_of, spec.fingerprint(every), config
    )

    from_sample = spec.train(sample, as_of, config)
    from_every = spec.train(every, as_of, config)
    assert from_sample.overall == from_every.overall
    assert from_sample.per_store == from_every.per_store
    assert from_sample.unavailable == from_every.unavailable
    assert from_sample.train_window == from_every.train_window
    assert from_sample.card["training_sample"] == from_every.card["training_sample"]
    assert from_sample.card.get("memory_guard") == from_every.card.get("memory_guard")

    scored = 0
    with wh.writer() as con:
        for store in stores:
            mine, slice_ = load_store(con, as_of, store), of_store(every, store)
            if slice_["orders"].is_empty():
                continue
            for method in spec.methods:
                if method in from_every.unavailable:
                    continue
                a = _scores(name, from_sample.artifact, mine, as_of, store, method)
                b = _scores(name, from_every.artifact, slice_, as_of, store, method)
                assert a.height and a.equals(b), (store, method)
                scored += 1
    assert scored >= len(stores)
