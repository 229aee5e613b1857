"""Churn model: BG/NBD fit, features, labels, training, backtest, scoring.

Quality is checked against a planted truth: a BG/NBD-like simulation in which
the dropout chance depends on things the order history shows (cash on delivery,
heavy discounting), so a model that reads them must beat BG/NBD and recency.
The oracle is the Bayes-optimal P(churn) given the order history AND each
customer's true purchase rate and dropout probability (not their realised
dropout date, which no model could know): exact for the planted process here,
and `storepulse.sample_data.truth.oracle_churn_probability` for the generator's
tiny data (from `_truth/`, which lives in tests, never in the pipeline).
"""

from __future__ import annotations

from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from scipy.optimize import approx_fprime
from sklearn.metrics import roc_auc_score

from models import bgnbd, churn

START = date(2022, 1, 1)


def simulate_orders(
    n_customers: int = 2500, days: int = 900, seed: int = 0, stores=("s1",)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Orders and per-customer truth from a BG/NBD-like process with planted drivers.

    Cash-on-delivery payers and discount hunters drop out far more often after
    each purchase; email-acquired customers buy more often. Returns (orders, truth).
    """
    rng = np.random.default_rng(seed)
    orders, truth = [], []
    for store in stores:
        for c in range(n_customers):
            customer = f"{store}-c{c:05d}"
            first_day = int(rng.integers(0, days))
            is_cod = rng.random() < 0.3
            discount_hunter = rng.random() < 0.3
            channel = rng.choice(["email", "meta", "organic"], p=[0.2, 0.5, 0.3])
            rate = rng.gamma(0.9, (6.0 if channel == "email" else 3.0) / 0.9 / 365.0)
            p_drop = 0.75 if (is_cod or discount_hunter) else 0.12
            day, k, dropout_day = first_day, 0, None
            while day < days:
                subtotal = float(rng.gamma(3.0, 20.0))
                discount = subtotal * (0.35 if discount_hunter else 0.02)
                orders.append(
                    {
                        "store_id": store,
                        "order_id": f"{customer}-{k}",
                        "customer_id": customer,
                        "order_date": START + timedelta(days=day),
                        "subtotal_usd": subtotal,
                        "discount_usd": discount,
                        "total_usd": subtotal - discount,
                        "refunded_amount_usd": 0.0,
                        "is_cancelled": False,
                        "payment_method": "cash_on_delivery" if is_cod else "card",
                        "channel": str(channel),
                        "ship_country": "US",
                    }
                )
                k += 1
                if rng.random() < p_drop:
                    dropout_day = day
                    break
                day += 1 + int(rng.exponential(1.0 / rate))
            truth.append(
                {
                    "store_id": store,
                    "customer_id": customer,
                    "purchase_rate_per_day": float(rate),
                    "dropout_probability": p_drop,
                    "dropout_date": None
                    if dropout_day is None
                    else START + timedelta(days=dropout_day),
                }
            )
    frame = pl.DataFrame(orders).with_columns(created_at=pl.col("order_date").cast(pl.Datetime))
    return frame, pl.DataFrame(truth, schema_overrides={"dropout_date": pl.Date})


def realised_oracle(
    truth: pl.DataFrame, customers: pl.DataFrame, cutoff: date, horizon_days: int
) -> pl.DataFrame:
    """For information only: an 'oracle' that knows the realised dropout date (1 if
    dropped out before the cutoff, else exp(-rate x days alive in the horizon)).
    No model can know that date, so it is not the bar."""
    end = cutoff + timedelta(days=horizon_days)
    alive_days = (
        pl.when(pl.col("dropout_date").is_null())
        .then(pl.lit(horizon_days, dtype=pl.Int64))
        .otherwise(
            (pl.min_horizontal("dropout_date", pl.lit(end)) - pl.lit(cutoff)).dt.total_days()
        )
    )
    return customers.join(
        truth.select("store_id", "customer_id", "purchase_rate_per_day", "dropout_date"),
        on=["store_id", "customer_id"],
        how="inner",
        maintain_order="left",
    ).with_columns(
        realised_oracle=pl.when(pl.col("dropout_date") < cutoff)
        .then(1.0)
        .otherwise((-pl.col("purchase_rate_per_day") * alive_days).exp())
    )


def planted_oracle(
    truth: pl.DataFrame,
    orders: pl.DataFrame,
    customers: pl.DataFrame,
    cutoff: date,
    horizon_days: int,
) -> pl.DataFrame:
    """Bayes-optimal P(no order in [cutoff, cutoff + h)) for simulate_orders' process,
    given the history and the true rate and dropout probability.

    After an order on day d the next comes on d + 1 + floor(E), E ~ Exp(rate), unless
    the customer drops out (probability p) right after it. With s = cutoff - 1 - last
    order day: P(no order before the cutoff | alive) = P(E >= s) = exp(-rate s), so
    P(alive) = (1-p) e^{-rate s} / ((1-p) e^{-rate s} + p); by memorylessness the next
    order falls in the horizon with probability 1 - exp(-rate h)."""
    last = (
        orders.filter(pl.col("order_date") < cutoff)
        .group_by("store_id", "customer_id")
        .agg(last_order_date=pl.col("order_date").max())
    )
    s = (pl.lit(cutoff) - pl.col("last_order_date")).dt.total_days() - 1
    stay = (1 - pl.col("dropout_probability")) * (-pl.col("purchase_rate_per_day") * s).exp()
    p_alive = stay / (stay + pl.col("dropout_probability"))
    return (
        customers.join(last, on=["store_id", "customer_id"], how="inner", maintain_order="left")
        .join(
            truth.select("store_id", "customer_id", "purchase_rate_per_day", "dropout_probability"),
            on=["store_id", "customer_id"],
            how="inner",
            maintain_order="left",
        )
        .with_columns(
            oracle=1 - p_alive * (1 - (-pl.col("purchase_rate_per_day") * horizon_days).exp())
        )
    )


SMALL_SETTINGS = churn.ChurnSettings(horizon_days=90, n_train_cutoffs=4, cutoff_step_days=45)


@pytest.fixture(scope="module")
def planted():
    orders, truth = simulate_orders()
    as_of = START + timedelta(days=900)
    result = churn.train(orders, as_of, settings=SMALL_SETTINGS, seed=3)
    return orders, truth, as_of, result


# ---------------------------------------------------------------------------- BG/NBD


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, weeks: float, seed: int):
    """Standard BG/NBD: all customers start at 0 and are observed for `weeks`."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > weeks:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, np.full(n, weeks)


def test_bgnbd_mle_recovers_planted_parameters():
    x, t_x, T = simulate_bgnbd(4000, r=0.8, alpha=6.0, a=0.9, b=3.0, weeks=52.0, seed=1)
    params = bgnbd.fit(x, t_x, T)
    assert params.converged
    assert params.r == pytest.approx(0.8, rel=0.25)
    assert params.alpha == pytest.approx(6.0, rel=0.3)
    # a and b are only identified together: their mean dropout chance a/(a+b).
    assert params.a / (params.a + params.b) == pytest.approx(0.9 / 3.9, rel=0.3)


@pytest.mark.parametrize("variant", ["bg", "mbg"])
def test_bgnbd_analytic_gradient_matches_finite_differences(variant):
    x, t_x, T = simulate_bgnbd(1500, r=0.8, alpha=6.0, a=0.9, b=3.0, weeks=52.0, seed=4)
    weights = np.random.default_rng(0).integers(1, 4, x.size).astype(float)
    for point in (np.log([0.5, 10.0, 1.0, 3.0]), np.log([2.0, 3.0, 0.3, 0.7])):
        value, gradient = bgnbd._neg_log_likelihood_and_gradient(point, x, t_x, T, variant, weights)

        def negative(p):
            return -bgnbd._log_likelihood(p, x, t_x, T, variant, weights)

        assert value == pytest.approx(negative(point), rel=1e-12)
        numeric = approx_fprime(point, negative, 1e-6)
        np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-3)


