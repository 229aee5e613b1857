"""Customer value: BG/NBD + Gamma-Gamma against `lifetimes`' numbers on CDNOW, the
covariate MBG/NBD against a planted truth, the CLV model and the risk bands on the
generator's tiny data, and thin real data (30 bike shops) that must degrade, not fail.

The `lifetimes` figures below were computed with lifetimes 0.11.3 (BetaGeoFitter,
GammaGammaFitter, penalizer 0) on exactly these summaries (CDNOW before 1997-10-01);
the package is not a dependency, so its numbers are pinned here.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.optimize import approx_fprime

from benchmarks.churn_real import btyd_summary, load_bike_shops, load_cdnow
from models import bgnbd, churn, clv
from models.risk import RiskSettings, assign_risk, band_shares

CUTOFF = date(1997, 10, 1)
LIFETIMES_BGNBD = {"r": 0.250657, "alpha": 4.764954, "a": 0.746021, "b": 2.216007}
LIFETIMES_GG = {"p": 6.275359, "q": 3.62445, "v": 14.983689}
# Customers 00001, 00002, 00003, 00101, 05001, 20001 (rows 0, 1, 2, 100, 5000, 20000).
LIFETIMES_ROWS = [0, 1, 2, 100, 5000, 20000]
LIFETIMES_EXPECTED_90D = [0.070523, 0.07304, 0.222936, 0.07449, 0.074986, 0.089978]
LIFETIMES_P_ALIVE = [1.0, 1.0, 0.359191, 1.0, 1.0, 1.0]


@pytest.fixture(scope="module")
def cdnow():
    return load_cdnow()


def test_bgnbd_and_gamma_gamma_match_lifetimes_on_cdnow(cdnow):
    summary = btyd_summary(cdnow, CUTOFF)
    x, t_x, T = (summary[c].to_numpy() for c in ("x", "t_x", "T"))
    params = bgnbd.fit(x, t_x, T, resolution_weeks=1 / 7)
    for name, value in LIFETIMES_BGNBD.items():
        assert getattr(params, name) == pytest.approx(value, abs=1e-3), name
    h = 90 / 7
    expected = bgnbd.conditional_expected_purchases(params, x, t_x, T, h)[LIFETIMES_ROWS]
    np.testing.assert_allclose(expected, LIFETIMES_EXPECTED_90D, atol=1e-3)
    alive = bgnbd.p_alive(params, x, t_x, T)[LIFETIMES_ROWS]
    np.testing.assert_allclose(alive, LIFETIMES_P_ALIVE, atol=1e-3)
    # P(at least one order) = P(alive) (1 - ((alpha+T)/(alpha+T+h))^(r+x)), as the
    # benchmark computes it from lifetimes' parameters.
    p = LIFETIMES_BGNBD
    lifetimes_quiet = 1 - bgnbd.p_alive(
        bgnbd.BgNbdParams(**p, n_customers=0, converged=True), x, t_x, T
    ) * (1 - ((p["alpha"] + T) / (p["alpha"] + T + h)) ** (p["r"] + x))
    ours = bgnbd.p_no_purchase(params, x, t_x, T, h)
    assert np.abs(ours - lifetimes_quiet).max() < 1e-3
    # Gamma-Gamma on customers with a repeat purchase and positive mean repeat spend.
    days = clv.btyd_summary(clv.daily_values(clv.prepare_orders(cdnow, CUTOFF)), CUTOFF)
    repeat = days.filter((pl.col("x") > 0) & (pl.col("m") > 0))
    gg = bgnbd.fit_gamma_gamma(repeat["x"].to_numpy(), repeat["m"].to_numpy())
    for name, value in LIFETIMES_GG.items():
        assert getattr(gg, name) == pytest.approx(value, rel=1e-3), name


def test_conditional_expectation_matches_simulation():
    # Customers with a given history under known parameters: simulate their future.
    params = bgnbd.BgNbdParams(r=0.8, alpha=6.0, a=0.9, b=3.0, n_customers=0, converged=True)
    rng = np.random.default_rng(3)
    x, t_x, T, h = 2.0, 20.0, 40.0, 26.0
    n = 200_000
    alive = rng.random(n) < bgnbd.p_alive(params, [x], [t_x], [T])[0]
    rate = rng.gamma(params.r + x, 1.0 / (params.alpha + T), n)
    p = rng.beta(params.a, params.b + x, n)  # dropout posterior given x survivals
    count = np.zeros(n)
    t = np.zeros(n)
    active = alive.copy()
    while active.any():
        t[active] += rng.exponential(1.0 / rate[active])
        bought = active & (t <= h)
        count[bought] += 1
        active = bought & (rng.random(n) >= p)
    exact = bgnbd.conditional_expected_purchases(params, [x], [t_x], [T], h)[0]
    assert count.mean() == pytest.approx(exact, rel=0.02)


def simulate_covariate_mbg(n: int, seed: int):
    """MBG/NBD customers whose dropout and rate depend on two binary covariates."""
    rng = np.random.default_rng(seed)
    z = (rng.random((n, 2)) < 0.4).astype(float)
    rate = rng.gamma(0.8, 1.0 / (6.0 * np.exp(-(z @ np.array([0.3, 0.0])))), n)
    mean = 1 / (1 + np.exp(-(-0.5 + z @ np.array([1.2, -0.8]))))
    p = rng.beta(mean * 3.0, (1 - mean) * 3.0)
    T = rng.uniform(10, 80, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        if rng.random() < p[i]:
            continue  # MBG: may leave right after the first purchase
        t = 0.0
        while True:
            t += rng.exponential(1 / rate[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, T, z


def test_covariate_mbgnbd_recovers_planted_effects_and_its_gradient_is_exact():
    x, t_x, T, z = simulate_covariate_mbg(6000, seed=1)
    params = bgnbd.fit_covariates(x, t_x, T, z, resolution_weeks=0.01)
    assert params.dropout_effects[0] == pytest.approx(1.2, abs=0.35)
    assert params.dropout_effects[1] == pytest.approx(-0.8, abs=0.35)
    assert abs(params.rate_effects[1]) < 0.25
    # The analytic per-customer derivatives equal finite differences.
    r, alpha, a, b = 0.7, np.full(x.size, 5.0), np.full(x.size, 0.8), np.full(x.size, 2.0)

    def total(v):
        return bgnbd._mbg_terms(v[0], v[1], v[2], v[3], x, t_x, T)[0].sum()

    _, d_r, d_alpha, d_a, d_b = bgnbd._mbg_terms(r, alpha, a, b, x, t_x, T)
    numeric = approx_fprime(np.array([r, 5.0, 0.8, 2.0]), total, 1e-6)
    np.testing.assert_allclose(
        [d_r.sum(), d_alpha.sum(), d_a.sum(), d_b.sum()], numeric, rtol=1e-4, atol=1e-2
    )
    # No covariates: the plain MBG/NBD.
    plain = bgnbd.fit_covariates(x, t_x, T, np.zeros((x.size, 0)))
    assert plain.rate_effects == () and plain.dropout_effects == ()


# ----------------------------------------------------------------------- tiny sample


@pytest.fixture(scope="module")
def tiny(tiny_warehouse, tmp_path_factory):
    from homes import copy_warehouse

    from storepulse.warehouse import Warehouse, query

    path = copy_warehouse(tiny_warehouse, tmp_path_factory.mktemp("clv") / "w.duckdb")
    with Warehouse(path).writer() as con:
        orders = query(con, "select * from staging.orders")
        customers = query(con, "select * from staging.customers")
        sessions = query(con, "select * from staging.sessions")
    as_of = orders["order_date"].max() + timedelta(days=1)
    return orders, customers, sessions, as_of


@pytest.fixture(scope="module")
def tiny_clv(tiny):
    orders, customers, sessions, as_of = tiny
    result = clv.fit(orders, as_of, customers=customers, sessions=sessions, seed=0)
    scores = clv.score(
        result.model, orders, as_of, "clv-v1", customers=customers, sessions=sessions
    )
    return result, scores


def test_clv_scores_follow_the_contract(tiny, tiny_clv):
    orders, _, _, as_of = tiny
    result, scores = tiny_clv
    valid = orders.filter(~pl.col("is_cancelled").fill_null(False) & (pl.col("order_date") < as_of))
    assert list(scores.columns) == list(clv.CLV_COLUMNS)
    assert scores.height == valid.select("store_id", "customer_id").unique().height
    assert (
        scores.select(pl.all().exclude("expected_next_order_date").null_count()).sum_horizontal()[0]
        == 0
    )
    assert scores["p_alive"].is_between(0.0, 1.0).all()
    assert (scores["expected_orders_365d"] >= scores["expected_orders_90d"]).all()
    assert (scores["predicted_revenue_365d_usd"] >= 0).all()
    dates = scores["expected_next_order_date"].drop_nulls()
    assert dates.len() > 0 and (dates > as_of).all()
    assert (dates <= as_of + timedelta(days=365)).all()
    assert (scores["model_version"] == f"clv-v1/{result.champion}").all()
    # Customers who buy often and recently are expected sooner and worth more.
    top = scores.sort("expected_orders_365d", descending=True).head(50)
    bottom = scores.sort("expected_orders_365d").head(50)
    assert (
        top["predicted_revenue_365d_usd"].mean() > 5 * bottom["predicted_revenue_365d_usd"].mean()
    )


def test_clv_holdout_metrics_and_champion(tiny_clv):
    result, _ = tiny_clv
    holdout = result.backtest[90]
    base = holdout["metrics"]["bgnbd_gg"]
    # The BTYD baseline is an honest forecaster on the generator's process: its total
    # over the 90-day holdout is close to what happened, and ranks customers.
    assert abs(base["orders"]["aggregate_error"]) < 0.15
    deciles = base["calibration"]
    assert deciles[-1]["actual"] > 3 * max(deciles[0]["actual"], 0.01)
    for store, metrics in holdout["store_metrics"]["bgnbd_gg"].items():
        assert metrics["orders"]["n_customers"] > 100, store
    assert set(result.candidates) == set(clv.METHODS)
    if result.champion == "lightgbm":
        # Champion by the rule: better per customer, or not measurably worse with
        # a closer total.
        learned, btyd = (
            clv.flat_metrics(result.backtest, "lightgbm"),
            clv.flat_metrics(result.backtest, "bgnbd_gg"),
        )
        assert learned["orders_mse_diff"] is not None
        assert (
            learned["rmse_orders"] < btyd["rmse_orders"]
            and learned["rmse_revenue"] < btyd["rmse_revenue"]
        ) or (
            clv.no_worse_per_customer(learned)
            and abs(learned["aggregate_error"]) < abs(btyd["aggregate_error"])
        )


def test_risk_bands_rank_within_each_stores_active_customers(tiny):
    orders, customers, sessions, as_of = tiny
    result = churn.train(orders, as_of, customers=customers, sessions=sessions, seed=42)
    values = clv.score(clv.fit(orders, as_of, seed=0).model, orders, as_of, "v")
    scores = churn.score_methods(
        result.models, orders, as_of, "v", customers=customers, sessions=sessions, clv=values
    )
    shares = band_shares(scores)
    assert (shares["high_share"].is_between(0.10, 0.30)).all(), shares
    lapsed = scores.filter(pl.col("risk_band") == "lapsed")
    assert lapsed["risk_score"].null_count() == lapsed.height
    active = scores.filter(pl.col("risk_band") != "lapsed")
    assert ((active["risk_score"] > 80) == (active["risk_band"] == "high")).all()
    # Value at risk = predicted 365-day revenue x churn probability.
    joined = scores.join(values, on=["store_id", "customer_id"])
    np.testing.assert_allclose(
        joined["value_at_risk_usd"],
        (joined["predicted_revenue_365d_usd"] * joined["churn_probability"]).round(2),
        atol=0.011,
    )


def test_risk_score_is_a_percentile_within_the_store():
    frame = pl.DataFrame(
        {
            "store_id": ["a"] * 10 + ["b"] * 3,
            "churn_probability": [0.1 * i for i in range(10)] + [0.9, 0.95, 0.99],
            "recency_days": [10.0] * 9 + [400.0] + [5.0] * 3,
        }
    )
    out = assign_risk(frame, RiskSettings())
    a = out.filter(pl.col("store_id") == "a")
    assert a["risk_band"].to_list()[-1] == "lapsed"  # silent for over a year
    assert a["risk_score"].to_list()[:9] == [12, 23, 34, 45, 56, 67, 78, 89, 100]
    assert a["risk_band"].to_list()[:9] == ["low"] * 4 + ["medium"] * 3 + ["high"] * 2
    b = out.filter(pl.col("store_id") == "b")
    assert b["risk_score"].to_list() == [34, 67, 100]  # relative to its own store


# -------------------------------------------------------------------------- thin data


def test_thin_real_history_degrades_with_reasons():
    bikes = load_bike_shops()
    assert bikes["customer_id"].n_unique() == 30 and bikes.height == 322
    as_of = date(2011, 10, 1)
    history = bikes.filter(pl.col("order_date") < as_of)
    churned = churn.train(history, as_of, seed=0)
    assert not churned.candidates["lightgbm"]["available"]
    assert churned.candidates["lightgbm"]["reason"]
    scores = churn.score_methods(churned.models, history, as_of, "v")
    assert scores.height == history["customer_id"].n_unique()
    assert scores["model_version"].str.ends_with(f"/{churned.champion}").all()
    value = clv.fit(history, as_of, seed=0)
    assert value.champion == "bgnbd_gg" and "lightgbm" in value.model.unavailable
    clv_scores = clv.score(value.model, history, as_of, "v")
    assert clv_scores.height == scores.height
    assert clv_scores["predicted_revenue_365d_usd"].is_finite().all()


def test_a_75_day_store_scores_with_the_baselines():
    bikes = load_bike_shops()
    as_of = date(2011, 12, 29)
    young = bikes.filter(pl.col("order_date") >= as_of - timedelta(days=75))
    result = churn.train(young, as_of, seed=0)
    assert result.champion == "bgnbd"  # nothing labelled to backtest on
    scores = churn.score_methods(
        result.models, young, as_of, "v", method_of_store={"bike-shops": "lightgbm"}
    )
    assert (scores["model_version"] == "v/bgnbd").all()
    with pytest.raises(ValueError, match="unknown churn method"):
        result.models.resolve("magic")


def test_pick_champion_ties_go_to_the_simpler_method():
    same = {"auc": 0.8, "brier": 0.1}
    champion, _ = churn.pick_champion({"lightgbm": same, "bgnbd": same, "recency": same})
    assert champion == "recency"
    better = {"auc": 0.81, "brier": 0.09}
    champion, why = churn.pick_champion({"lightgbm": better, "bgnbd": same, "recency": None})
    assert champion == "lightgbm" and "beats" in why
    assert churn.pick_champion({})[0] == "bgnbd"


# ------------------------------------------------------------ faster paths, same numbers


def test_pooled_mbg_terms_equal_the_general_ones():
    rng = np.random.default_rng(3)
    n = 2000
    x = rng.integers(0, 12, n).astype(float)
    T = rng.uniform(1.0, 80.0, n)
    t_x = np.where(x > 0, rng.uniform(0.0, 1.0, n) * T, 0.0)
    alpha = rng.uniform(0.5, 30.0, n)
    concentration = 2.7
    mean = rng.uniform(0.05, 0.95, n)
    a, b = mean * concentration, (1.0 - mean) * concentration
    x_unique, x_index = np.unique(x, return_inverse=True)
    general = bgnbd._mbg_terms(0.8, alpha, a, b, x, t_x, T)
    pooled = bgnbd._mbg_terms_pooled(
        0.8, alpha, a, b, concentration, x, t_x, T, x_unique, x_index, np.flatnonzero(x > 0)
    )
    for old, new in zip(general, pooled, strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-10, atol=1e-12)


def test_bgnbd_likelihood_per_distinct_x_is_the_same_number():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 15, 3000).astype(float)
    T = rng.uniform(1.0, 60.0, 3000)
    t_x = np.where(x > 0, rng.uniform(0.0, 1.0, 3000) * T, 0.0)
    weights = rng.integers(1, 4, 3000).astype(float)
    x_unique, x_index = np.unique(x, return_inverse=True)
    theta = np.log([0.6, 4.0, 0.8, 2.5])
    for variant in ("bg", "mbg"):
        plain = bgnbd._neg_log_likelihood_and_gradient(theta, x, t_x, T, variant, weights)
        per_x = bgnbd._neg_log_likelihood_and_gradient(
            theta, x, t_x, T, variant, weights, x_unique, x_index
        )
        assert plain[0] == per_x[0]
        np.testing.assert_array_equal(plain[1], per_x[1])


def test_prior_from_the_features_mbg_fits_equals_a_refit(tiny):
    """The covariate prior starting from the MBG/NBD fits the features already made gives
    the same columns as refitting them."""
    from models.churn_features import OrderHistory, _with_bgnbd, build_feature_sets
    from models.churn_prior import PRIOR_EXPECTATION_COLUMNS, prior_columns

    orders, customers, _, as_of = tiny
    history = OrderHistory(churn.prepare_orders(orders, as_of))
    cutoff = as_of - timedelta(days=60)
    _, _, _, segments = history.base_features([cutoff], 365)
    assert segments.size >= 2  # several stores
    features = build_feature_sets(history, [cutoff], customers=customers, with_prior=True)[cutoff]
    fits = []
    _with_bgnbd(features, 90, segments, fits)
    assert len(fits) == segments.size
    refit = prior_columns(features, 90, segments)
    reused = prior_columns(features, 90, segments, fits)
    assert refit.equals(reused)
    columns = ["prior_p_alive", "prior_p_no_order", *PRIOR_EXPECTATION_COLUMNS]
    assert features.select(columns).equals(reused.select(columns))


def test_unique_rows_and_lazy_hypergeometric_equal_numpys():
    rng = np.random.default_rng(4)
    rows = np.column_stack(
        [rng.integers(0, 4, 3000), rng.integers(0, 3, 3000), np.round(rng.normal(0, 1, 3000), 1)]
    ).astype(float)
    unique, counts = bgnbd._unique_rows(rows)
    expected, expected_counts = np.unique(rows, axis=0, return_counts=True)
    np.testing.assert_array_equal(unique, expected)
    np.testing.assert_array_equal(counts, expected_counts)
    # log 2F1 with the Euler transformation evaluated only where 2F1 overflows.
    from scipy.special import hyp2f1

    a = rng.uniform(0.1, 400.0, 2000)
    b, c, z = a + rng.uniform(0.5, 300.0, 2000), a + 2.0 * rng.uniform(1.0, 300.0, 2000), 0.97
    with np.errstate(all="ignore"):
        direct = np.log(hyp2f1(a, b, c, z))
        transformed = np.log(hyp2f1(c - a, c - b, c, z)) + (c - a - b) * np.log1p(-z)
    assert (~np.isfinite(direct)).any() and np.isfinite(direct).any()
    np.testing.assert_array_equal(
        bgnbd._log_hyp2f1(a, b, c, z), np.where(np.isfinite(direct), direct, transformed)
    )


def test_gamma_gamma_gradient_is_exact():
    rng = np.random.default_rng(6)
    x = rng.integers(1, 9, 500).astype(float)
    m = rng.gamma(3.0, 10.0, 500)
    theta = np.log([2.0, 3.0, 20.0])
    value, gradient = bgnbd._gamma_gamma_nll_and_gradient(theta, x, m)
    assert value == pytest.approx(bgnbd._gamma_gamma_nll(theta, x, m))
    numeric = approx_fprime(theta, bgnbd._gamma_gamma_nll, 1e-7, x, m)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-6)


class _RawBooster:
    """Stands in for a LightGBM booster: fixed raw scores."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw

    def predict(self, matrix, num_iteration=None, raw_score=True):
        assert matrix.shape[0] == self.raw.size
        return self.raw


