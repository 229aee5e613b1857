"""Stores as real merchants have them (issue #12), end to end with `storepulse run`:
a 75-day store with ~300 orders, a ~40-customer store, a store advertising on one
channel and a store that ships orders only, beside the tiny sample's two stores;
then one store's model raising. Every other store publishes a complete export set,
ops.store_status says what happened, and the exit code is right. (The young store on
its own: tests/test_thin_store_alone.py, a module of its own so that its run and this
one can go to two pytest-xdist workers.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from thin_world import STEPS, THIN, nightly, statuses, thin_landing

from storepulse.publish import latest_set, verify_set
from storepulse.warehouse import Warehouse, query

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    return thin_landing(tmp_path_factory)


@pytest.fixture(scope="module")
def first_run(landing, tmp_path_factory):
    """One nightly run over the thin stores, with one store's churn model raising."""
    from models import churn

    home = tmp_path_factory.mktemp("home")
    shutil.copytree(landing, home / "landing")
    real = churn.score_methods

    def broken_for_one_store(models, orders, *args, **kwargs):
        if orders.height and orders["store_id"][0] == BROKEN:
            raise RuntimeError("injected: the model of this store raises")
        return real(models, orders, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(churn, "score_methods", broken_for_one_store)
        return home, nightly(home)


BROKEN = "forty-us"


def test_every_store_gets_what_can_be_computed(first_run):
    home, result = first_run
    stores = {"nova-gadgets-us", "luma-home-de", *(t.store_id for t in THIN)}
    assert set(result.published_stores) == stores
    for store in stores:
        folder = latest_set(home / "exports" / store)
        assert folder is not None and verify_set(folder) == [], store
    with Warehouse(home / "warehouse.duckdb").reader() as con:
        orders = dict(query(con, "select store_id, count(*) from staging.valid_orders"
                                 " group by 1").rows())  # fmt: skip
        days = dict(query(con, "select store_id, max(order_date) - min(order_date) + 1"
                               " from staging.orders group by 1").rows())  # fmt: skip
        customers = dict(query(con, "select store_id, count(*) from staging.customers"
                                    " group by 1").rows())  # fmt: skip
        scored = dict(query(con, "select store_id, count(*) from scores.churn group by 1").rows())
        channels = dict(query(con, "select store_id, count(distinct platform) from"
                                   " staging.ad_spend group by 1").rows())  # fmt: skip
    # The thin stores are what they claim to be.
    assert days["young-gb"] <= 75 and 250 <= orders["young-gb"] <= 400
    assert 30 <= customers["forty-us"] <= 50
    assert channels["solo-au"] == 1 and "plain-my" not in channels
    # Every store with orders has churn scores, however thin (but the broken one).
    assert set(scored) == stores - {BROKEN}
    got = statuses(home)
    for store in stores:
        for step in STEPS:
            assert (store, step) in got, (store, step)
            if (store, step) != (BROKEN, "churn"):
                assert got[(store, step)][0] in ("ok", "fallback", "skipped"), got[(store, step)]
    # The orders-only store: no lines, no demand; no spend, no ad ROI; said in words.
    assert (
        got[("plain-my", "demand")][0] == "skipped"
        and "order lines" in got[("plain-my", "demand")][2]
    )
    assert got[("plain-my", "ad_roi")][0] == "skipped"
    assert got[("plain-my", "ad_roi")][2] == "no ad spend in the data: nothing to measure"
    assert got[("solo-au", "ad_roi")][0] in ("ok", "fallback")
    # The report of a thin store says what was used.
    report = (latest_set(home / "exports" / "young-gb") / "report.html").read_text()
    assert "How this report was made" in report and "scored with" in report


def test_a_store_whose_model_raises_fails_alone_and_the_run_says_so(first_run):
    home, result = first_run
    assert not result.success
    assert result.failures and all(BROKEN in f for f in result.failures), result.failures
    assert any(f"{BROKEN} churn: failed: RuntimeError: injected" in f for f in result.failures)
    got = statuses(home)
    assert got[(BROKEN, "churn")][0] == "failed"
    others = {s for s, step in got if step == "churn"} - {BROKEN}
    assert all(got[(s, "churn")][0] in ("ok", "fallback") for s in others)
    # Every store still published, the failed one without its churn scores.
    assert len(result.published_stores) == len(others) + 1
    with Warehouse(home / "warehouse.duckdb").reader() as con:
        scored = set(query(con, "select distinct store_id from scores.churn")["store_id"])
    assert scored == others
