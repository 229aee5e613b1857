"""Ad-ROI model against the generator's ground truth (issue #6), reproducibly.

    .venv/bin/python -m benchmarks.ad_roi_eval --seed 0            # small sample data
    .venv/bin/python -m benchmarks.ad_roi_eval --seed 7 --synthetic  # + independent worlds

Generates small sample data (cached under --cache, default /tmp/hD/), ingests it
into a DuckDB file of its own, reads the inputs the way the pipeline asset does
(pipelines.assets.ad_roi.load_inputs, as_of = last order day + 1), fits with the
asset's default settings and prints, per store x channel: the estimated incremental
ROAS with its p10-p90 interval, the ridge's, the true ROAS (`_truth/`), the MAPE
across channels, whether the channel ranking of each store matches the truth, and
for the budget plan the claimed store uplift against the true one (the generator's
true response to the planned spend minus to the actual spend, in the plan window).

It also prints a noise floor: the ROAS an OLS regression finds when it is handed
every channel's TRUE daily incremental series (exact carryover and saturation; only
the scale is estimated) with the same calendar. Its error is what the data allow.

`--synthetic` also scores the marketing-mix worlds of tests/test_ad_roi.py (Weibull
carryover, exponential saturation, a channel with no effect), seeds 3, 5 and 8.
`--json PATH` writes every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.sample_cache import generate_and_ingest

REPO = Path(__file__).resolve().parents[1]


def load(warehouse: Path) -> tuple[dict, object]:
    from storepulse.inputs.ad_roi import load_inputs
    from storepulse.warehouse import Warehouse

    work = warehouse.with_suffix(".eval.duckdb")  # never write to the cached file
    shutil.copyfile(warehouse, work)
    with Warehouse(work).writer() as con:
        last_order = con.execute("select max(order_date) from staging.orders").fetchone()[0]
        as_of = last_order + timedelta(days=1)
        inputs = load_inputs(con, as_of)
        aov = dict(
            con.execute(
                "select store_id, avg(total_usd) from staging.orders "
                "where not coalesce(is_cancelled, false) group by 1"
            ).fetchall()
        )
    work.unlink(missing_ok=True)
    inputs["order_value_usd"] = aov
    return inputs, as_of


def true_daily(truth: dict, store: str, channel: str, dates: list) -> tuple[np.ndarray, dict]:
    """The truth's daily USD spend of a channel on `dates` (zero outside) and its params."""
    daily = truth["channel_daily"].filter(
        (pl.col("store_id") == store) & (pl.col("channel") == channel)
    )
    by_day = dict(zip(daily["date"].to_list(), daily["spend_usd"].to_list(), strict=True))
    params = (
        truth["channels"]
        .filter((pl.col("store_id") == store) & (pl.col("channel") == channel))
        .row(0, named=True)
    )
    return np.array([by_day.get(d, 0.0) for d in dates]), params


def true_plan_gain(truth: dict, plan: pl.DataFrame, store: str, dates: list) -> float:
    """The generator's true revenue change when the plan's multipliers are applied to the
    plan window's actual spend (carryover inside the window included)."""
    from storepulse.sample_data import true_incremental_revenue

    mine = plan.filter(pl.col("store_id") == store)
    start = mine["plan_start"][0]
    window = np.array([d >= start for d in dates])
    gain = 0.0
    for row in mine.iter_rows(named=True):
        spend, params = true_daily(truth, store, row["channel"], dates)
        scaled = spend.copy()
        scaled[window] *= row["spend_multiplier"]
        before = true_incremental_revenue(params, spend)
        after = true_incremental_revenue(params, scaled)
        gain += float((after - before)[window].sum())
    return gain