def test_bgnbd_fit_is_the_maximum_of_its_likelihood():
    x, t_x, T = simulate_bgnbd(3000, r=0.8, alpha=6.0, a=0.9, b=3.0, weeks=52.0, seed=6)
    for variant in ("bg", "mbg"):
        params = bgnbd.fit(x, t_x, T, variant=variant)
        best = np.log(list(params.as_dict().values()))
        at_best = bgnbd._log_likelihood(best, x, t_x, T, variant)
        # No small step in any direction does better (up to the tiny ridge).
        for i in range(4):
            for step in (-0.05, 0.05):
                moved = best.copy()
                moved[i] += step
                assert bgnbd._log_likelihood(moved, x, t_x, T, variant) <= at_best + 0.05


def test_bgnbd_probabilities_behave():
    params = bgnbd.BgNbdParams(r=0.8, alpha=6.0, a=0.9, b=3.0, n_customers=0, converged=True)
    x = np.array([0.0, 3.0, 3.0, 3.0])
    t_x = np.array([0.0, 40.0, 20.0, 5.0])
    T = np.full(4, 52.0)
    alive = bgnbd.p_alive(params, x, t_x, T)
    assert alive[0] == 1.0  # BG/NBD: nobody drops out before a repeat purchase
    assert alive[1] > alive[2] > alive[3]  # a long silence since the last purchase
    quiet = bgnbd.p_no_purchase(params, x, t_x, T, horizon_weeks=13.0)
    assert np.all((quiet > 0) & (quiet < 1))
    assert quiet[1] < quiet[2] < quiet[3]
    mbg_alive = bgnbd.p_alive(params, x, t_x, T, variant="mbg")
    assert mbg_alive[0] < 1.0  # MBG/NBD: a one-time buyer may already be gone