def test_learned_factors_keep_each_stores_total(tiny):
    """booster_factors' per-store normalisation (integer store codes) equals the
    per-store loop it replaced, and keeps each store's expected total."""
    from models.churn_lightgbm import category_vocab

    orders, customers, sessions, as_of = tiny
    frame = clv.scoring_frame(
        orders, as_of, clv.ClvSettings(), customers=customers, sessions=sessions
    )
    rng = np.random.default_rng(8)
    raw = [rng.normal(0.0, 0.7, frame.height) for _ in range(2)]
    model = clv.ClvBooster(
        _RawBooster(raw[0]), _RawBooster(raw[1]), category_vocab(frame, 20), 90, (1, 1), [], 0
    )
    orders_factor, revenue_factor = clv.booster_factors(model, frame)
    stores = frame["store_id"].to_numpy()
    assert np.unique(stores).size >= 2
    for got, r, base in (
        (orders_factor, raw[0], "prior_orders_90"),
        (revenue_factor, raw[1], "prior_revenue_90"),
    ):
        expected = frame[base].to_numpy()
        old = np.exp(r)
        for store in np.unique(stores):
            mask = stores == store
            total = float(np.sum(expected[mask] * old[mask]))
            if total > 0:
                old[mask] *= float(np.sum(expected[mask])) / total
            assert np.sum(expected[mask] * got[mask]) == pytest.approx(np.sum(expected[mask]))
        np.testing.assert_allclose(got, old, rtol=1e-12)