def oracle_roas(panel, truth: dict, events_names: dict) -> dict[str, float]:
    """The noise floor: ROAS from an OLS of daily revenue on every channel's TRUE daily
    incremental series (exact carryover and saturation, only the scale is estimated)
    plus the regression's baseline (trend, weekday, yearly terms, events). What is
    left in its error is the data, not the model."""
    from models.ad_roi_ridge import BaselineDesign, RidgeConfig
    from storepulse.sample_data import true_incremental_revenue

    series, spend = {}, {}
    for c in panel.channels:
        spend[c], params = true_daily(truth, panel.store_id, c, panel.dates)
        series[c] = true_incremental_revenue(params, spend[c])
    design = BaselineDesign.for_window(panel.dates, sorted(events_names), RidgeConfig())
    baseline = design.matrix(panel.dates, events_names)
    coefs = np.linalg.lstsq(
        np.column_stack([*series.values(), baseline]), panel.revenue, rcond=None
    )[0]
    return {
        c: float(coefs[i] * series[c].sum() / spend[c].sum()) for i, c in enumerate(panel.channels)
    }


def generator_lift_tests(truth: dict, inputs: dict, orders_aov: dict, seed: int) -> tuple:
    """The lift tests the generator draws (storepulse.sample_data.lift_tests), from the
    truth's channel parameters and spend and the store's staged daily revenue, in
    USD; returns (the model's lift_tests frame, the truth rows)."""
    from storepulse.sample_data.lift_tests import draw_lift_tests

    frames, truths = [], []
    stores = sorted(truth["channels"]["store_id"].unique().to_list())
    for index, store in enumerate(stores):
        daily = truth["channel_daily"].filter(pl.col("store_id") == store)
        dates = sorted(daily["date"].unique().to_list())
        revenue = dict(
            inputs["daily_revenue"]
            .filter(pl.col("store_id") == store)
            .select("date", "revenue_usd")
            .iter_rows()
        )
        channels = {}
        for params in truth["channels"].filter(pl.col("store_id") == store).iter_rows(named=True):
            channels[params["channel"]] = (
                params,
                true_daily(truth, store, params["channel"], dates)[0],
            )
        landing, rows = draw_lift_tests(
            np.random.default_rng([seed, index, 1414]),
            store,
            dates[0],
            channels,
            np.array([revenue.get(d, 0.0) for d in dates]),
            orders_aov[store],
            "USD",
            np.ones(len(dates)),
        )
        frames.append(landing)
        truths.append(rows)
    landing = pl.concat(frames)
    model_frame = landing.select(
        "store_id",
        "channel",
        "start_date",
        "end_date",
        pl.col("test_spend").alias("test_spend_usd"),
        pl.col("incremental_revenue").alias("incremental_revenue_usd"),
        pl.coalesce("std_error", (pl.col("ci_high") - pl.col("ci_low")) / (2 * 1.6449)).alias(
            "std_error_usd"
        ),
        "scope",
        "source",
    )
    return model_frame, pl.concat(truths)


def ranking_matches(estimate: dict[str, float], truth: dict[str, float]) -> bool:
    channels = list(truth)
    return sorted(channels, key=estimate.get) == sorted(channels, key=truth.get)


