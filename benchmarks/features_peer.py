"""Features benchmark: our RFM + churn features (polars) next to plain pandas.

Ours: `models.rfm.score_rfm` at as_of, and `models.churn.prepare_orders` +
`models.churn.build_feature_sets` (all cutoffs in one vectorised pass, as
`churn.train` does) at every cutoff one weekly churn training and the nightly
scoring build features at (`feature_cutoffs`: as_of, the backtest cutoff, and
the monthly training cutoffs of the backtest model and the final model; 17
cutoffs with the default `ChurnSettings`).

Peer: the same features written the way an analyst writes them in pandas:
boolean helper columns, `groupby(...).agg(**named)`, `transform`, `merge`,
`rank`; vectorised, no row-wise `apply`. The BG/NBD / MBG/NBD summaries are
maximum-likelihood fits, not dataframe work: the peer calls the same
`models.bgnbd` numpy/scipy functions on its own (x, t_x, T) arrays, so both
sides spend the same time there; each side reports it (`bgnbd_seconds`) so
the dataframe part can be compared on its own (`*_ex_bgnbd_seconds`).

Both start from the same staging frames (loaded before the clock starts: the
pipeline's queries, polars for ours, pandas `.df()` for the peer) and must give
the same numbers: tests/test_bench_peers.py checks every column on the tiny
sample (np.allclose for numbers, equality for labels).
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from models import bgnbd, churn, churn_features, rfm
from storepulse.inputs import churn as churn_inputs

KEY = ["store_id", "customer_id"]


# --------------------------------------------------------------------------- inputs


def default_as_of(warehouse: Path) -> date:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        latest = con.execute("select max(order_date) from staging.orders").fetchall()[0][0]
    finally:
        con.close()
    return latest + timedelta(days=1)


def load_inputs(warehouse: Path, as_of: date, flavour: str) -> dict:
    """orders / customers / sessions before as_of as polars ('polars') or pandas ('pandas')."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        out = {}
        for name, sql in churn_inputs.QUERIES.items():  # the production queries
            rel = con.sql(sql, params=[as_of])
            out[name] = rel.pl() if flavour == "polars" else rel.df()
    finally:
        con.close()
    return out


def feature_cutoffs(as_of: date, settings: churn.ChurnSettings | None = None) -> list[date]:
    """Scoring (as_of) + the cutoffs of one `churn.train` (backtest model and final model)."""
    settings = settings or churn.ChurnSettings()
    test_cutoff = churn.backtest_cutoff(as_of, settings)
    cutoffs = {as_of, test_cutoff}
    for validation in (test_cutoff - timedelta(days=settings.horizon_days), test_cutoff):
        train, val = churn.plan_cutoffs(validation, settings)
        cutoffs.update(train)
        cutoffs.add(val)
    return sorted(cutoffs, reverse=True)


# --------------------------------------------------------------------------- timing