# -------------------------------------------------------------------------- features


def test_features_are_exact_on_a_planted_history():
    rows = [
        # customer a: orders 100, 70, 40 days before the cutoff -> gaps 30, 30
        ("a", 100, 50.0, 5.0, 0.0, "card", "meta"),
        ("a", 70, 60.0, 0.0, 0.0, "card", "email"),
        ("a", 40, 40.0, 5.0, 20.0, "cod", "email"),
        # customer b: one order 10 days before the cutoff
        ("b", 10, 30.0, 0.0, 0.0, "card", "organic"),
    ]
    cutoff = date(2025, 1, 1)
    orders = pl.DataFrame(
        [
            {
                "store_id": "s1",
                "order_id": f"o{i}",
                "customer_id": customer,
                "order_date": cutoff - timedelta(days=days),
                "subtotal_usd": total + discount,
                "discount_usd": discount,
                "total_usd": total,
                "refunded_amount_usd": refund,
                "payment_method": payment,
                "channel": channel,
            }
            for i, (customer, days, total, discount, refund, payment, channel) in enumerate(rows)
        ]
        # an order on the cutoff day itself must not be read
        + [
            {
                "store_id": "s1",
                "order_id": "late",
                "customer_id": "a",
                "order_date": cutoff,
                "subtotal_usd": 999.0,
                "discount_usd": 0.0,
                "total_usd": 999.0,
                "refunded_amount_usd": 0.0,
                "payment_method": "card",
                "channel": "meta",
            }
        ]
    )
    prepared = churn.prepare_orders(orders, cutoff + timedelta(days=1))
    features = churn.build_features(prepared, cutoff, horizon_days=90)
    a = features.filter(pl.col("customer_id") == "a").row(0, named=True)
    assert a["recency_days"] == 40
    assert a["frequency"] == 3
    assert a["tenure_days"] == 100
    assert a["mean_gap_days"] == 30
    assert a["gap_spread_days"] == 0
    assert a["days_past_usual_cycle"] == 10
    assert a["monetary_usd"] == pytest.approx(150.0 - 20.0)
    assert a["aov_usd"] == pytest.approx(50.0)
    assert a["orders_last_90_days"] == 2 and a["orders_prior_90_days"] == 1
    assert a["discount_share"] == pytest.approx(10.0 / 160.0)
    assert a["refund_share"] == pytest.approx(20.0 / 150.0)
    assert a["cod_share"] == pytest.approx(1 / 3)
    assert a["first_channel"] == "meta"
    # How the first order went (the churn drivers of a new customer).
    assert a["first_order_usd"] == pytest.approx(50.0)
    assert a["first_order_discount_share"] == pytest.approx(5.0 / 55.0)
    assert a["first_order_refund_share"] == 0.0 and a["first_order_cod"] == 0.0
    b = features.filter(pl.col("customer_id") == "b").row(0, named=True)
    assert b["mean_gap_days"] is None and b["frequency"] == 1
    assert b["first_order_usd"] == pytest.approx(30.0) and b["first_order_discount_share"] == 0.0
    assert features["store_sessions_trend"].null_count() == features.height  # no sessions


