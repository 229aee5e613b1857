"""The churn recipe on a real transaction history (CDNOW, orders only), untuned.

Real data has other dynamics than the generator: if a feature or setting only
worked on generated customers, the learned model would lose to BG/NBD here and the
champion would fall back to it. tests/fixtures/real/README.md says where the data
comes from. The bar (issue "Customer value"): at an early and a late cutoff, trained
only on what came before, the champion ranks at least as well as the textbook BG/NBD
P(at least one order) and its Brier score is no worse; where a year of history
exists, the learned model is the champion and beats it.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from benchmarks.churn_real import evaluate_cutoff, load_cdnow
from models import churn

EARLY, LATE = date(1997, 10, 1), date(1998, 4, 1)  # 9 and 15 months of history


@pytest.fixture(scope="module")
def orders():
    return load_cdnow()


@pytest.fixture(scope="module")
def evaluated(orders):
    return {cutoff: evaluate_cutoff(orders, cutoff, seed=0) for cutoff in (EARLY, LATE)}


def test_cdnow_is_loaded_whole(orders):
    # The published size of the CDNOW master file: nothing lost in parsing.
    assert orders.height == 69_659
    assert orders["customer_id"].n_unique() == 23_570
    assert orders["order_date"].min() == date(1997, 1, 1)
    assert orders["order_date"].max() == date(1998, 6, 30)
    assert orders["total_usd"].null_count() == 0


@pytest.mark.parametrize("cutoff", [EARLY, LATE])
def test_champion_is_at_least_as_good_as_bgnbd_at_every_history_length(evaluated, cutoff):
    row = evaluated[cutoff]
    champion, peer = row["overall"]["champion"], row["overall"]["lifetimes_p_no_order"]
    assert champion["n_customers"] == 23_570
    assert champion["auc"] >= peer["auc"] - 1e-4, row
    assert champion["brier"] <= peer["brier"] + 1e-4, row
    assert champion["auc"] > 0.75


def test_learned_model_wins_with_a_year_of_history(evaluated):
    row = evaluated[LATE]
    assert row["champion"] == "lightgbm", row["champion_reason"]
    ours, peer = row["overall"]["champion"], row["overall"]["lifetimes_p_no_order"]
    assert ours["auc"] >= peer["auc"] + 0.005
    assert ours["brier"] < peer["brier"]


def test_scores_every_real_customer_with_reasons(orders):
    as_of = date(1998, 7, 1)  # the data ends 1998-06-30
    result = churn.train(orders, as_of, seed=0)
    assert result.models.lightgbm is not None, result.candidates["lightgbm"]
    scores = churn.score(result.model, orders, as_of, "cdnow-test")
    assert scores.height == 23_570
    assert scores["churn_probability"].is_between(0.0, 1.0).all()
    assert scores["top_reasons"].null_count() == 0
    # Customers who bought in the last month are at lower risk than those silent for a year.
    last = orders.group_by("customer_id").agg(pl.col("order_date").max().alias("last"))
    joined = scores.join(last, on="customer_id")
    recent = joined.filter(pl.col("last") >= date(1998, 6, 1))["churn_probability"].mean()
    silent = joined.filter(pl.col("last") < date(1997, 7, 1))["churn_probability"].mean()
    assert recent < silent - 0.2, (recent, silent)
    # Silent for a year = no longer plausibly active: not on the at-risk list.
    lapsed = joined.filter(pl.col("last") < date(1997, 6, 30))
    assert (lapsed["risk_band"] == "lapsed").all()
