"""The benchmark suite behind `make bench`.

Each stage runs in its own Python process so its wall time and peak resident
memory (from os.wait4) are its own. Ratios compare stages measured side by side
in this one run, on the same data: ours / the peer.

Results: .storepulse/bench/<timestamp>.json and a printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]

# (ratio name, our stage, peer stage, what it means)
TIME_RATIOS = [
    (
        "ingest_vs_duckdb_read_csv",
        "ingest",
        "duckdb_read_csv",
        "our ingest / bare DuckDB read of the same files",
    ),
    (
        "features_incl_bgnbd_vs_pandas",
        "features_ours",
        "features_pandas",
        "RFM + churn features incl. the shared BG/NBD fits: ours / straightforward pandas",
    ),
    (
        "demand_time_vs_mlforecast",
        "demand_ours",
        "demand_mlforecast",
        "demand fit+predict: ours / mlforecast",
    ),
]


# (ratio name, our stage, peer stage, a number both stages report, what it means): ours / peer.
VALUE_RATIOS = [
    (
        "demand_wape_vs_mlforecast",
        "demand_ours",
        "demand_mlforecast",
        "wape",
        "point forecasts as published: ours p50 (median) vs mlforecast's mean",
    ),
    (
        "demand_wape_mean_vs_mlforecast",
        "demand_ours",
        "demand_mlforecast",
        "wape_mean",
        "demand WAPE, mean vs mean (like for like: both Tweedie means)",
    ),
    (
        "features_vs_pandas",
        "features_ours",
        "features_pandas",
        "work_ex_bgnbd_seconds",
        "headline: RFM + churn feature building (wall), ours / pandas; both sides "
        "excluding the identical BG/NBD parameter fits (a shared model fit)",
    ),
    (
        "features_vs_pandas_cpu",
        "features_ours",
        "features_pandas",
        "work_ex_bgnbd_cpu_seconds",
        "the same feature building in CPU seconds (less hurt by a busy machine)",
    ),
]

# Single numbers worth a line of their own: (name, stage, key, what it means).
SUMMARY_VALUES = [
    (
        "churn_customers_per_second",
        "churn_scoring",
        "customers_per_second",
        "churn scoring incl. the top three reasons (explain=True), customers / second",
    ),
    (
        "churn_customers_per_second_no_reasons",
        "churn_scoring",
        "customers_per_second_no_reasons",
        "churn scoring without reasons (explain=False), customers / second",
    ),
]


# Per-store work split over 2 processes vs 1: ratio name -> what is split.
# ratio name -> (stage, what): time with 2 processes / time with 1.
SCALING = {
    "publish_2_vs_1_processes": ("publish_scaling", "publishing"),
    "score_store_2_vs_1_processes": (
        "scoring_scaling",
        "scoring into the lake (order risk, RFM, CLV, churn), runs inside 1 or 2 long-lived worker processes",
    ),
    "score_store_runs_2_vs_1": (
        "scoring_runs",
        "scoring into the lake, one `dagster asset materialize` process per store run, 1 or 2 at once",
    ),
}


def ratio_descriptions() -> dict[str, str]:
    """One line per ratio (and summary value) the report can hold."""
    out = {name: text for name, *_, text in TIME_RATIOS}
    for name, _, _, text in TIME_RATIOS:
        out[f"{name}_cpu"] = f"{text} (CPU seconds)"
        out[f"{name}_process"] = f"{text} (whole child processes)"
    out.update({name: text for name, *_, text in VALUE_RATIOS})
    out.update({name: text for name, *_, text in SUMMARY_VALUES})
    for name, (_, what) in SCALING.items():
        out[name] = f"per-store {what}: 2 processes / 1 (0.5 = perfect)"
        out[f"{name}_process"] = (
            f"per-store {what}: 2 processes / 1, the whole processes from spawn (the ratio "
            "above times the work from the set-up workers' common start)"
        )
    return out


def summary_values(stages: dict[str, dict]) -> dict[str, float]:
    """SUMMARY_VALUES of the stages present."""
    return {
        name: stages[stage][key]
        for name, stage, key, _ in SUMMARY_VALUES
        if stage in stages and stages[stage].get(key) is not None
    }


def time_ratios(stages: dict[str, dict]) -> dict[str, float]:
    """TIME_RATIOS of the stages present. A stage that times the compared work
    itself reports `work_seconds` (and `work_cpu_seconds`; imports, loading and
    shared set-up excluded): when both sides do, the ratio compares those, and
    `<ratio>_cpu` / `<ratio>_process` (whole child process, from os.wait4) go next to it."""
    ratios: dict[str, float] = {}
    for ratio, ours, peer, _ in TIME_RATIOS:
        if ours not in stages or peer not in stages:
            continue
        a, b = stages[ours], stages[peer]
        process = a["seconds"] / b["seconds"] if b["seconds"] > 0 else None
        if a.get("work_seconds") is not None and b.get("work_seconds"):
            ratios[ratio] = round(a["work_seconds"] / b["work_seconds"], 3)
            if a.get("work_cpu_seconds") is not None and b.get("work_cpu_seconds"):
                ratios[f"{ratio}_cpu"] = round(a["work_cpu_seconds"] / b["work_cpu_seconds"], 3)
            if process is not None:
                ratios[f"{ratio}_process"] = round(process, 3)
        elif process is not None:
            ratios[ratio] = round(process, 3)
    for name, (stage, _) in SCALING.items():
        scaling = stages.get(stage, {})
        if scaling.get("one_process_seconds"):
            # Time with 2 processes / time with 1 (0.5 = perfect scaling).
            ratios[name] = round(
                scaling["two_processes_seconds"] / scaling["one_process_seconds"], 3
            )
            if scaling.get("one_process_whole_seconds"):
                # The same runs timed from the workers' spawn: their start-up included.
                ratios[f"{name}_process"] = round(
                    scaling["two_processes_whole_seconds"] / scaling["one_process_whole_seconds"],
                    3,
                )
    for ratio, ours, peer, key, _ in VALUE_RATIOS:
        if ours in stages and peer in stages:
            mine, theirs = stages[ours].get(key), stages[peer].get(key)
            if mine is not None and theirs:
                ratios[ratio] = round(mine / theirs, 3)
    return ratios


def run_stage(name: str, workdir: Path, scale: str, seed: int) -> dict:
    """Run one stage in a child process; return seconds, peak RSS and its JSON output."""
    out_file = workdir / f"stage-{name}.json"
    out_file.unlink(missing_ok=True)
    env = {
        **os.environ,
        "STOREPULSE_HOME": str(workdir / "home"),
        "DAGSTER_HOME": str(workdir / "home" / "dagster"),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.stages",
            name,
            "--workdir",
            str(workdir),
            "--scale",
            scale,
            "--seed",
            str(seed),
            "--out",
            str(out_file),
        ],
        cwd=REPO,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"seconds": round(seconds, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    if proc.returncode != 0:
        # Recorded, not raised: the other stages' numbers are still written (exit code 1).
        print(f"benchmark stage {name!r} failed with exit code {proc.returncode}", flush=True)
        result["failed"] = f"exit code {proc.returncode}"
    elif out_file.exists():
        result.update(json.loads(out_file.read_text()))
    return result


def main(argv: list[str] | None = None) -> int:
    from benchmarks.stages import STAGES

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default=os.environ.get("SCALE", "small"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    args = parser.parse_args(argv)

    home = Path(os.environ.get("STOREPULSE_HOME", REPO / ".storepulse"))
    bench_dir = home / "bench"
    workdir = bench_dir / f"work-{args.scale}-seed{args.seed}"
    workdir.mkdir(parents=True, exist_ok=True)

    stages: dict[str, dict] = {}
    for name in args.stages.split(","):
        print(f"-- stage {name}", flush=True)
        stages[name] = run_stage(name, workdir, args.scale, args.seed)

    failed = [name for name, stage in stages.items() if "failed" in stage]
    ratios = time_ratios({n: s for n, s in stages.items() if n not in failed})

    report = {
        "scale": args.scale,
        "seed": args.seed,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "stages": stages,
        "ratios": ratios,
        "ratio_descriptions": {k: v for k, v in ratio_descriptions().items() if k in ratios},
        "summary": summary_values({n: s for n, s in stages.items() if n not in failed}),
        "failed_stages": failed,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = bench_dir / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    _print(report, out)
    return 1 if failed else 0


def _print(report: dict, out: Path) -> None:
    console = Console()
    table = Table(title=f"storepulse bench — scale {report['scale']}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("peak RSS MB", justify="right")
    table.add_column("notes")
    for name, stage in report["stages"].items():
        notes = ", ".join(
            f"{k}={v}" for k, v in stage.items() if k not in ("seconds", "peak_rss_mb")
        )
        table.add_row(name, f"{stage['seconds']:.2f}", f"{stage['peak_rss_mb']:.0f}", notes[:90])
    console.print(table)
    descriptions = ratio_descriptions()
    for title, first, second, values, fmt in (
        ("ratios (ours / peer, same run, same data)", "ratio", "what it compares",
         report["ratios"], "{:.3f}"),
        ("summary", "value", "what it is", report.get("summary") or {}, "{:,}"),
    ):  # fmt: skip
        if not values:
            continue
        table = Table(title=title)
        table.add_column(first)
        table.add_column("value" if first == "ratio" else "number", justify="right")
        table.add_column(second)
        for name, value in values.items():
            table.add_row(name, fmt.format(value), descriptions.get(name, ""))
        console.print(table)
    console.print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