class Clock:
    """Wall and CPU seconds of named sections (CPU time is less hurt by a busy machine)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def section(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


# --------------------------------------------------------------------------- ours


def run_ours(
    inputs: dict, as_of: date, cutoffs: list[date], settings: churn.ChurnSettings | None = None
) -> tuple[pl.DataFrame, dict[date, pl.DataFrame], Clock]:
    settings = settings or churn.ChurnSettings()
    clock = Clock()
    original = churn_features._bgnbd_columns

    def timed_bgnbd(*args, **kwargs):
        with clock.section("bgnbd"):
            return original(*args, **kwargs)

    # Only to time the BG/NBD share (the same fits and probabilities, per store and
    # cutoff, as the peer's timed section); the function itself is unchanged.
    churn_features._bgnbd_columns = timed_bgnbd
    try:
        with clock.section("total"):
            scores = rfm.score_rfm(inputs["orders"], as_of)
            prepared = churn.prepare_orders(inputs["orders"], as_of)
            features = churn.build_feature_sets(
                prepared,
                cutoffs,
                customers=inputs["customers"],
                sessions=inputs["sessions"],
                horizon_days=settings.horizon_days,
                value_window_days=settings.value_window_days,
            )
    finally:
        churn_features._bgnbd_columns = original
    return scores, features, clock


# --------------------------------------------------------------------------- pandas: RFM


def pandas_rfm(
    orders: pd.DataFrame, as_of: date, settings: rfm.RfmSettings | None = None
) -> pd.DataFrame:
    """rfm.score_rfm in pandas (same settings object, same output columns)."""
    s = settings or rfm.RfmSettings()
    o = orders.copy()
    as_of_ts = pd.Timestamp(as_of)
    o["order_date"] = pd.to_datetime(o["order_date"])
    o = o[~o["is_cancelled"].fillna(False).astype(bool) & (o["order_date"] < as_of_ts)]
    o["net_usd"] = o["total_usd"].fillna(0.0) - o["refunded_amount_usd"].fillna(0.0)
    in_lookback = (
        o["order_date"] >= as_of_ts - pd.Timedelta(days=s.lookback_days)
        if s.lookback_days
        else pd.Series(True, index=o.index)
    )
    in_window = o["order_date"] >= as_of_ts - pd.Timedelta(days=s.high_value_window_days)
    o["order_in_lookback"] = o["order_id"].where(in_lookback)
    o["net_lookback"] = o["net_usd"].where(in_lookback, 0.0)
    o["net_window"] = o["net_usd"].where(in_window, 0.0)
    c = (
        o.groupby(KEY, sort=True)
        .agg(
            first_order_date=("order_date", "min"),
            last_order_date=("order_date", "max"),
            frequency=("order_in_lookback", "nunique"),
            monetary_usd=("net_lookback", "sum"),
            spend_last_window_usd=("net_window", "sum"),
        )
        .reset_index()
    )
    c["recency_days"] = (as_of_ts - c["last_order_date"]).dt.days.astype("int32")
    c["frequency"] = c["frequency"].astype("int32")
    c["monetary_usd"] = c["monetary_usd"].round(2)
    c["spend_last_window_usd"] = c["spend_last_window_usd"].round(2)

    def quintile(values: pd.Series) -> pd.Series:
        rank = values.groupby(c["store_id"]).rank(method="min")
        n = c.groupby("store_id")["customer_id"].transform("size")
        return (1 + (rank - 1) * 5 // n).clip(1, 5).astype("int8")

    c["r_score"] = quintile(-c["recency_days"])
    c["f_score"] = quintile(c["frequency"])
    c["m_score"] = quintile(c["monetary_usd"])
    fm = (s.f_weight * c["f_score"] + s.m_weight * c["m_score"]) / (s.f_weight + s.m_weight)
    c["fm_score"] = np.floor(fm + 0.5).clip(1, 5).astype("int8")
    c["rfm_cell"] = c["r_score"].astype(str) + c["f_score"].astype(str) + c["m_score"].astype(str)
    conditions = [
        c["r_score"].between(r0, r1) & c["fm_score"].between(f0, f1)
        for _, r0, r1, f0, f1 in s.segment_grid
    ]
    c["segment"] = np.select(conditions, [g[0] for g in s.segment_grid], default=None)
    tenure = (as_of_ts - c["first_order_date"]).dt.days
    c["lifecycle_stage"] = np.select(
        [
            c["recency_days"] > s.churned_after_days,
            c["spend_last_window_usd"] > s.high_value_usd,
            tenure <= s.new_within_days,
        ],
        ["churned", "high_value", "new"],
        default="active",
    )
    c["action"] = c["segment"].map(s.segment_actions)
    return c[list(rfm.OUTPUT_COLUMNS)]


# --------------------------------------------------------------------------- pandas: churn


def pandas_prepare_orders(orders: pd.DataFrame, as_of: date) -> pd.DataFrame:
    o = orders.copy()
    o["order_date"] = pd.to_datetime(o["order_date"])
    o = o[(o["order_date"] < pd.Timestamp(as_of)) & ~o["is_cancelled"].fillna(False).astype(bool)]
    o["created_at"] = pd.to_datetime(o["created_at"]).fillna(o["order_date"])
    o["total_usd"] = o["total_usd"].fillna(0.0)
    o["refunded_usd"] = o["refunded_amount_usd"].fillna(0.0)
    o["net_usd"] = o["total_usd"] - o["refunded_usd"]
    with warnings.catch_warnings():
        # The pattern's groups are alternations, not captures we want: a match test.
        warnings.filterwarnings(
            "ignore", message="This pattern is interpreted", category=UserWarning
        )
        o["is_cod"] = o["payment_method"].str.contains(churn.COD_PATTERN, regex=True)
    o["is_cod"] = o["is_cod"].fillna(False).astype(bool)
    return o[
        [
            "store_id",
            "customer_id",
            "order_id",
            "order_date",
            "created_at",
            "total_usd",
            "net_usd",
            "refunded_usd",
            "discount_usd",
            "subtotal_usd",
            "is_cod",
            "channel",
            "ship_country",
        ]
    ].reset_index(drop=True)


def _season_index(orders: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
    year_ago = cutoff - pd.Timedelta(days=365)
    ahead_end = year_ago + pd.Timedelta(days=horizon)
    behind_start = year_ago - pd.Timedelta(days=horizon)
    first = orders.groupby("store_id")["order_date"].min().rename("first")
    w = orders[(orders["order_date"] >= behind_start) & (orders["order_date"] < ahead_end)]
    counts = (
        w.assign(ahead=w["order_date"] >= year_ago, behind=w["order_date"] < year_ago)
        .groupby("store_id")[["ahead", "behind"]]
        .sum()
        .astype(float)
    )
    out = first.to_frame().join(counts, how="left")
    ok = (out["first"] <= behind_start) & (out["behind"] > 0)
    out["store_season_index"] = (out["ahead"] / out["behind"]).where(ok)
    return out[["store_season_index"]].reset_index()


def _session_trend(sessions: pd.DataFrame | None, cutoff: pd.Timestamp) -> pd.DataFrame:
    if sessions is None or sessions.empty:
        return pd.DataFrame({"store_id": pd.Series(dtype=str), "store_sessions_trend": []})
    s = sessions.copy()
    s["date"] = pd.to_datetime(s["date"])
    s = s[s["date"] < cutoff]
    days = (cutoff - s["date"]).dt.days
    s["last_30"] = s["sessions"].where(days <= 30, 0)
    s["prior_30"] = s["sessions"].where((days > 30) & (days <= 60), 0)
    t = s.groupby("store_id")[["last_30", "prior_30"]].sum().astype(float)
    t["store_sessions_trend"] = (t["last_30"] / t["prior_30"]).where(t["prior_30"] > 0)
    return t[["store_sessions_trend"]].reset_index()


def _bgnbd_columns(f: pd.DataFrame, horizon_days: int, clock: Clock | None) -> pd.DataFrame:
    """Per store, the same models.bgnbd fits and probabilities as ours."""
    horizon_weeks = horizon_days / bgnbd.DAYS_PER_WEEK
    out = {
        name: np.full(len(f), np.nan)
        for name in (
            "mbgnbd_p_alive",
            "mbgnbd_p_no_order",
            "bgnbd_p_alive",
            "bgnbd_p_no_order",
            "bgnbd_expected_orders",
        )
    }
    for _, idx in f.groupby("store_id", sort=False).indices.items():
        x = f["order_days"].to_numpy(float)[idx] - 1.0
        T = f["tenure_days"].to_numpy(float)[idx] / bgnbd.DAYS_PER_WEEK
        t_x = T - f["recency_days"].to_numpy(float)[idx] / bgnbd.DAYS_PER_WEEK
        with clock.section("bgnbd") if clock else _nothing():
            bg = bgnbd.fit(x, t_x, T)
            mbg = bgnbd.fit(x, t_x, T, variant="mbg")
            out["mbgnbd_p_alive"][idx] = bgnbd.p_alive(mbg, x, t_x, T, "mbg")
            out["mbgnbd_p_no_order"][idx] = bgnbd.p_no_purchase(
                mbg, x, t_x, T, horizon_weeks, "mbg"
            )
            out["bgnbd_p_alive"][idx] = bgnbd.p_alive(bg, x, t_x, T)
            out["bgnbd_p_no_order"][idx] = bgnbd.p_no_purchase(bg, x, t_x, T, horizon_weeks)
            out["bgnbd_expected_orders"][idx] = bgnbd.expected_purchases(
                bg, x, t_x, T, horizon_weeks
            )
    return f.assign(**out)


@contextmanager
def _nothing():
    yield


def pandas_churn_features(
    orders: pd.DataFrame,
    cutoff: date,
    *,
    customers: pd.DataFrame | None = None,
    sessions: pd.DataFrame | None = None,
    horizon_days: int = 90,
    value_window_days: int = 365,
    clock: Clock | None = None,
) -> pd.DataFrame:
    """churn.build_features in pandas; `orders` from pandas_prepare_orders."""
    c = pd.Timestamp(cutoff)
    past = orders[orders["order_date"] < c].sort_values(
        ["store_id", "customer_id", "created_at", "order_id"]
    )
    if past.empty:
        return pd.DataFrame()
    days = (c - past["order_date"]).dt.days
    last_90, prior_90 = days <= 90, (days > 90) & (days <= 180)
    past = past.assign(
        in_last_90=last_90.astype(float),
        in_prior_90=prior_90.astype(float),
        in_last_365=(days <= 365).astype(float),
        spend_last_90=past["net_usd"].where(last_90, 0.0),
        spend_prior_90=past["net_usd"].where(prior_90, 0.0),
        spend_last_365=past["net_usd"].where(days <= 365, 0.0),
        spend_value_window=past["net_usd"].where(days <= value_window_days, 0.0),
        discount_known=past["discount_usd"].notna(),
    )
    g = past.groupby(KEY, sort=True)
    f = g.agg(
        first_order_date=("order_date", "first"),
        last_order_date=("order_date", "max"),
        frequency=("order_id", "size"),
        order_days=("order_date", "nunique"),
        monetary_usd=("net_usd", "sum"),
        last_order_usd=("net_usd", "last"),
        total_usd=("total_usd", "sum"),
        refunded_usd=("refunded_usd", "sum"),
        discount_usd=("discount_usd", "sum"),
        subtotal_usd=("subtotal_usd", "sum"),
        discount_known=("discount_known", "any"),
        cod_share=("is_cod", "mean"),
        market=("ship_country", "first"),  # first non-null
        orders_last_90_days=("in_last_90", "sum"),
        orders_prior_90_days=("in_prior_90", "sum"),
        spend_last_90=("spend_last_90", "sum"),
        spend_prior_90=("spend_prior_90", "sum"),
        orders_last_365_days=("in_last_365", "sum"),
        spend_last_365_days=("spend_last_365", "sum"),
        spend_value_window_usd=("spend_value_window", "sum"),
    )
    # The first order's own values, nulls included (groupby "first" would skip nulls).
    first = past.drop_duplicates(KEY, keep="first").set_index(KEY)
    f["first_channel"] = first["channel"]
    f["first_order_usd"] = first["total_usd"]
    f["first_order_cod"] = first["is_cod"].astype(float)
    f["first_order_discount_share"] = (first["discount_usd"] / first["subtotal_usd"]).where(
        first["discount_usd"].notna() & (first["subtotal_usd"] > 0)
    )
    f["first_order_refund_share"] = (first["refunded_usd"] / first["total_usd"]).where(
        first["total_usd"] > 0
    )
    f = f.reset_index()
    # Inter-order gaps on distinct order days.
    visits = past[[*KEY, "order_date"]].drop_duplicates().sort_values([*KEY, "order_date"])
    visits["gap"] = visits.groupby(KEY)["order_date"].diff().dt.days
    gaps = visits.groupby(KEY)["gap"].agg(mean_gap_days="mean", gap_spread_days="std")
    f = f.merge(gaps.reset_index(), on=KEY, how="left")

    f["frequency"] = f["frequency"].astype(float)
    f["recency_days"] = (c - f["last_order_date"]).dt.days.astype(float)
    f["tenure_days"] = (c - f["first_order_date"]).dt.days.astype(float)
    f["aov_usd"] = f["total_usd"] / f["frequency"]
    f["discount_share"] = (f["discount_usd"] / f["subtotal_usd"]).where(
        f["discount_known"] & (f["subtotal_usd"] > 0)
    )
    f["refund_share"] = (f["refunded_usd"] / f["total_usd"]).where(f["total_usd"] > 0)
    f["order_trend_90_days"] = f["orders_last_90_days"] - f["orders_prior_90_days"]
    with np.errstate(invalid="ignore", divide="ignore"):
        f["spend_trend_90_days"] = np.log(f["spend_last_90"] + 1.0) - np.log(
            f["spend_prior_90"] + 1.0
        )
    f["days_past_usual_cycle"] = f["recency_days"] - f["mean_gap_days"]
    f["recency_over_usual_cycle"] = f["recency_days"] / f["mean_gap_days"].clip(lower=1.0)

    store = (
        f.assign(repeat=(f["order_days"] > 1).astype(float))
        .groupby("store_id")
        .agg(store_repeat_rate=("repeat", "mean"), store_median_gap=("mean_gap_days", "median"))
    )
    f = f.merge(store.reset_index(), on="store_id", how="left")
    f["recency_over_store_gap"] = f["recency_days"] / f["store_median_gap"].fillna(
        float(horizon_days)
    ).clip(lower=1.0)
    f = f.merge(_session_trend(sessions, c), on="store_id", how="left")
    f = f.merge(_season_index(orders, c, horizon_days), on="store_id", how="left")
    consent = ["accepts_email_marketing", "accepts_sms_marketing", "ad_personalization_consent"]
    if customers is not None and not customers.empty:
        extras = customers.drop_duplicates(KEY, keep="first")
        extras = extras[[*KEY, *[k for k in consent if k in extras], "country"]]
        for col in consent:
            if col in extras:
                extras[col] = extras[col].astype(float)
        f = f.merge(extras.rename(columns={"country": "customer_country"}), on=KEY, how="left")
        f["market"] = f["market"].fillna(f["customer_country"])
    for col in consent:
        if col not in f:
            f[col] = np.nan
    f = _bgnbd_columns(f, horizon_days, clock)
    missing = [name for name in churn.NUMERIC_FEATURES if name not in f]
    if missing:
        raise ValueError(
            f"models.churn has features the pandas peer does not compute: {missing}; "
            "add them to benchmarks/features_peer.py so the benchmark compares like with like"
        )
    numeric = {name: f[name].astype(float) for name in churn.NUMERIC_FEATURES}
    return pd.DataFrame(
        {
            "store_id": f["store_id"],
            "customer_id": f["customer_id"],
            **numeric,
            "first_channel": f["first_channel"],
            "market": f["market"],
            "last_order_date": f["last_order_date"],
            "spend_value_window_usd": f["spend_value_window_usd"],
        }
    )


def run_pandas(
    inputs: dict, as_of: date, cutoffs: list[date], settings: churn.ChurnSettings | None = None
) -> tuple[pd.DataFrame, dict[date, pd.DataFrame], Clock]:
    settings = settings or churn.ChurnSettings()
    clock = Clock()
    with clock.section("total"):
        scores = pandas_rfm(inputs["orders"], as_of)
        prepared = pandas_prepare_orders(inputs["orders"], as_of)
        features = {
            c: pandas_churn_features(
                prepared,
                c,
                customers=inputs["customers"],
                sessions=inputs["sessions"],
                horizon_days=settings.horizon_days,
                value_window_days=settings.value_window_days,
                clock=clock,
            )
            for c in cutoffs
        }
    return scores, features, clock


# --------------------------------------------------------------------------- checks


def mismatches(ours: pl.DataFrame, theirs: pd.DataFrame, key: list[str] = KEY) -> list[str]:
    """Columns whose values differ (numbers: np.allclose, NaN = NaN; else equality)."""
    a = ours.sort(key).to_pandas()
    b = theirs.sort_values(key).reset_index(drop=True)
    if len(a) != len(b) or not (a[key].to_numpy() == b[key].to_numpy()).all():
        return ["<rows>"]
    bad = []
    for col in ours.columns:
        if col not in b:
            bad.append(col)
            continue
        left, right = a[col], b[col]
        if pd.api.types.is_numeric_dtype(left) and not pd.api.types.is_bool_dtype(left):
            ok = np.allclose(
                left.to_numpy(float), right.to_numpy(float), equal_nan=True, rtol=1e-9, atol=1e-9
            )
        elif col.endswith("_date"):
            ok = (pd.to_datetime(left).to_numpy() == pd.to_datetime(right).to_numpy()).all()
        else:
            lv = left.astype(object).where(left.notna(), None).to_numpy()
            rv = right.astype(object).where(right.notna(), None).to_numpy()
            ok = bool((lv == rv).all())
        if not ok:
            bad.append(col)
    return bad


def best_of(run, inputs: dict, as_of: date, cutoffs: list[date], repeats: int):
    """Run `run_ours` or `run_pandas` `repeats` times: the output and the clock of the
    fastest repeat (the one a busy machine disturbed least), and every repeat's wall time."""
    best, walls = None, []
    for _ in range(repeats):
        out = run(inputs, as_of, cutoffs)
        walls.append(round(out[2].wall["total"], 3))
        if best is None or out[2].wall["total"] < best[2].wall["total"]:
            best = out
    return best, walls


def summary(
    clock: Clock, cutoffs: list[date], customers: int, repeat_seconds: list[float] | None = None
) -> dict:
    total, bg = clock.wall["total"], clock.wall.get("bgnbd", 0.0)
    cpu_total, cpu_bg = clock.cpu["total"], clock.cpu.get("bgnbd", 0.0)
    return {
        "work_seconds": round(total, 3),
        "repeat_seconds": repeat_seconds or [round(total, 3)],
        "work_cpu_seconds": round(cpu_total, 3),
        "bgnbd_seconds": round(bg, 3),
        "work_ex_bgnbd_seconds": round(total - bg, 3),
        "work_ex_bgnbd_cpu_seconds": round(cpu_total - cpu_bg, 3),
        "cutoffs": len(cutoffs),
        "customers_at_as_of": customers,
    }