def test_labels_mark_customers_without_an_order_in_the_horizon():
    cutoff = date(2025, 1, 1)
    orders = pl.DataFrame(
        {
            "store_id": ["s1"] * 5,
            "order_id": ["1", "2", "3", "4", "5"],
            "customer_id": ["stays", "stays", "leaves", "late", "late"],
            "order_date": [
                cutoff - timedelta(days=5),
                cutoff + timedelta(days=30),
                cutoff - timedelta(days=5),
                cutoff - timedelta(days=5),
                cutoff + timedelta(days=90),  # the day after the 90-day window
            ],
            "total_usd": [10.0] * 5,
        }
    )
    settings = churn.ChurnSettings(horizon_days=90)
    cache = churn.FeatureCache(orders, cutoff + timedelta(days=200), settings=settings)
    labelled = cache.labelled(cutoff)
    churned = dict(zip(labelled["customer_id"], labelled["churned"], strict=True))
    assert churned == {"stays": 0, "leaves": 1, "late": 1}
    with pytest.raises(ValueError, match="not observed yet"):
        churn.FeatureCache(orders, cutoff + timedelta(days=60), settings=settings).labelled(cutoff)


# ------------------------------------------------------------------------- the model


def test_model_beats_both_baselines_on_planted_drivers(planted):
    _, _, _, result = planted
    backtest = result.backtest
    assert set(backtest.baseline_metrics) == {"recency", "bgnbd"}
    assert backtest.cutoff == START + timedelta(days=900 - 90)
    # The planted drivers (COD, discounting) are invisible to both baselines.
    assert backtest.metrics["auc"] >= backtest.best_baseline_auc + 0.02
    assert backtest.metrics["brier"] < backtest.best_baseline_brier
    assert backtest.metrics["lift_top_decile"] > 1.0
    assert result.approved, result.reason


def test_model_is_close_to_the_bayes_oracle_on_planted_data(planted):
    orders, truth, _, result = planted
    backtest = result.backtest
    joined = planted_oracle(truth, orders, backtest.predictions, backtest.cutoff, 90)
    assert joined.height == backtest.predictions.height
    y = joined["churned"].to_numpy()
    oracle = churn.classification_metrics(y, joined["oracle"], joined["oracle"])
    model = backtest.metrics
    # The oracle is calibrated on its own process and the best Brier there is.
    assert abs(joined["oracle"].mean() - y.mean()) < 0.02
    assert oracle["brier"] <= model["brier"] + 0.002
    # Issue #4's bar: within 0.03 of the oracle's AUC (and better than the baselines,
    # asserted above). The oracle bounds the model up to sampling noise.
    assert model["auc"] >= oracle["auc"] - 0.03
    assert model["auc"] <= oracle["auc"] + 0.005
    # Knowing the realised dropout date (information only) ranks better still.
    realised = realised_oracle(truth, backtest.predictions, backtest.cutoff, 90)
    realised_auc = roc_auc_score(realised["churned"], realised["realised_oracle"])
    assert realised_auc > oracle["auc"]


