"""Independent marketing-mix worlds for the ad-ROI model (issue 14).

    .venv/bin/python -m benchmarks.ad_roi_worlds                      # quick: 2 seeds a family
    .venv/bin/python -m benchmarks.ad_roi_worlds --seeds 6 --jobs 2 --json out.json  # full
    .venv/bin/python -m benchmarks.ad_roi_worlds --families correlated_pair --seeds 3
    .venv/bin/python -m benchmarks.ad_roi_worlds --seeds 20 --methods ridge --test-noise 0  # exact tests
    .venv/bin/python -m benchmarks.ad_roi_worlds --seeds 6 --jobs 2 --tests planned  # the lift plan's tests

Runtime on 2 shared cores: quick (14 worlds, both media models) about 70 s; full
(6 seeds, 42 worlds, --jobs 2) about 2.5 minutes; --methods ridge alone well under
a minute.

The worlds themselves are benchmarks/mix_worlds.py.

Scored per family (averaged over seeds):
- ROAS MAPE of the published method (channels with true ROAS >= 0.5; the others'
  absolute error is shown apart), and the same with 2-3 lift tests per world;
- the noise floor: the ROAS an OLS finds when handed every channel's TRUE daily
  response series next to a generic baseline (trend with knots, weekly and yearly
  terms, Black Friday and Christmas windows) that is written here, not taken from
  the model; its error is what the data allow;
- ranking: over channel pairs whose true ROAS differ (relatively) by more than the
  family's noise floor, the share the model orders right;
- coverage: the share of channels whose true ROAS lies inside the p10-p90 interval;
- beats no-media: the share of worlds with media >= 20 % of revenue where the
  method's out-of-time backtest error is below the no-media baseline's;
- unidentified: the share of channels flagged as not separable, and for the
  correlated pair, whether it was flagged without tests and split right with them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.mix_worlds import FAMILIES, STORE, World, make_world, oracle_roas

MAPE_MIN_ROAS = 0.5  # below this a relative error says little; shown as absolute error

# --------------------------------------------------------------------------- scoring


def score_world(
    family: str,
    seed: int,
    methods: tuple[str, ...],
    config_overrides: dict | None = None,
    test_noise: float = 1.0,
    tests_mode: str = "random",
) -> dict:
    """Fit the model on one world (with 2-3 lift tests, read both calibrated and not)
    and compare every channel with the truth. tests_mode 'random': the tests fall on
    channels drawn by spend, with random designs (`World.lift_tests`); 'planned': each
    test is the one the model's own lift plan asks for after the tests before it
    (`planned_lift_tests`)."""
    import dataclasses

    from models import ad_roi

    world = make_world(family, seed)
    events = world.events()
    rng = np.random.default_rng([seed, 99, list(FAMILIES).index(family)])
    count = int(rng.integers(2, 4))
    config = ad_roi.AdRoiSettings(n_jobs=1, methods=methods, seed=seed)
    if config_overrides:
        ridge_overrides = config_overrides.get("ridge", {})
        rule_overrides = config_overrides.get("lift_test_rules", {})
        top = {k: v for k, v in config_overrides.items() if k not in ("ridge", "lift_test_rules")}
        config = dataclasses.replace(
            config,
            ridge=dataclasses.replace(config.ridge, **ridge_overrides),
            lift_test_rules=dataclasses.replace(config.lift_test_rules, **rule_overrides),
            **top,
        )
    if tests_mode == "planned":
        tests, tests_truth = planned_lift_tests(world, config, events, count, rng, test_noise)
    else:
        tests, tests_truth = world.lift_tests(rng, count, test_noise)
    started = time.perf_counter()
    model = ad_roi.fit(
        world.daily_revenue, world.daily_spend, config, events=events, lift_tests=tests
    )
    seconds = time.perf_counter() - started
    store = model.stores[STORE]
    truth, oracle = world.true_roas(), oracle_roas(world)
    frames = {}
    for method in methods:
        for calibrated in (False, True):
            roi = ad_roi.channel_roi(
                model,
                world.daily_revenue,
                world.daily_spend,
                events=events,
                method=method,
                calibrated=calibrated,
            ).filter(pl.col("period") == "all")
            frames[(method, calibrated)] = {r["channel"]: r for r in roi.iter_rows(named=True)}
    channels = {}
    for c in world.channels:
        entry = {"true": truth[c], "oracle": oracle[c], "spend": float(world.spend[c].sum())}
        for (method, calibrated), rows in frames.items():
            r = rows[c]
            tag = f"{method}{'_cal' if calibrated else ''}"
            entry[tag] = {
                "est": r["incremental_roas"],
                "p10": r["incremental_roas_p10"],
                "p90": r["incremental_roas_p90"],
                "identified": r["identified"],
                "confounded_with": r["confounded_with"],
            }
        channels[c] = entry
    return {
        "family": family,
        "seed": seed,
        "days": len(world.dates),
        "noise_sd": world.noise_sd,
        "media_share": world.media_share(),
        "pair": list(world.pair) if world.pair else None,
        "fit_seconds": seconds,
        "backtests": store.backtests,
        "beats_none": {m: store.beats_none(m) for m in store.backtests if m != "none"},
        "champion": store.champion,
        "channels": channels,
        "lift_tests": [
            {**t, "measured": r["incremental_revenue_usd"], "se": r["std_error_usd"]}
            for t, r in zip(
                tests_truth, tests.iter_rows(named=True) if tests is not None else [], strict=True
            )
        ],
        "tests_mode": tests_mode,
        "lift_test_status": [t["status"] for t in store.lift_tests],
        "notes": world.notes,
    }


def planned_lift_tests(
    world: World, config, events: pl.DataFrame, count: int, rng: np.random.Generator, noise: float
) -> tuple[pl.DataFrame | None, list]:
    """`count` tests run the way a merchant following marts.lift_plan would: fit (the
    ridge, with the tests so far), take the plan's test (channel, duration, holdout
    share), run it in the world (`World.planned_test`, before the previous test's
    window), and again. What the plan's choice of channel and design is worth to the
    ROAS, next to tests placed at random."""
    import dataclasses

    from models import ad_roi

    planning = dataclasses.replace(config, methods=("ridge",))
    rows, truth, before = [], [], len(world.dates)
    for _ in range(count):
        model = ad_roi.fit(
            world.daily_revenue,
            world.daily_spend,
            planning,
            events=events,
            lift_tests=pl.DataFrame(rows) if rows else None,
        )
        plan = ad_roi.lift_plan(model, world.daily_revenue, world.daily_spend, events=events)
        if plan.is_empty():
            break
        asked = plan.row(0, named=True)
        drawn = world.planned_test(
            rng, asked["channel"], int(asked["duration_days"]), float(asked["holdout_share"]),
            before, noise,
        )  # fmt: skip
        if drawn is None:
            break
        row, true, before = drawn
        rows.append(row)
        truth.append(true)
    return (pl.DataFrame(rows) if rows else None), truth


def _ape(est: float, true: float) -> float:
    return abs(est / true - 1.0)


def summarise(results: list[dict], methods: tuple[str, ...]) -> dict:
    """Per family (and 'all'): the metrics of the module docstring."""
    by_family: dict[str, list[dict]] = {}
    for r in results:
        by_family.setdefault(r["family"], []).append(r)
    by_family["all"] = results
    table = {}
    for family, worlds in by_family.items():
        big = [c for w in worlds for c in w["channels"].values() if c["true"] >= MAPE_MIN_ROAS]
        small = [c for w in worlds for c in w["channels"].values() if c["true"] < MAPE_MIN_ROAS]
        floor = float(np.mean([_ape(c["oracle"], c["true"]) for c in big]))
        row = {"worlds": len(worlds), "channels": len(big) + len(small), "noise_floor": floor}
        media_worlds = [w for w in worlds if w["media_share"] >= 0.2]
        row["worlds_media_20"] = len(media_worlds)
        row["oracle_ranking"] = _ranking(worlds, "oracle", floor)
        for method in methods:
            for cal in ("", "_cal"):
                tag = method + cal
                row[f"{tag}_mape"] = float(np.mean([_ape(c[tag]["est"], c["true"]) for c in big]))
                row[f"{tag}_coverage"] = float(
                    np.mean(
                        [
                            c[tag]["p10"] - 1e-9 <= c["true"] <= c[tag]["p90"] + 1e-9
                            for w in worlds
                            for c in w["channels"].values()
                        ]
                    )
                )
                row[f"{tag}_unidentified"] = float(
                    np.mean(
                        [not c[tag]["identified"] for w in worlds for c in w["channels"].values()]
                    )
                )
            # with the tests: the channels a used test measured, and the others
            for part, keep in (("tested", True), ("untested", False)):
                errors = [
                    _ape(c[f"{method}_cal"]["est"], c["true"])
                    for w in worlds
                    for name, c in w["channels"].items()
                    if c["true"] >= MAPE_MIN_ROAS and (name in _tested(w)) == keep
                ]
                row[f"{method}_cal_mape_{part}"] = float(np.mean(errors)) if errors else None
            # the standard error of the MAPE over channels: how far a family's figure moves
            # with other seeds (the bars are relative to a floor that moves as much)
            errors = [_ape(c[method]["est"], c["true"]) for c in big]
            row[f"{method}_mape_se"] = float(np.std(errors, ddof=1) / np.sqrt(len(errors)))
            if small:
                row[f"{method}_near_zero_abs_error"] = float(
                    np.mean([abs(c[method]["est"] - c["true"]) for c in small])
                )
            row[f"{method}_beats_none_media20"] = (
                float(np.mean([w["beats_none"].get(method, False) for w in media_worlds]))
                if media_worlds
                else None
            )
            row[f"{method}_ranking"] = _ranking(worlds, method, floor)
        row["published_media20"] = (
            float(np.mean([w["champion"] != "none" for w in media_worlds]))
            if media_worlds
            else None
        )
        published = [
            _ape(c[w["champion"]]["est"], c["true"])
            for w in worlds
            if w["champion"] != "none"
            for c in w["channels"].values()
            if c["true"] >= MAPE_MIN_ROAS
        ]
        row["published_mape"] = float(np.mean(published)) if published else None
        pairs = [w for w in worlds if w["pair"]]
        if pairs:
            row["pair_flagged_without_tests"] = float(
                np.mean(
                    [
                        any(not w["channels"][c]["ridge"]["identified"] for c in w["pair"])
                        for w in pairs
                    ]
                )
            )
            row["pair_split_right_with_tests"] = float(
                np.mean([_split_right(w, "ridge_cal") for w in pairs])
            )
            row["pair_split_right_without_tests"] = float(
                np.mean([_split_right(w, "ridge") for w in pairs])
            )
        row["fit_seconds_mean"] = float(np.mean([w["fit_seconds"] for w in worlds]))
        table[family] = row
    return table


def _tested(world: dict) -> set[str]:
    """Channels at least one used lift test measured."""
    return {
        t["channel"]
        for t, status in zip(world["lift_tests"], world["lift_test_status"], strict=True)
        if status == "used"
    }


def _ranking(worlds: list[dict], method: str, floor: float) -> float | None:
    """Share of channel pairs, among those whose true ROAS differ relatively by more
    than the noise floor, that the method (or 'oracle', the floor's own regression)
    orders right."""

    def estimate(channel: dict) -> float:
        return channel["oracle"] if method == "oracle" else channel[method]["est"]

    right = []
    for w in worlds:
        items = list(w["channels"].values())
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                if abs(a["true"] - b["true"]) / ((a["true"] + b["true"]) / 2) <= floor:
                    continue
                right.append((estimate(a) - estimate(b)) * (a["true"] - b["true"]) > 0)
    return float(np.mean(right)) if right else None


def _split_right(world: dict, tag: str, tolerance: float = 0.1) -> bool:
    """The pair's incremental revenue split within `tolerance` (share points) of the truth."""
    a, b = (world["channels"][c] for c in world["pair"])
    true_share = a["true"] * a["spend"] / (a["true"] * a["spend"] + b["true"] * b["spend"])
    est_a, est_b = a[tag]["est"] * a["spend"], b[tag]["est"] * b["spend"]
    if est_a + est_b <= 0:
        return False
    return abs(est_a / (est_a + est_b) - true_share) <= tolerance


COLUMNS = (
    ("noise_floor", "floor", "{:.3f}"),
    ("ridge_mape", "MAPE", "{:.3f}"),
    ("ridge_mape_se", "+-", "{:.3f}"),
    ("ridge_coverage", "cover", "{:.2f}"),
    ("ridge_ranking", "rank", "{:.2f}"),
    ("oracle_ranking", "floor rk", "{:.2f}"),
    ("ridge_beats_none_media20", "beats", "{:.2f}"),
    ("ridge_unidentified", "unid", "{:.2f}"),
    ("ridge_cal_mape", "MAPE+LT", "{:.3f}"),
    ("ridge_cal_coverage", "cov+LT", "{:.2f}"),
    ("ridge_cal_mape_tested", "LT tested", "{:.3f}"),
    ("ridge_cal_mape_untested", "LT untest", "{:.3f}"),
    ("lightgbm_mape", "lgb MAPE", "{:.3f}"),
    ("lightgbm_coverage", "lgb cov", "{:.2f}"),
    ("lightgbm_beats_none_media20", "lgb beats", "{:.2f}"),
    ("lightgbm_cal_mape", "lgb+LT", "{:.3f}"),
    ("published_mape", "publ MAPE", "{:.3f}"),
    ("published_media20", "publ", "{:.2f}"),
    ("pair_flagged_without_tests", "pair flag", "{:.2f}"),
    ("pair_split_right_with_tests", "split+LT", "{:.2f}"),
)


def format_table(table: dict) -> str:
    keys = [k for k in COLUMNS if any(row.get(k[0]) is not None for row in table.values())]
    header = f"{'family':<20}{'n':>4}" + "".join(f"{label:>10}" for _, label, _ in keys)
    lines = [header]
    for family, row in table.items():
        cells = []
        for key, _, fmt in keys:
            value = row.get(key)
            cells.append(f"{fmt.format(value) if value is not None else '-':>10}")
        lines.append(f"{family:<20}{row['worlds']:>4}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per family (full: 6)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument(
        "--methods", default="ridge,lightgbm", help="comma-separated: ridge[,lightgbm]"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worlds fitted side by side")
    parser.add_argument(
        "--test-noise",
        type=float,
        default=1.0,
        help="scale of the lift tests' error (1: the harness; 0: exact tests, a diagnostic)",
    )
    parser.add_argument(
        "--tests",
        choices=("random", "planned"),
        default="random",
        help="where the 2-3 lift tests fall: random channels and designs, or the ones the "
        "model's lift plan asks for, one after another",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="AdRoiSettings override k=json (ridge.<name> and lift_test_rules.<name> too)",
    )
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    overrides: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        if key.startswith("ridge.") or key.startswith("lift_test_rules."):
            group, name = key.split(".", 1)
            overrides.setdefault(group, {})[name] = json.loads(value)
        else:
            overrides[key] = json.loads(value)
    tasks = [(f, s) for f in args.families for s in range(args.seeds)]
    started = time.perf_counter()
    if args.jobs > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=args.jobs, backend="loky")(
            delayed(score_world)(f, s, methods, overrides, args.test_noise, args.tests)
            for f, s in tasks
        )
    else:
        results = []
        for f, s in tasks:
            results.append(score_world(f, s, methods, overrides, args.test_noise, args.tests))
            print(f"{f} seed {s}: {results[-1]['fit_seconds']:.1f} s", flush=True)
    table = summarise(results, methods)
    print(format_table(table))
    print(f"{len(tasks)} worlds in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "worlds": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