def evaluate_small(
    seed: int,
    cache: Path,
    n_bootstrap: int | None,
    overrides: dict,
    scale: str = "small",
    with_lift_tests: bool = True,
) -> dict:
    from models import ad_roi
    from pipelines.assets.ad_roi import AdRoiConfig
    from storepulse.sample_data import load_truth

    # lift_tests.csv: the newest truth file load_truth reads; a cache from before the
    # generator wrote it is generated again instead of failing in load_truth
    landing, warehouse = generate_and_ingest(seed, cache, scale, "lift_tests.csv")
    truth = load_truth(landing)
    inputs, as_of = load(warehouse)
    settings = AdRoiConfig() if n_bootstrap is None else AdRoiConfig(n_bootstrap=n_bootstrap)
    config = dataclasses.replace(settings.settings(), **overrides)
    tests, tests_truth = generator_lift_tests(truth, inputs, inputs["order_value_usd"], seed)
    started = time.perf_counter()
    model = ad_roi.fit(
        inputs["daily_revenue"],
        inputs["daily_spend"],
        config,
        events=inputs["events"],
        end=as_of,
        lift_tests=tests if with_lift_tests else None,
    )
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    args = (inputs["daily_revenue"], inputs["daily_spend"])
    roi_all = ad_roi.channel_roi(
        model, *args, inputs["last_click"], inputs["events"], end=as_of, only_approved_stores=False
    )
    # The marts publish approved stores only, and plan from that table.
    roi = ad_roi.channel_roi(model, *args, inputs["last_click"], inputs["events"], end=as_of)
    plan = ad_roi.budget_plan(model, *args, roi, inputs["events"], end=as_of)
    next_tests = ad_roi.lift_plan(model, *args, inputs["events"], end=as_of, roi=roi_all)
    marts_seconds = time.perf_counter() - started
    panels = ad_roi.build_panels(*args, None, inputs["events"], as_of)

    overall = roi_all.filter(pl.col("period") == "all")
    rows, stores = [], {}
    for store, m in model.stores.items():
        mine = overall.filter(pl.col("store_id") == store)
        oracle = oracle_roas(panels[store], truth, panels[store].events)
        est, raw, tru, orc = {}, {}, {}, {}
        for r in mine.iter_rows(named=True):
            c = r["channel"]
            t = truth["channels"].filter((pl.col("store_id") == store) & (pl.col("channel") == c))
            if r["incremental_roas"] is None or t.is_empty():
                continue
            true_roas = float(t["true_roas"][0])
            est[c], raw[c], tru[c], orc[c] = (
                r["incremental_roas"],
                r["uncalibrated_roas"],
                true_roas,
                oracle[c],
            )
            rows.append(
                {
                    "store": store,
                    "channel": c,
                    "method": r["method"],
                    "spend_usd": r["spend_usd"],
                    "est": r["incremental_roas"],
                    "p10": r["incremental_roas_p10"],
                    "p90": r["incremental_roas_p90"],
                    "uncalibrated": r["uncalibrated_roas"],
                    "ridge": r["ridge_incremental_roas"],
                    "lightgbm": r["lightgbm_incremental_roas"]
                    if r["method"] == "ridge"
                    else r["incremental_roas"],
                    "true": true_roas,
                    "ape": abs(r["incremental_roas"] / true_roas - 1),
                    "ape_uncalibrated": abs(r["uncalibrated_roas"] / true_roas - 1),
                    "oracle": oracle[c],
                    "oracle_ape": abs(oracle[c] / true_roas - 1),
                    "in_interval": r["incremental_roas_p10"]
                    <= true_roas
                    <= r["incremental_roas_p90"],
                    "in_uncalibrated_interval": r["uncalibrated_roas_p10"]
                    <= true_roas
                    <= r["uncalibrated_roas_p90"],
                    "proven": r["effect_distinguishable_from_zero"],
                    "identified": r["identified"],
                    "confounded_with": r["confounded_with"],
                    "tests": r["lift_tests_used"],
                    "carryover": r["carryover"],
                    "approved": m.beats_baseline,
                }
            )
        entry = {
            "approved": m.beats_baseline,
            "champion": m.champion,
            "backtests": {k: v[m.gate_metric] for k, v in m.backtests.items()},
            "gate_metric": m.gate_metric,
            "ranking_match": ranking_matches(est, tru) if len(tru) > 1 else None,
            "uncalibrated_ranking_match": ranking_matches(raw, tru) if len(tru) > 1 else None,
            "oracle_ranking_match": ranking_matches(orc, tru) if len(tru) > 1 else None,
            "media_credit_ratio": (
                sum(est[c] * mine.filter(pl.col("channel") == c)["spend_usd"][0] for c in est)
                / sum(tru[c] * mine.filter(pl.col("channel") == c)["spend_usd"][0] for c in tru)
                if tru
                else None
            ),
            "lift_tests": m.lift_tests,
        }
        store_plan = plan.filter(pl.col("store_id") == store)
        if store_plan.height:
            moved = bool((store_plan["spend_multiplier"] - 1.0).abs().max() > 1e-9)
            claimed = float(store_plan["store_expected_revenue_change_usd"][0])
            entry.update(
                {
                    "plan_moved_money": moved,
                    "plan_claimed": claimed,
                    "plan_claimed_p10": float(store_plan["store_expected_revenue_change_p10"][0]),
                    "plan_true": true_plan_gain(truth, store_plan, store, panels[store].dates),
                    "plan_flags": sorted({f for f in store_plan["flag"].to_list() if f}),
                    "plan_multipliers": dict(
                        zip(store_plan["channel"], store_plan["spend_multiplier"], strict=True)
                    ),
                }
            )
        nxt = next_tests.filter(pl.col("store_id") == store)
        if nxt.height:
            entry["next_test"] = nxt.row(0, named=True)
        stores[store] = entry
    frame = pl.DataFrame(rows)
    return {
        "seed": seed,
        "scale": scale,
        "fit_seconds": fit_seconds,
        "marts_seconds": marts_seconds,
        "with_lift_tests": with_lift_tests,
        "mape": float(frame["ape"].mean()),
        "mape_uncalibrated": float(frame["ape_uncalibrated"].mean()),
        "mape_approved": float(frame.filter(pl.col("approved"))["ape"].mean())
        if frame["approved"].any()
        else None,
        "oracle_mape": float(frame["oracle_ape"].mean()),
        "interval_coverage": float(frame["in_interval"].mean()),
        "uncalibrated_interval_coverage": float(frame["in_uncalibrated_interval"].mean()),
        "lift_tests": tests_truth.to_dicts(),
        "rows": rows,
        "stores": stores,
        "skipped": model.skipped,
    }