def test_scores_follow_the_contract(planted):
    orders, _, as_of, result = planted
    scores = churn.score(result.model, orders, as_of, "churn-test")
    customers = orders.filter(pl.col("order_date") < as_of)["customer_id"].n_unique()
    assert scores.height == customers
    assert list(scores.columns) == list(churn.SCORE_COLUMNS)
    assert scores["churn_probability"].is_between(0.0, 1.0).all()
    assert scores["risk_score"].is_between(0, 100).all()
    high = scores.filter(pl.col("risk_band") == "high")
    assert high.height > 0 and (high["risk_score"] > 80).all()
    assert (scores.filter(pl.col("risk_score") <= 50)["risk_band"] == "low").all()
    assert (scores["as_of"] == as_of).all() and (scores["model_version"] == "churn-test").all()
    # risky customers get up to three reasons, in words
    reasons = high["top_reasons"].str.split("; ")
    assert reasons.list.len().is_between(1, 3).all()
    assert reasons.explode().str.contains("_").sum() == 0  # no raw feature names
    # value at risk = probability x net spend of the last 365 days, never negative
    assert (scores["value_at_risk_usd"] >= 0).all()


def test_fast_contributions_equal_lightgbm_pred_contrib(planted):
    orders, _, as_of, result = planted
    model = result.model
    prepared = churn.prepare_orders(orders, as_of)
    matrix = churn.encode(churn.build_features(prepared, as_of), model.vocab)
    fast = churn.tree_contributions(model.booster, matrix, model.best_iteration)
    reference = model.booster.predict(matrix, num_iteration=model.best_iteration, pred_contrib=True)
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-9)


def test_planted_drivers_show_up_as_reasons(planted):
    orders, _, as_of, result = planted
    scores = churn.score(result.model, orders, as_of, "v")
    cod_customers = orders.filter(pl.col("payment_method") == "cash_on_delivery")[
        "customer_id"
    ].unique()
    cod_scores = scores.filter(pl.col("customer_id").is_in(cod_customers.implode()))
    mentions_cod = cod_scores["top_reasons"].str.contains("cash on delivery").mean()
    card_scores = scores.filter(~pl.col("customer_id").is_in(cod_customers.implode()))
    assert mentions_cod > 0.3
    assert card_scores["top_reasons"].str.contains("cash on delivery").sum() == 0


def test_scoring_as_of_a_past_date_ignores_later_orders(planted):
    orders, _, as_of, result = planted
    past = as_of - timedelta(days=60)
    scores_full = churn.score(result.model, orders, past, "v")
    scores_cut = churn.score(result.model, orders.filter(pl.col("order_date") < past), past, "v")
    assert scores_full.equals(scores_cut)


def test_training_is_deterministic_and_never_reads_orders_after_as_of():
    orders, _ = simulate_orders(n_customers=700, days=700, seed=5)
    as_of = START + timedelta(days=600)
    settings = churn.ChurnSettings(horizon_days=60, n_train_cutoffs=3, cutoff_step_days=30)
    with_future = churn.train(orders, as_of, settings=settings, seed=1)
    without = churn.train(
        orders.filter(pl.col("order_date") < as_of), as_of, settings=settings, seed=1
    )
    assert with_future.backtest.metrics == without.backtest.metrics
    assert with_future.model.train_window == without.model.train_window
    assert with_future.model.train_window.endswith(str(as_of - timedelta(days=1)))
    # Same seed, same data before as_of: the same model, probability for probability.
    first = churn.score(with_future.model, orders, as_of, "v")
    second = churn.score(without.model, orders, as_of, "v")
    assert first["churn_probability"].equals(second["churn_probability"])