# --------------------------------------------------------------------- champion rule


def _flat(rmse_orders, rmse_revenue, aggregate, orders_diff=None, revenue_diff=None, se=1.0):
    return {
        "rmse_orders": rmse_orders,
        "rmse_revenue": rmse_revenue,
        "aggregate_error": aggregate,
        "orders_mse_diff": orders_diff,
        "orders_mse_diff_se": se if orders_diff is not None else None,
        "revenue_mse_diff": revenue_diff,
        "revenue_mse_diff_se": se if revenue_diff is not None else None,
    }


def test_learned_clv_wins_when_better_or_tied_per_customer_with_a_closer_total():
    base = _flat(0.80, 60.0, 0.05)
    # Better per customer on both: wins (the total may be a little further off).
    assert clv.learned_beats(_flat(0.79, 59.0, 0.06), base)
    # Slightly worse per customer, within noise, total closer: wins.
    assert clv.learned_beats(_flat(0.81, 61.0, 0.01, orders_diff=0.01, revenue_diff=1.5), base)
    # ... but not with a total no closer than BTYD's.
    assert not clv.learned_beats(_flat(0.81, 61.0, -0.05, orders_diff=0.01, revenue_diff=1.5), base)
    # Worse by more than NOISE_SE standard errors on either target: loses.
    assert not clv.learned_beats(_flat(0.81, 61.0, 0.01, orders_diff=2.5, revenue_diff=0.0), base)
    assert not clv.learned_beats(_flat(0.79, 61.0, 0.01, orders_diff=-1.0, revenue_diff=2.1), base)
    # Without paired differences only the per-customer rule applies.
    assert not clv.learned_beats(_flat(0.81, 59.0, 0.0), base)
    # An exact tie goes to BTYD.
    assert not clv.learned_beats(_flat(0.80, 60.0, 0.05, orders_diff=0.0, revenue_diff=0.0), base)


