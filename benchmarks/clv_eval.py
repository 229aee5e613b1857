"""Customer value and churn, checked where the answer is known.

1. CDNOW (real, orders only), at the cutoffs of benchmarks/churn_real.py: the CLV
   model is fitted as of each cutoff (orders before it only) and its champion
   predicts the next 90 days. Per-customer RMSE (and MAE) of purchase days next to
   BG/NBD (ours and `lifetimes`' when installed), and the aggregate: predicted total
   vs actual.
2. Generated small sample data (3 seeds) against the generator's truth:
   - churn as of the last fully observed 90 days (train on what came before): AUC
     and Brier of the champion, BG/NBD and the driver ceiling
     (`driver_ceiling_churn_probability`: Bayes P(churn) from the history and each
     customer's true prior); "gap closed" = (champion - BG/NBD) / (ceiling - BG/NBD);
   - CLV as of one year before the end: predicted 365-day revenue per customer vs
     the revenue the generator actually produced in that year (RMSE), champion vs
     BG/NBD + Gamma-Gamma;
   - risk bands on the default data (seed 0): share of "high" among each store's
     plausibly active customers.
3. Speed (small seed 0): CLV fit + score seconds, prediction throughput.

    python -m benchmarks.clv_eval [--seeds 0,1,2] [--workdir /tmp/clv-eval] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.churn_real import CUTOFFS, TENURE_BUCKETS, btyd_summary, labels, load_cdnow
from models import churn, clv
from models.risk import band_shares

SAMPLE_ORDERS_SQL = (
    "select store_id, order_id, customer_id, order_date, created_at, total_usd, "
    "refunded_amount_usd, discount_usd, subtotal_usd, is_cancelled, payment_method, "
    "channel, ship_country from staging.orders"
)
SAMPLE_CUSTOMERS_SQL = (
    "select store_id, customer_id, country, created_at, accepts_email_marketing, "
    "accepts_sms_marketing, ad_personalization_consent from staging.customers"
)
SAMPLE_SESSIONS_SQL = "select date, store_id, sessions from staging.sessions"


# ------------------------------------------------------------------------------ CDNOW


def lifetimes_expected(
    summary: pl.DataFrame, horizon_days: int, model: str = "bgnbd"
) -> np.ndarray | None:
    """Expected purchase days over the horizon from `lifetimes` (when installed): its
    BG/NBD, or its Pareto/NBD (model='pareto'), fitted on the same summary."""
    try:
        from lifetimes import BetaGeoFitter, ParetoNBDFitter
    except ImportError:
        return None
    import warnings

    x, t_x, T = (summary[c].to_numpy() for c in ("x", "t_x", "T"))
    fitter_class = ParetoNBDFitter if model == "pareto" else BetaGeoFitter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter = fitter_class(penalizer_coef=0.0).fit(x, t_x, T)
        return np.asarray(
            fitter.conditional_expected_number_of_purchases_up_to_time(
                horizon_days / 7.0, x, t_x, T
            )
        )


def cdnow_clv(orders: pl.DataFrame, cutoff: date, seed: int = 0) -> dict:
    started = time.perf_counter()
    result = clv.fit(orders.filter(pl.col("order_date") < cutoff), cutoff, seed=seed)
    frame = clv.scoring_frame(orders, cutoff, result.model.settings)
    days = clv.daily_values(clv.prepare_orders(orders, cutoff + timedelta(days=90)))
    actual = clv.outcomes(days, cutoff, 90)

    def joined(method: str) -> pl.DataFrame:
        scores = clv.predict(result.model, frame, cutoff, "v", default_method=method)
        return scores.join(actual, on=["store_id", "customer_id"], how="left").fill_null(0.0)

    rows = {"champion": joined(result.champion), "bgnbd_gg": joined("bgnbd_gg")}
    if "lightgbm" not in result.model.unavailable:
        rows["lightgbm"] = joined("lightgbm")
    out = {
        name: clv.value_metrics(f["actual_orders"].to_numpy(), f["expected_orders_90d"].to_numpy())
        for name, f in rows.items()
    }
    summary = btyd_summary(orders, cutoff)
    for name, model in (("lifetimes", "bgnbd"), ("lifetimes_pareto", "pareto")):
        peer = lifetimes_expected(summary, 90, model)
        if peer is None:
            break
        with_actual = (
            summary.select("store_id", "customer_id")
            .with_columns(predicted=pl.Series(peer))
            .join(actual, on=["store_id", "customer_id"], how="left")
            .fill_null(0.0)
        )
        out[name] = clv.value_metrics(
            with_actual["actual_orders"].to_numpy(), with_actual["predicted"].to_numpy()
        )
    return {
        "cutoff": cutoff.isoformat(),
        "champion": result.champion,
        "reason": result.candidates[result.champion]["reason"],
        "orders_90d": out,
        "seconds": round(time.perf_counter() - started, 1),
    }


def cdnow_table(rows: list[dict]) -> str:
    out = [
        "| cutoff | champion | RMSE champion | RMSE BG/NBD | RMSE lifetimes | MAE champion "
        "| MAE BG/NBD | predicted total (champion) | BG/NBD total | actual total "
        "| aggregate error champion | aggregate error BG/NBD |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        o = row["orders_90d"]
        ours, base = o["champion"], o["bgnbd_gg"]
        peer = o.get("lifetimes", {}).get("rmse")
        out.append(
            f"| {row['cutoff']} | {row['champion']} | {ours['rmse']:.4f} | {base['rmse']:.4f} "
            f"| {peer if peer is None else f'{peer:.4f}'} | {ours['mae']:.4f} "
            f"| {base['mae']:.4f} | {ours['predicted_total']:.0f} | {base['predicted_total']:.0f} "
            f"| {ours['actual_total']:.0f} | {ours['aggregate_error']:+.1%} "
            f"| {base['aggregate_error']:+.1%} |"
        )
    peers = [r for r in rows if "lifetimes_pareto" in r["orders_90d"]]
    if peers:
        out += [
            "",
            "Aggregate error of the textbook models (`lifetimes`, same data and cutoffs):",
            "",
            "| cutoff | BG/NBD | Pareto/NBD |",
            "|---|---|---|",
        ]
        for row in peers:
            o = row["orders_90d"]
            out.append(
                f"| {row['cutoff']} | {o['lifetimes']['aggregate_error']:+.1%} "
                f"| {o['lifetimes_pareto']['aggregate_error']:+.1%} |"
            )
    return "\n".join(out)


# ------------------------------------------------------------------ generated sample


def sample_inputs(seed: int, workdir: Path, scale: str = "small") -> tuple[dict, Path]:
    """Generate (once) and ingest a sample landing folder; staging frames + its path."""
    from storepulse.ingest import ingest_landing
    from storepulse.sample_data import generate
    from storepulse.warehouse import Warehouse, query

    landing = workdir / f"{scale}-{seed}" / "landing"
    staged = workdir / f"{scale}-{seed}" / "staged"
    if not (staged / "orders.parquet").exists():
        if not (landing / "_truth").exists():
            generate(landing, scale=scale, seed=seed, progress=False)
        staged.mkdir(parents=True, exist_ok=True)
        with Warehouse(staged / "warehouse.duckdb").writer() as con:
            ingest_landing(con, landing)
            for name, sql in (
                ("orders", SAMPLE_ORDERS_SQL),
                ("customers", SAMPLE_CUSTOMERS_SQL),
                ("sessions", SAMPLE_SESSIONS_SQL),
            ):
                query(con, sql).write_parquet(staged / f"{name}.parquet")
        (staged / "warehouse.duckdb").unlink()
    frames = {
        n: pl.read_parquet(staged / f"{n}.parquet") for n in ("orders", "customers", "sessions")
    }
    return frames, landing


def sample_churn(frames: dict, landing: Path, seed: int) -> dict:
    """Churn as deployed at the last fully observed 90-day cutoff, vs the driver ceiling."""
    from storepulse.sample_data.truth import driver_ceiling_churn_probability, load_truth

    orders = frames["orders"]
    end = orders["order_date"].max() + timedelta(days=1)
    cutoff = end - timedelta(days=90)
    inputs = {k: v for k, v in frames.items() if k != "orders"}
    result = churn.train(orders.filter(pl.col("order_date") < cutoff), cutoff, seed=42, **inputs)
    features = churn.scoring_features(orders, cutoff, result.models.settings, **inputs)
    truth = load_truth(landing)
    ceiling = driver_ceiling_churn_probability(
        truth["customers"],
        orders,
        cutoff,
        90,
        demand_calendar=truth["demand_calendar"],
        churn_drivers=truth["churn_drivers"],
    ).rename({"churn_probability": "ceiling"})
    frame = (
        labels(orders, cutoff)
        .join(ceiling, on=["store_id", "customer_id"], how="left")
        .join(
            features.select("store_id", "customer_id", "tenure_days"),
            on=["store_id", "customer_id"],
        )
    )
    for method in ("champion", *result.models.available):
        scores = churn.score_methods(
            result.models,
            orders,
            cutoff,
            "v",
            default_method=result.champion if method == "champion" else method,
            features=features,
            explain=False,
        )
        frame = frame.join(
            scores.select("store_id", "customer_id", pl.col("churn_probability").alias(method)),
            on=["store_id", "customer_id"],
        )
    y = frame["churned"].to_numpy()
    missing = frame["ceiling"].null_count()
    frame = frame.with_columns(pl.col("ceiling").fill_null(frame["ceiling"].mean()))
    m = {
        c: churn.classification_metrics(y, frame[c], frame[c])
        for c in ("champion", *result.models.available, "ceiling")
    }
    gap = m["ceiling"]["auc"] - m["bgnbd"]["auc"]
    interval = gap_closed_interval(
        y, *(frame[c].to_numpy() for c in ("champion", "bgnbd", "ceiling")), seed=seed
    )
    by_tenure = {}
    for low, high in TENURE_BUCKETS:
        part = frame.filter(pl.col("tenure_days").is_between(low, high, closed="left"))
        if part.height:
            yy = part["churned"].to_numpy()
            by_tenure[f"{low}-{high if high < 100_000 else ''}d"] = {
                c: churn.classification_metrics(yy, part[c], part[c])
                for c in ("champion", "bgnbd", "ceiling")
            }
    return {
        "by_tenure": by_tenure,
        "cutoff": cutoff.isoformat(),
        "champion": result.champion,
        "metrics": m,
        "gap_closed": round((m["champion"]["auc"] - m["bgnbd"]["auc"]) / gap, 3)
        if gap > 0
        else None,
        "gap_closed_p5_p95": interval,
        "customers_without_truth": missing,
    }


def gap_closed_interval(
    y: np.ndarray,
    champion: np.ndarray,
    bgnbd: np.ndarray,
    ceiling: np.ndarray,
    seed: int,
    resamples: int = 200,
) -> list[float] | None:
    """The 5th and 95th percentiles of "gap closed" over customers resampled with
    replacement (the three scores of a customer stay together): how much of the figure
    is which customers happened to be in the sample."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng([seed, 5])
    closed = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        a, b, c = (roc_auc_score(y[i], s[i]) for s in (champion, bgnbd, ceiling))
        if c > b:
            closed.append((a - b) / (c - b))
    return [round(float(q), 3) for q in np.percentile(closed, [5, 95])] if closed else None