def test_orders_only_minimal_columns_train_and_score():
    orders, _ = simulate_orders(n_customers=900, days=800, seed=2)
    minimal = orders.select("store_id", "order_id", "customer_id", "order_date", "total_usd")
    as_of = START + timedelta(days=800)
    settings = churn.ChurnSettings(horizon_days=60, n_train_cutoffs=3, cutoff_step_days=30)
    result = churn.train(minimal, as_of, settings=settings, seed=1)
    scores = churn.score(result.model, minimal, as_of, "v")
    assert scores.height == minimal["customer_id"].n_unique()
    assert scores["churn_probability"].null_count() == 0
    # Without extra columns the model still ranks better than chance.
    assert result.backtest.metrics["auc"] > 0.6


def test_too_little_history_degrades_to_the_baselines_with_a_reason():
    # 100 customers over 120 days: too little to fit or backtest the learned model.
    orders, _ = simulate_orders(n_customers=100, days=120, seed=1)
    as_of = START + timedelta(days=120)
    result = churn.train(orders, as_of, seed=1)
    lightgbm = result.candidates["lightgbm"]
    assert not lightgbm["available"] and "not enough history" in lightgbm["reason"]
    assert result.model is None or result.models.lightgbm is None
    assert not result.approved
    assert result.candidates["bgnbd"]["available"] and result.candidates["recency"]["available"]
    assert result.champion in ("bgnbd", "recency")
    # Every customer is still scored, by the method the store asked for or the next
    # one down the chain, and the version names the method used.
    scores = churn.score_methods(
        result.models, orders, as_of, "v", method_of_store={"s1": "lightgbm"}
    )
    assert scores.height == orders.filter(pl.col("order_date") < as_of)["customer_id"].n_unique()
    assert (scores["model_version"] == "v/bgnbd").all()
    assert scores["churn_probability"].is_between(0.0, 1.0).all()


def test_generated_tiny_data_model_versus_baselines_and_oracle(
    tiny_sample, tiny_warehouse, tmp_path
):
    """On the generator's tiny data: the model is scored next to both baselines and
    the Bayes oracle (true rates and dropout probabilities, observed history). It must
    rank far better than days-since-last-order, at least match BG/NBD (the generator's
    process family, blind to the churn drivers), and stay below the oracle."""
    from homes import copy_warehouse

    from storepulse.sample_data.truth import load_truth, oracle_churn_probability
    from storepulse.warehouse import Warehouse, query

    with Warehouse(copy_warehouse(tiny_warehouse, tmp_path / "w.duckdb")).writer() as con:
        orders = query(con, "select * from staging.orders")
        customers = query(con, "select * from staging.customers")
        sessions = query(con, "select * from staging.sessions")
    as_of = orders["order_date"].max() + timedelta(days=1)
    result = churn.train(orders, as_of, customers=customers, sessions=sessions, seed=42)
    backtest = result.backtest
    truth = load_truth(tiny_sample)
    # Every order, cancelled ones included: they were purchases of the process.
    oracle = oracle_churn_probability(
        truth["customers"], orders, backtest.cutoff, 90, demand_calendar=truth["demand_calendar"]
    )
    # Accounts opened by fraudsters and resellers (_truth/risky_orders.csv) are no part of
    # the purchase process: the oracle has nothing to say about them.
    accounts = truth["risky_orders"].select("store_id", "customer_id").unique()
    predictions = backtest.predictions.join(accounts, on=["store_id", "customer_id"], how="anti")
    joined = predictions.join(oracle, on=["store_id", "customer_id"], how="left")
    assert joined["churn_probability"].null_count() == 0  # every customer has a truth row
    y = joined["churned"].to_numpy()
    oracle_metrics = churn.classification_metrics(
        y, joined["churn_probability"], joined["churn_probability"]
    )
    assert abs(joined["churn_probability"].mean() - y.mean()) < 0.03  # the oracle is calibrated
    # On about 800 customers per store the learned model may or may not beat BG/NBD;
    # the champion (what scores) must rank far better than recency, match BG/NBD and
    # stay below the oracle.
    champion = backtest.method_metrics()[result.champion]
    assert result.champion in ("lightgbm", "bgnbd"), result.candidates
    assert oracle_metrics["auc"] > champion["auc"]
    assert oracle_metrics["brier"] < champion["brier"]
    assert champion["auc"] > backtest.baseline_metrics["recency"]["auc"] + 0.03
    assert champion["auc"] >= backtest.baseline_metrics["bgnbd"]["auc"]
    assert champion["brier"] <= backtest.baseline_metrics["bgnbd"]["brier"]
    assert champion["brier"] < backtest.baseline_metrics["recency"]["brier"]
    # Information only (not the bar): the realised-dropout-date 'oracle' ranks higher.
    realised = realised_oracle(truth["customers"], backtest.predictions, backtest.cutoff, 90)
    realised_auc = roc_auc_score(realised["churned"], realised["realised_oracle"])
    assert realised_auc > oracle_metrics["auc"]


