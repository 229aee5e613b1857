"""The churn recipe on a real transaction history (CDNOW, orders only), untuned.

Real data has other dynamics than the generator: if a feature or setting only
worked on generated customers, the model would fall back to (or below) BG/NBD
here. tests/fixtures/real/README.md says where the data comes from.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from benchmarks.churn_real import load_cdnow
from models import churn

AS_OF = date(1998, 7, 1)  # the data ends 1998-06-30


@pytest.fixture(scope="module")
def orders():
    return load_cdnow()


@pytest.fixture(scope="module")
def trained(orders):
    return churn.train(orders, AS_OF, seed=0)


def test_cdnow_is_loaded_whole(orders):
    # The published size of the CDNOW master file: nothing lost in parsing.
    assert orders.height == 69_659
    assert orders["customer_id"].n_unique() == 23_570
    assert orders["order_date"].min() == date(1997, 1, 1)
    assert orders["order_date"].max() == date(1998, 6, 30)
    assert orders["total_usd"].null_count() == 0


def test_model_beats_both_baselines_on_real_orders_only_history(trained):
    backtest = trained.backtest
    assert backtest.metrics["n_customers"] == 23_570
    model = backtest.metrics
    for name, baseline in backtest.baseline_metrics.items():
        assert model["auc"] > baseline["auc"], (name, model, baseline)
        assert model["brier"] < baseline["brier"], (name, model, baseline)
    # Not a degenerate win: a useful ranking, and the check approves the model.
    assert model["auc"] > 0.8
    assert trained.approved, trained.reason


def test_scores_every_real_customer_with_reasons(orders, trained):
    scores = churn.score(trained.model, orders, AS_OF, "cdnow-test")
    assert scores.height == 23_570
    assert scores["churn_probability"].is_between(0.0, 1.0).all()
    assert scores["top_reasons"].null_count() == 0
    # Customers who bought in the last month are at lower risk than those silent for a year.
    last = orders.group_by("customer_id").agg(pl.col("order_date").max().alias("last"))
    joined = scores.join(last, on="customer_id")
    recent = joined.filter(pl.col("last") >= date(1998, 6, 1))["churn_probability"].mean()
    silent = joined.filter(pl.col("last") < date(1997, 7, 1))["churn_probability"].mean()
    assert recent < silent - 0.2, (recent, silent)