def evaluate_synthetic(seeds=(3, 5, 8)) -> list[dict]:
    """Score the independent Weibull/exponential worlds of tests/test_ad_roi.py."""
    from models import ad_roi

    spec = importlib.util.spec_from_file_location("_world", REPO / "tests" / "test_ad_roi.py")
    world_module = importlib.util.module_from_spec(spec)
    sys.modules["_world"] = world_module
    spec.loader.exec_module(world_module)
    out = []
    for seed in seeds:
        world = world_module.make_world(seed=seed)
        started = time.perf_counter()
        model = ad_roi.fit(world.daily_revenue, world.daily_spend, world_module.FAST)
        seconds = time.perf_counter() - started
        roi = ad_roi.channel_roi(model, world.daily_revenue, world.daily_spend)
        plan = ad_roi.budget_plan(model, world.daily_revenue, world.daily_spend, roi)
        overall = roi.filter(pl.col("period") == "all")
        est = dict(zip(overall["channel"], overall["incremental_roas"], strict=True))
        truth = world.true_roas()
        paying = {c: v for c, v in truth.items() if v > 0}
        window = np.array([d >= plan["plan_start"][0] for d in world.dates])
        gain = 0.0
        for row in plan.iter_rows(named=True):
            spend = world.spend[row["channel"]]
            scaled = spend.copy()
            scaled[window] *= row["spend_multiplier"]
            response = world.channels[row["channel"]]
            gain += float(
                (response.incremental(scaled) - response.incremental(spend))[window].sum()
            )
        out.append(
            {
                "seed": seed,
                "fit_seconds": seconds,
                "mape": float(np.mean([abs(est[c] / paying[c] - 1) for c in paying])),
                "ranking_match": ranking_matches(est, paying),
                "zero_channel_lowest": all(
                    est[c] < min(est[p] for p in paying) for c in truth if c not in paying
                ),
                "est": est,
                "true": truth,
                "plan_claimed": float(plan["store_expected_revenue_change_usd"][0]),
                "plan_true": gain,
            }
        )
    return out