# ------------------------------------------------------------------ speed paths stay exact


def test_feature_sets_of_many_cutoffs_equal_one_cutoff_at_a_time():
    orders, _ = simulate_orders(n_customers=400, days=500, seed=7, stores=("s1", "s2"))
    # created_at disagrees with order_date for some orders: first/last order follow
    # created_at (then order_id), exactly as a per-cutoff group-by in that order does.
    rng = np.random.default_rng(7)
    shift = pl.Series(rng.integers(-3, 4, orders.height) * 3600 * 1_000_000)
    orders = orders.with_columns(
        created_at=pl.col("created_at") + pl.duration(microseconds=shift),
        ship_country=pl.when(pl.Series(rng.random(orders.height) < 0.3))
        .then(None)
        .otherwise(pl.Series(rng.choice(["US", "DE", "BR"], orders.height))),
    )
    as_of = START + timedelta(days=500)
    prepared = churn.prepare_orders(orders, as_of)
    cutoffs = [as_of, as_of - timedelta(days=90), as_of - timedelta(days=200), START]
    together = churn.build_feature_sets(prepared, cutoffs, horizon_days=90, with_prior=True)
    assert together[START].is_empty()  # nobody ordered before the first day
    for cutoff in cutoffs[:3]:
        alone = churn.build_features(prepared, cutoff, horizon_days=90)
        assert together[cutoff].equals(alone), cutoff
        past = prepared.filter(pl.col("order_date") < cutoff)
        ordered = past.sort("store_id", "customer_id", "created_at", "order_id")
        expected = ordered.group_by("store_id", "customer_id", maintain_order=True).agg(
            first_channel=pl.col("channel").first(),
            first_order_usd=pl.col("total_usd").first(),
            last_order_usd=pl.col("net_usd").last(),
            market=pl.col("ship_country").drop_nulls().first(),
            monetary_usd=pl.col("net_usd").sum(),
            orders_last_90_days=(pl.col("order_date") >= cutoff - timedelta(days=90))
            .sum()
            .cast(pl.Float64),
        )
        got = alone.select(expected.columns)
        assert got.height == expected.height > 100
        for name in ("first_channel", "market", "orders_last_90_days"):
            assert got[name].equals(expected[name]), (cutoff, name)
        for name in ("first_order_usd", "last_order_usd", "monetary_usd"):
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-9)