def sample_clv(frames: dict, seed: int) -> dict:
    """CLV as deployed one year before the end vs the revenue of that year."""
    orders = frames["orders"]
    end = orders["order_date"].max() + timedelta(days=1)
    cutoff = end - timedelta(days=365)
    inputs = {k: v for k, v in frames.items() if k != "orders"}
    result = clv.fit(orders.filter(pl.col("order_date") < cutoff), cutoff, seed=seed, **inputs)
    frame = clv.scoring_frame(orders, cutoff, result.model.settings, **inputs)
    days = clv.daily_values(clv.prepare_orders(orders, end))
    actual = clv.outcomes(days, cutoff, 365)
    out = {}
    for name, method in (
        ("champion", result.champion),
        ("bgnbd_gg", "bgnbd_gg"),
        ("lightgbm", "lightgbm"),
    ):
        scores = (
            clv.predict(result.model, frame, cutoff, "v", default_method=method)
            .join(actual, on=["store_id", "customer_id"], how="left")
            .fill_null(0.0)
        )
        out[name] = {
            "revenue_365d": clv.value_metrics(
                scores["actual_revenue"].to_numpy(), scores["predicted_revenue_365d_usd"].to_numpy()
            ),
            "orders_365d": clv.value_metrics(
                scores["actual_orders"].to_numpy(), scores["expected_orders_365d"].to_numpy()
            ),
            "method_used": scores["model_version"][0].split("/")[-1],
        }
    return {
        "cutoff": cutoff.isoformat(),
        "champion": result.champion,
        "reason": result.candidates[result.champion]["reason"],
        "metrics": out,
    }