def _holdout(orders_rmse, revenue_rmse, paired=None):
    metrics = {
        "orders": {"rmse": orders_rmse, "mae": 0.3, "aggregate_error": 0.01, "n_customers": 500},
        "revenue": {"rmse": revenue_rmse},
    }
    if paired is not None:
        metrics["paired"] = paired
    return metrics


def test_flat_metrics_compare_revenue_on_the_same_holdout():
    paired = {"orders": {"mse_diff": -0.1, "se": 0.05}, "revenue": {"mse_diff": 3.0, "se": 2.0}}
    backtest = {
        90: {"metrics": {"bgnbd_gg": _holdout(0.8, 40.0), "lightgbm": _holdout(0.7, 39.0, paired)}},
        # The learned model could not be backtested a year back: BTYD alone has a
        # 365-day holdout, which must not be set against the learned model's 90 days.
        365: {"metrics": {"bgnbd_gg": _holdout(2.0, 180.0)}},
    }
    base, learned = clv.flat_metrics(backtest, "bgnbd_gg"), clv.flat_metrics(backtest, "lightgbm")
    assert base["revenue_holdout_days"] == learned["revenue_holdout_days"] == 90
    assert base["rmse_revenue"] == 40.0 and learned["revenue_mse_diff"] == 3.0
    backtest[365]["metrics"]["lightgbm"] = _holdout(1.9, 170.0, paired)
    assert clv.flat_metrics(backtest, "bgnbd_gg")["rmse_revenue"] == 180.0
    assert clv.flat_metrics(backtest, "lightgbm")["revenue_holdout_days"] == 365