def _print_small(result: dict) -> None:
    print(f"\n=== {result.get('scale', 'small')} seed {result['seed']} ===")
    print(
        f"fit {result['fit_seconds']:.1f} s, marts {result['marts_seconds']:.1f} s; "
        f"skipped: {result['skipped'] or 'none'}"
    )
    tests = result["lift_tests"]
    print(
        f"generator lift tests: {len(tests)} ({sum(t['inconclusive'] for t in tests)} "
        f"inconclusive){'' if result['with_lift_tests'] else ' - not given to the model'}"
    )
    header = f"{'store':<20}{'channel':<10}{'meth':<6}{'est':>6}{'p10':>6}{'p90':>6}{'uncal':>6}"
    print(
        header + f"{'ridge':>6}{'lgbm':>6}{'true':>6}{'APE':>7}{'floor':>6} in id  tests carryover"
    )
    for r in result["rows"]:
        print(
            f"{r['store']:<20}{r['channel']:<10}{r['method'][:5]:<6}{r['est']:6.2f}{r['p10']:6.2f}"
            f"{r['p90']:6.2f}{r['uncalibrated']:6.2f}{r['ridge']:6.2f}"
            f"{r['lightgbm'] if r['lightgbm'] is not None else float('nan'):6.2f}{r['true']:6.2f}"
            f"{r['ape']:7.1%}{r['oracle']:6.2f}  {'y' if r['in_interval'] else '-'}"
            f"  {'y' if r['identified'] else '-'}  {r['tests']}     {r['carryover']}"
        )
    print(
        f"MAPE across channels: {result['mape']:.1%} (uncalibrated {result['mape_uncalibrated']:.1%}"
        f"; approved stores only: {result['mape_approved'] or float('nan'):.1%}); truth inside "
        f"p10-p90: {result['interval_coverage']:.0%} (uncalibrated "
        f"{result['uncalibrated_interval_coverage']:.0%})"
    )
    print(
        f"noise floor - OLS on the TRUE media series: MAPE {result['oracle_mape']:.1%}, ranking "
        + ", ".join(f"{s}={v['oracle_ranking_match']}" for s, v in result["stores"].items())
    )
    for store, s in result["stores"].items():
        plan = ""
        if "plan_claimed" in s:
            if s["plan_moved_money"]:
                verdict = "confirmed" if s["plan_true"] > 0 else "NOT confirmed"
                plan = (
                    f"plan claimed {s['plan_claimed']:+,.0f} (p10 {s['plan_claimed_p10']:+,.0f})"
                    f" vs true {s['plan_true']:+,.0f} [{verdict}]"
                    f" x{ {c: round(v, 2) for c, v in s['plan_multipliers'].items()} }"
                )
            else:
                plan = f"plan moves nothing ({'; '.join(s['plan_flags']) or 'optimum'})"
        backtests = " ".join(f"{k} {v:.3f}" for k, v in s["backtests"].items())
        print(
            f"  {store:<20} champion={s['champion']:<8} oot {s['gate_metric']}: {backtests}  "
            f"ranking={s['ranking_match']}  media credit {s['media_credit_ratio']:.2f}x truth"
        )
        print(f"      {plan}")
        for t in s["lift_tests"]:
            z = (
                f"z {t['z_score']:+.2f} -> {t['calibrated_z_score']:+.2f}"
                if t["z_score"] is not None
                else ""
            )
            print(
                f"      lift test {t['channel']} {t['start_date']}..{t['end_date']} measured "
                f"{t['measured_lift_usd']:+,.0f} ± {t['effective_std_error_usd']:,.0f} model "
                f"{t['model_lift_usd'] or 0:+,.0f} {z} [{t['status']}]"
            )
        if "next_test" in s:
            print(f"      next test: {s['next_test']['reason']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="sample seed (repeatable)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hD"))
    parser.add_argument("--n-bootstrap", type=int, default=None)
    parser.add_argument("--synthetic", action="store_true", help="also the independent worlds")
    parser.add_argument("--no-small", action="store_true", help="only the synthetic worlds")
    parser.add_argument(
        "--no-lift-tests", action="store_true", help="fit without the generator's lift tests"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--scale", default="small", help="sample scale (the issue's bar is on small)"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="AdRoiSettings override, e.g. learning_rate=0.1"
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value)
    results: dict = {"small": [], "synthetic": []}
    if not args.no_small:
        for seed in args.seed or [0]:
            result = evaluate_small(
                seed, args.cache, args.n_bootstrap, overrides, args.scale, not args.no_lift_tests
            )
            _print_small(result)
            results["small"].append(result)
    if args.synthetic or args.no_small:
        results["synthetic"] = evaluate_synthetic()
        print("\n=== independent synthetic worlds (tests/test_ad_roi.py) ===")
        for w in results["synthetic"]:
            est = {c: round(v, 2) for c, v in w["est"].items()}
            tru = {c: round(v, 2) for c, v in w["true"].items()}
            print(
                f"seed {w['seed']}: MAPE {w['mape']:.1%} ranking={w['ranking_match']} "
                f"zero-channel lowest={w['zero_channel_lowest']} plan claimed "
                f"{w['plan_claimed']:+,.0f} vs true {w['plan_true']:+,.0f} "
                f"({w['fit_seconds']:.0f} s)\n  est {est}\n  true {tru}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