def sample_risk(frames: dict) -> pl.DataFrame:
    """Risk bands of the default data (scored at the end, champion per the backtest)."""
    orders = frames["orders"]
    end = orders["order_date"].max() + timedelta(days=1)
    inputs = {k: v for k, v in frames.items() if k != "orders"}
    result = churn.train(orders, end, seed=42, **inputs)
    model = clv.fit(orders, end, seed=0, **inputs).model
    values = clv.score(model, orders, end, "v", **inputs)
    scores = churn.score_methods(
        result.models, orders, end, "v", explain=False, clv=values, **inputs
    )
    return band_shares(scores)


def _interval(pair: list[float] | None) -> str:
    return "—" if pair is None else f"{pair[0]:.2f}-{pair[1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/storepulse-clv-eval"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-cdnow", action="store_true")
    args = parser.parse_args()
    report: dict = {}
    if not args.skip_cdnow:
        orders = load_cdnow()
        rows = [cdnow_clv(orders, cutoff) for cutoff in CUTOFFS]
        report["cdnow"] = rows
        print("CDNOW, CLV champion: 90-day purchase days per customer\n")
        print(cdnow_table(rows))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    report["sample"] = {}
    churn_rows, clv_rows = [], []
    for seed in seeds:
        frames, landing = sample_inputs(seed, args.workdir)
        c, v = sample_churn(frames, landing, seed), sample_clv(frames, seed)
        report["sample"][seed] = {"churn": c, "clv": v}
        m = c["metrics"]
        churn_rows.append(
            f"| {seed} | {c['cutoff']} | {c['champion']} | {m['champion']['auc']:.4f} "
            f"| {m['bgnbd']['auc']:.4f} | {m['ceiling']['auc']:.4f} | {c['gap_closed']:.2f} "
            f"| {_interval(c['gap_closed_p5_p95'])} "
            f"| {m['champion']['brier']:.4f} | {m['bgnbd']['brier']:.4f} | {m['ceiling']['brier']:.4f} |"
        )
        r = v["metrics"]
        clv_rows.append(
            f"| {seed} | {v['cutoff']} | {v['champion']} "
            f"| {r['champion']['revenue_365d']['rmse']:.2f} | {r['bgnbd_gg']['revenue_365d']['rmse']:.2f} "
            f"| {r['lightgbm']['revenue_365d']['rmse']:.2f} "
            f"| {r['champion']['revenue_365d']['aggregate_error']:+.1%} "
            f"| {r['bgnbd_gg']['revenue_365d']['aggregate_error']:+.1%} |"
        )
    print("\nSmall sample data, churn as of the last fully observed 90 days:\n")
    print(
        "| seed | cutoff | champion | AUC champion | AUC BG/NBD | AUC ceiling | gap closed "
        "| p5-p95 (customers resampled) | Brier champion | Brier BG/NBD | Brier ceiling |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(churn_rows))
    print("\nBy tenure at the cutoff (champion / BG/NBD / ceiling):\n")
    print("| seed | tenure | customers | AUC | Brier | lift@10% |\n|---|---|---|---|---|---|")
    for seed in seeds:
        for bucket, m in report["sample"][seed]["churn"]["by_tenure"].items():
            a, b, c = m["champion"], m["bgnbd"], m["ceiling"]
            print(
                f"| {seed} | {bucket} | {a['n_customers']} | {a['auc']:.4f} / {b['auc']:.4f} / "
                f"{c['auc']:.4f} | {a['brier']:.4f} / {b['brier']:.4f} / {c['brier']:.4f} | "
                f"{a['lift_top_decile']:.3f} / {b['lift_top_decile']:.3f} / {c['lift_top_decile']:.3f} |"
            )
    print(
        "\nSmall sample data, CLV as of a year before the end: 365-day revenue per customer (USD)\n"
    )
    print(
        "| seed | cutoff | champion | RMSE champion | RMSE BG/NBD+GG | RMSE lightgbm "
        "| aggregate champion | aggregate BG/NBD+GG |\n|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(clv_rows))
    if seeds:
        frames, _ = sample_inputs(seeds[0], args.workdir)
        shares = sample_risk(frames)
        report["risk_bands"] = shares.to_dicts()
        print(f"\nRisk bands, small seed {seeds[0]} (share of plausibly active customers):\n")
        print(shares)
        started = time.perf_counter()
        report["speed"] = clv.bench_stage(frames["orders"], frames["customers"], frames["sessions"])
        print(
            f"\nCLV speed, small seed {seeds[0]}: {report['speed']} ({time.perf_counter() - started:.0f} s)"
        )
    if args.json:
        args.json.write_text(json.dumps(report, default=str, indent=1))


if __name__ == "__main__":
    main()


def stage_clv(workdir: Path, scale: str, seed: int) -> dict:
    """Bench stage (benchmarks/stages.py signature) on the `ingest` stage's warehouse:
    CLV fit + score seconds and prediction throughput (models.clv.bench_stage)."""
    from benchmarks import features_peer
    from benchmarks.stages import staged_warehouse

    warehouse = staged_warehouse(workdir)
    as_of = features_peer.default_as_of(warehouse)
    inputs = features_peer.load_inputs(warehouse, as_of, "polars")
    return clv.bench_stage(inputs["orders"], inputs["customers"], inputs["sessions"], seed=seed)
