"""Partners, A/B tests and order risk against the generator's truth (issue #17), over seeds.

    .venv/bin/python -m benchmarks.growth_eval                 # small, seeds 0-19
    .venv/bin/python -m benchmarks.growth_eval --seeds 5 --scale small --json out.json
    .venv/bin/python -m benchmarks.growth_eval --partner-setting leak_prior_strength=0

Per seed: generate sample data (cached under --cache, default /tmp/growthdata/bench),
ingest it into a DuckDB file of its own (the landing folder as the pipeline sees it;
`_truth/` is never read by ingest), read the inputs with the production loaders
(storepulse.inputs.partners / experiments / order_risk, as_of = last order day + 1)
and run the models with their default settings, as the assets do, except that order
risk scores the whole history (lookback_days covers it) so every risky order is
ranked. Then, against `_truth/`:

- **A/B tests** (all seeds pooled, completed tests only): tests whose true effect is
  the planned one (the MDE at 80 % power) should be declared better about 80 % of
  the time; tests without an effect declared `no_difference` about 95 % of the time
  (alpha 0.05, two-sided); half-size effects at the power the formula gives them.
  Detection is shown with CUPED (the decision) and raw, with binomial 95 % intervals,
  next to the planned power. Also: the variance CUPED removed and how much narrower
  the intervals got; injected sample-ratio mismatches caught.
- **Partner scorecards**: orders and revenue per partner exactly the truth's
  attributed orders and revenue (orders the generator gave an unknown currency are
  quarantined by ingest and left out of the truth); whether each store's best and
  worst partner by ROI are the truth's (true ROI = incremental revenue of the
  customers the partner really brought, minus cost, over cost); the rank correlation.
- **Order risk**: precision at N (N = the true risky orders of the store, so it is
  also the recall at N) per store and pooled, precision of the flagged list, and
  every flagged order's reasons.

Prints one table per lever and the runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from benchmarks.sample_cache import generate_and_ingest

SETTING_HELP = "NAME=JSON: a PartnerSettings field for the scorecards (repeatable)"


@dataclass
class SeedResult:
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)
    experiments: pl.DataFrame | None = None
    partners: pl.DataFrame | None = None
    stores: pl.DataFrame | None = None
    risk: pl.DataFrame | None = None


def quarantined_by_design(landing: Path, dirt: pl.DataFrame) -> set[str]:
    ids = set()
    for item in dirt.filter(pl.col("kind") == "unknown_currency").iter_rows(named=True):
        frame = pl.read_csv(landing / item["file"], infer_schema=False)
        column = "order_id" if "order_id" in frame.columns else "Name"
        ids.add(frame[column][item["row_number"] - 1])
    return ids


def evaluate_seed(
    seed: int, cache: Path, scale: str, partner_settings: dict | None = None
) -> SeedResult:
    from models import experiments, order_risk, partners
    from storepulse.inputs import experiments as experiment_inputs
    from storepulse.inputs import order_risk as risk_inputs
    from storepulse.inputs import partners as partner_inputs
    from storepulse.sample_data import load_truth
    from storepulse.warehouse import Warehouse, query

    result = SeedResult(seed)
    started = time.perf_counter()
    landing, warehouse = generate_and_ingest(seed, cache, scale, "risky_orders.csv")
    result.seconds["generate_and_ingest"] = time.perf_counter() - started
    truth = load_truth(landing)
    with Warehouse(warehouse).reader() as con:
        as_of = query(con, "select max(order_date) + 1 as d from staging.orders")["d"][0]
        t0 = time.perf_counter()
        card = partners.partner_scorecard(
            partner_inputs.load_orders(con, as_of),
            partner_inputs.load_partners(con),
            as_of,
            partner_inputs.load_ad_spend(con, as_of),
            partners.PartnerSettings(**(partner_settings or {})),
        )
        t1 = time.perf_counter()
        readout = experiments.readout(
            experiment_inputs.load_assignments(con, as_of),
            experiment_inputs.load_orders(con, as_of),
            as_of,
        )
        t2 = time.perf_counter()
        history_days = int(
            query(con, "select date_diff('day', min(order_date), max(order_date)) + 2 as d "
                  "from staging.orders")["d"][0]
        )  # fmt: skip
        scores = order_risk.score_orders(
            risk_inputs.load_orders(con, as_of),
            risk_inputs.load_customers(con),
            risk_inputs.load_store_countries(con),
            as_of,
            order_risk.RiskSettings(lookback_days=history_days),
        )
        t3 = time.perf_counter()
    result.seconds.update(partners=t1 - t0, experiments=t2 - t1, order_risk=t3 - t2)

    # A/B tests: the primary metric's decision per test, next to its truth.
    primary = readout.filter(pl.col("is_primary") & ~pl.col("is_control")).select(
        "store_id", "experiment_id", "decision", "experiment_decision", "p_value",
        "raw_p_value", "variance_reduction", "ci_width_reduction", "lift",
    )  # fmt: skip
    result.experiments = (
        truth["experiments"]
        .join(primary, on=["store_id", "experiment_id"], how="left")
        .with_columns(pl.lit(seed).alias("seed"))
    )

    # Partners: exactness and ROI ranking.
    dropped = quarantined_by_design(landing, truth["dirt"])
    expected = (
        truth["partner_orders"]
        .filter(pl.col("valid") & ~pl.col("order_id").is_in(list(dropped)))
        .group_by("store_id", "partner_id")
        .agg(pl.len().alias("orders_truth"), pl.col("total_usd").sum().alias("revenue_truth"))
    )
    overall = card.rows.filter((pl.col("period") == "overall") & (pl.col("kind") != "paid_channel"))
    joined = (
        truth["partners"]
        .select("store_id", "partner_id", "true_roi", "costs_more_than_it_brings")
        .join(
            overall.select("store_id", "partner_id", "orders", "revenue_usd", "roi", "flags"),
            on=["store_id", "partner_id"],
            how="left",
        )  # fmt: skip
        .join(expected, on=["store_id", "partner_id"], how="left")
        .with_columns(
            pl.col("orders_truth").fill_null(0),
            pl.col("revenue_truth").fill_null(0.0),
            pl.lit(seed).alias("seed"),
        )
        .with_columns(
            (
                (pl.col("orders") == pl.col("orders_truth"))
                & ((pl.col("revenue_usd") - pl.col("revenue_truth")).abs() < 0.005)
            ).alias("exact")
        )
    )
    result.partners = joined
    stores = []
    for (store,), part in joined.filter(pl.col("roi").is_not_null()).group_by("store_id"):
        if part.height < 2:
            continue
        by_roi, by_truth = part.sort("roi"), part.sort("true_roi")
        stores.append(
            {
                "seed": seed,
                "store_id": store,
                "partners": part.height,
                "best_match": by_roi["partner_id"][-1] == by_truth["partner_id"][-1],
                "worst_match": by_roi["partner_id"][0] == by_truth["partner_id"][0],
                "spearman": part.select(pl.corr("roi", "true_roi", method="spearman")).item(),
            }
        )
    result.stores = pl.DataFrame(stores)

    # Order risk: precision at N per store.
    risky = (
        truth["risky_orders"]
        .select("store_id", "order_id")
        .with_columns(pl.lit(True).alias("risky"))
    )
    marked = scores.join(risky, on=["store_id", "order_id"], how="left").with_columns(
        pl.col("risky").fill_null(False)
    )
    rows = []
    for (store,), part in marked.group_by("store_id"):
        n = int(part["risky"].sum())
        top = part.sort(["risk_score", "created_at"], descending=[True, True]).head(n)
        flagged = part.filter("flagged")
        rows.append(
            {
                "seed": seed,
                "store_id": store,
                "orders": part.height,
                "risky": n,
                "hits_at_n": int(top["risky"].sum()),
                "flagged": flagged.height,
                "flagged_risky": int(flagged["risky"].sum()),
                "flagged_without_reasons": flagged.filter(
                    pl.col("flags").is_null() | (pl.col("flags") == "")
                ).height,
            }
        )
    result.risk = pl.DataFrame(rows)
    return result


def _interval(hits: int, n: int) -> str:
    """Share with a Wilson 95 % interval."""
    if n == 0:
        return "–"
    p, z = hits / n, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{p:6.1%} [{centre - half:5.1%}, {centre + half:5.1%}]  ({hits}/{n})"


def summarise(results: list[SeedResult]) -> dict:
    from models.experiments import power_proportion

    exp = pl.concat([r.experiments for r in results], how="diagonal_relaxed")
    done = exp.filter(~pl.col("running") & ~pl.col("srm_injected"))
    summary: dict = {"experiments": {}, "partners": {}, "order_risk": {}}
    lines = ["", "A/B tests (completed, no injected SRM; primary metric, fixed horizon)"]
    lines.append(f"  {'true effect':<22}{'tests':>6}   {'declared better (CUPED)':<40}"
                 f"{'raw test':<36}expected")  # fmt: skip
    for effect, expected_text in (
        ("planned", "about 80% (planned power)"),
        ("half", "power at half the MDE"),
        ("none", "no_difference about 95%"),
    ):
        part = done.filter(pl.col("effect") == effect)
        n = part.height
        if effect == "none":
            hits = int((part["experiment_decision"] == "no_difference").sum())
            raw_hits = int((part["raw_p_value"] >= part["alpha"]).sum())
            label = "none: no_difference"
        else:
            hits = int((part["decision"] == "better").sum())
            raw_hits = int(((part["raw_p_value"] < part["alpha"]) & (part["lift"] > 0)).sum())
            label = f"{effect}: better"
        if effect == "half" and n:
            conversion = part.filter(pl.col("primary_metric") == "conversion")
            powers = [
                power_proportion(b, m / 2, (c + t) / 2)
                for b, m, c, t in conversion.select(
                    "baseline", "planned_mde_abs", "assigned_control", "assigned_treatment"
                ).iter_rows()
            ] + [0.29] * (n - conversion.height)  # means: z(0.8)/2 - z(0.975) -> 0.29
            expected_text = f"about {sum(powers) / n:.0%} (formula)"
        lines.append(f"  {label:<22}{n:>6}   {_interval(hits, n):<40}{_interval(raw_hits, n):<36}"
                     f"{expected_text}")  # fmt: skip
        summary["experiments"][effect] = {"tests": n, "hits": hits, "raw_hits": raw_hits}
    srm = exp.filter(pl.col("srm_injected"))
    caught = int((srm["experiment_decision"] == "srm").sum())
    false_srm = int((done["experiment_decision"] == "srm").sum())
    lines.append(f"  injected sample-ratio mismatches caught: {caught}/{srm.height}; "
                 f"false alarms: {false_srm}/{done.height}")  # fmt: skip
    for kind, part in done.group_by("kind"):
        lines.append(
            f"  CUPED on {kind[0]:<24} variance removed {part['variance_reduction'].mean():6.1%}"
            f", interval narrower by {part['ci_width_reduction'].mean():6.1%} (mean of "
            f"{part.height} tests)"
        )
    summary["experiments"]["cuped_narrower_share"] = float(
        (done["ci_width_reduction"].fill_null(0) > 0).mean()
    )
    summary["experiments"]["srm"] = {"caught": caught, "injected": srm.height,
                                     "false_alarms": false_srm}  # fmt: skip

    partners = pl.concat([r.partners for r in results])
    stores = pl.concat([r.stores for r in results if r.stores is not None and r.stores.height])
    exact = int(partners["exact"].sum())
    lines += ["", "Partner scorecards"]
    lines.append(f"  orders and revenue exact to the cent: {exact}/{partners.height} partners")
    lines.append(
        f"  best partner by ROI is the truth's:  {_interval(int(stores['best_match'].sum()), stores.height)} stores"
    )
    lines.append(
        f"  worst partner by ROI is the truth's: {_interval(int(stores['worst_match'].sum()), stores.height)} stores"
    )
    lines.append(f"  Spearman ROI vs true ROI: median {stores['spearman'].median():.2f}, "
                 f"min {stores['spearman'].min():.2f} over {stores.height} stores")  # fmt: skip
    costly = partners.filter(pl.col("costs_more_than_it_brings"))
    flagged = int(costly["flags"].str.contains("costs more").fill_null(False).sum())
    lines.append(
        f"  partners that truly cost more than they bring, flagged: {flagged}/{costly.height}"
    )
    summary["partners"] = {
        "exact": exact, "partners": partners.height,
        "best_match": int(stores["best_match"].sum()), "worst_match": int(stores["worst_match"].sum()),
        "stores": stores.height, "spearman_median": float(stores["spearman"].median()),
        "costly_flagged": flagged, "costly": costly.height,
    }  # fmt: skip
    mismatched = stores.filter(~pl.col("best_match") | ~pl.col("worst_match"))
    for row in mismatched.iter_rows(named=True):
        lines.append(f"    mismatch: seed {row['seed']} {row['store_id']} ({row['partners']} partners, "
                     f"Spearman {row['spearman']:.2f})")  # fmt: skip

    risk = pl.concat([r.risk for r in results])
    hits, n = int(risk["hits_at_n"].sum()), int(risk["risky"].sum())
    lines += ["", "Order risk (whole history scored; N = true risky orders)"]
    lines.append(f"  precision at N, pooled: {_interval(hits, n)}")
    per_store = risk.filter(pl.col("risky") > 0).with_columns(
        (pl.col("hits_at_n") / pl.col("risky")).alias("p")
    )
    lines.append(f"  precision at N per store: median {per_store['p'].median():.2f}, min "
                 f"{per_store['p'].min():.2f} over {per_store.height} stores")  # fmt: skip
    for row in per_store.filter(pl.col("p") < 0.6).iter_rows(named=True):
        lines.append(f"    below 0.6: seed {row['seed']} {row['store_id']} {row['hits_at_n']}/"
                     f"{row['risky']} ({row['orders']:,} orders)")  # fmt: skip
    flagged_hits = _interval(int(risk["flagged_risky"].sum()), int(risk["flagged"].sum()))
    lines.append(f"  flagged orders that are risky: {flagged_hits}")
    lines.append(f"  flagged orders without reasons: {int(risk['flagged_without_reasons'].sum())}")
    summary["order_risk"] = {
        "hits_at_n": hits, "risky": n, "per_store_min": float(per_store["p"].min()),
        "flagged": int(risk["flagged"].sum()), "flagged_risky": int(risk["flagged_risky"].sum()),
        "flagged_without_reasons": int(risk["flagged_without_reasons"].sum()),
    }  # fmt: skip
    summary["lines"] = lines
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/growthdata/bench"))
    parser.add_argument("--keep", action="store_true", help="keep generated data and warehouses")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--partner-setting", action="append", default=[], help=SETTING_HELP)
    args = parser.parse_args()
    partner_settings = {
        name: json.loads(value)
        for name, value in (item.split("=", 1) for item in args.partner_setting)
    }
    started = time.perf_counter()
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        result = evaluate_seed(seed, args.cache, args.scale, partner_settings)
        results.append(result)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()),
              flush=True)  # fmt: skip
        if not args.keep:
            shutil.rmtree(args.cache / f"{args.scale}-seed{seed}", ignore_errors=True)
    summary = summarise(results)
    seconds = time.perf_counter() - started
    print("\n".join(summary.pop("lines")))
    stage = {k: sum(r.seconds.get(k, 0.0) for r in results) for k in results[0].seconds}
    print(f"\nruntime {seconds:.0f} s for {len(results)} seeds ({args.scale}): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in stage.items()))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({**summary, "seconds": seconds, "stages": stage}, indent=2))


if __name__ == "__main__":
    main()