def test_paired_differences_overall_and_per_store():
    rng = np.random.default_rng(5)
    n = 400
    actual = rng.poisson(0.5, n).astype(float)
    frame = pl.DataFrame(
        {
            "store_id": np.where(np.arange(n) < 150, "a", "b"),
            "actual_orders": actual,
            "actual_revenue": actual * 40.0,
            "pred_orders_h": rng.uniform(0, 1, n),
            "pred_revenue_h": rng.uniform(0, 40, n),
        }
    )
    base = frame.with_columns(
        pl.col("pred_orders_h") * 0.5 + 0.25, pl.col("pred_revenue_h") * 0.5 + 10.0
    )
    overall, stores = clv.paired_differences(frame, base)
    diff = (frame["pred_orders_h"] - actual).to_numpy() ** 2 - (
        base["pred_orders_h"] - actual
    ).to_numpy() ** 2
    assert overall["orders"]["mse_diff"] == pytest.approx(diff.mean())
    assert overall["orders"]["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(n))
    in_b = diff[150:]
    assert stores["b"]["orders"]["mse_diff"] == pytest.approx(in_b.mean())
    assert stores["b"]["orders"]["se"] == pytest.approx(in_b.std(ddof=1) / np.sqrt(in_b.size))
    assert set(stores) == {"a", "b"}


def test_the_lifecycle_chooses_and_explains_by_the_clv_rule():
    from pipelines.assets.churn import CLV_SPEC
    from storepulse.lifecycle import Candidates, choose

    base = {**_flat(0.80, 60.0, 0.05), "n": 5000, "revenue_holdout_days": 90}
    tied = {
        **_flat(0.81, 61.0, 0.01, orders_diff=0.01, revenue_diff=1.5),
        "n": 5000,
        "revenue_holdout_days": 90,
    }
    worse = {**tied, "orders_mse_diff": 2.5}
    candidates = Candidates(
        artifact=None,
        overall={"bgnbd_gg": base, "lightgbm": tied},
        per_store={
            "a": {"bgnbd_gg": base, "lightgbm": tied},
            "b": {"bgnbd_gg": base, "lightgbm": worse},
        },
        train_window="2025-01-01..2025-12-31",
    )
    decision = choose(CLV_SPEC, candidates)
    assert decision.champion == "lightgbm"
    assert decision.by_store == {"a": "lightgbm", "b": "bgnbd_gg"}
    assert "per customer not measurably worse" in decision.summary
    assert "total of orders +1.0% vs +5.0%" in decision.summary
    assert "per customer worse" in decision.why["b"]


def test_a_home_where_nobody_came_back_in_a_training_window_degrades_not_raises():
    """CDNOW (orders to early 1997) beside a store whose orders run through 2011: at the
    365-day backtest's training cutoffs only CDNOW's customers have history, and none of
    them ordered again. LightGBM's Poisson objective raised on the all-zero labels and
    took CLV down for both stores. Now that backtest has BG/NBD + Gamma-Gamma alone, the
    90-day one both methods, and every customer is scored."""
    cdnow = load_cdnow().filter(pl.col("order_date") < date(1997, 4, 1))
    bikes = load_bike_shops()
    orders = pl.concat([cdnow.select(bikes.columns), bikes])
    as_of = date(2011, 12, 29)
    value = clv.fit(orders, as_of, seed=0)
    assert set(value.backtest[365]["metrics"]) == {"bgnbd_gg"}
    assert set(value.backtest[90]["metrics"]) == {"bgnbd_gg", "lightgbm"}
    scored = clv.score(value.model, orders, as_of, "v")
    assert scored.height == orders["customer_id"].n_unique()