def _straightforward_top_reasons(features, contributions, horizon_days, k=3):
    """The reference: every reason's sentence for every row, stable descending sort."""
    by_reason = np.zeros((contributions.shape[0], len(churn.REASONS)))
    for j, name in enumerate(churn.FEATURES):
        by_reason[:, churn.REASONS.index(churn.REASON_OF_FEATURE[name])] += contributions[:, j]
    order = np.argsort(-by_reason, axis=1, kind="stable")[:, :k]
    positive = np.take_along_axis(by_reason, order, axis=1) > 0
    sentences = features.select(
        [expr.alias(reason) for reason, expr in churn.reason_texts(horizon_days).items()]
    )
    out = []
    for row in range(features.height):
        chosen = [
            sentences[churn.REASONS[order[row, i]]][row] for i in range(k) if positive[row, i]
        ]
        text = "; ".join(s for s in chosen if s is not None)
        out.append(text or "No strong churn signal")
    return out


def test_top_reasons_equal_the_straightforward_ranking_with_ties(planted):
    orders, _, as_of, result = planted
    features = churn.build_features(churn.prepare_orders(orders, as_of), as_of).head(400)
    rng = np.random.default_rng(11)
    # Rounded to one decimal: many exact ties, zeros and negatives.
    contributions = np.round(rng.normal(0.0, 1.0, (features.height, len(churn.FEATURES))), 1)
    contributions[:40] = -np.abs(contributions[:40])  # nothing raises the risk
    contributions[40:60] = -np.abs(contributions[40:60])
    contributions[40:60, :2] = np.abs(contributions[40:60, :2]) + 0.1  # recency, frequency
    fast = churn.top_reasons(features, contributions, 90).to_list()
    assert fast == _straightforward_top_reasons(features, contributions, 90)
    assert fast[:40] == ["No strong churn signal"] * 40
    assert len({t.count(";") for t in fast[40:]}) > 1  # one to three reasons


def test_fast_contributions_follow_lightgbm_missing_value_rules():
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=(n, 4))
    x[rng.random(n) < 0.2, 0] = np.nan  # NaN -> default direction
    x[rng.random(n) < 0.3, 1] = 0.0  # exact zeros (missing type 'Zero' below)
    x[:, 2] = rng.integers(0, 6, n).astype(float)  # a category code
    x[rng.random(n) < 0.1, 2] = np.nan
    y = np.nan_to_num(x[:, 0]) + (x[:, 1] == 0) + (x[:, 2] % 2) + rng.normal(size=n) > 0.8
    for zero_as_missing in (False, True):
        booster = lgb.train(
            {
                "objective": "binary",
                "num_leaves": 15,
                "min_data_in_leaf": 20,
                "zero_as_missing": zero_as_missing,
                "verbosity": -1,
                "seed": 1,
                "deterministic": True,
                "num_threads": 1,
            },
            lgb.Dataset(x, y.astype(float), categorical_feature=[2]),
            num_boost_round=25,
        )
        missing = {
            node["missing_type"]
            for tree in booster.dump_model()["tree_info"]
            for node in _internal_nodes(tree["tree_structure"])
        }
        assert ("Zero" if zero_as_missing else "NaN") in missing
        fast = churn.tree_contributions(booster, x, booster.num_trees())
        reference = booster.predict(x, pred_contrib=True)
        np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-9)


def _internal_nodes(node):
    if "split_feature" not in node:
        return []
    return [node, *_internal_nodes(node["left_child"]), *_internal_nodes(node["right_child"])]


def test_trend_reason_never_says_buying_less_when_they_are_not(planted):
    orders, _, as_of, _ = planted
    features = churn.build_features(churn.prepare_orders(orders, as_of), as_of)
    texts = features.select(
        "orders_last_90_days",
        "orders_prior_90_days",
        trend=churn.reason_texts(90)["trend"],
    )
    less = texts.filter(pl.col("trend").str.starts_with("Buying less"))
    assert less.height > 0
    assert (less["orders_last_90_days"] < less["orders_prior_90_days"]).all()
    steady = texts.filter(
        (pl.col("orders_last_90_days") >= pl.col("orders_prior_90_days"))
        & (pl.col("orders_last_90_days") > 0)
    )
    assert steady.height > 0
    assert steady["trend"].str.starts_with("Only ").all()
    assert not texts["trend"].str.contains(r"\b1 orders\b").any()
