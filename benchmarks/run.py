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
        "features_vs_pandas",
        "features_ours",
        "features_pandas",
        "RFM + churn features: ours / straightforward pandas",
    ),
    (
        "demand_time_vs_mlforecast",
        "demand_ours",
        "demand_mlforecast",
        "demand fit+predict: ours / mlforecast",
    ),
]


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
    if proc.returncode != 0:
        raise SystemExit(f"benchmark stage {name!r} failed with exit code {proc.returncode}")
    result = {"seconds": round(seconds, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    if out_file.exists():
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

    ratios: dict[str, float | None] = {}
    for ratio, ours, peer, _ in TIME_RATIOS:
        if ours in stages and peer in stages and stages[peer]["seconds"] > 0:
            ratios[ratio] = round(stages[ours]["seconds"] / stages[peer]["seconds"], 3)
    if "demand_ours" in stages and "demand_mlforecast" in stages:
        ours_wape = stages["demand_ours"].get("wape")
        peer_wape = stages["demand_mlforecast"].get("wape")
        if ours_wape is not None and peer_wape:
            ratios["demand_wape_vs_mlforecast"] = round(ours_wape / peer_wape, 3)

    report = {
        "scale": args.scale,
        "seed": args.seed,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "stages": stages,
        "ratios": ratios,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = bench_dir / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    _print(report, out)
    return 0


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
    ratios = Table(title="ratios (ours / peer, same run, same data)")
    ratios.add_column("ratio")
    ratios.add_column("value", justify="right")
    for name, value in report["ratios"].items():
        ratios.add_row(name, f"{value:.3f}")
    console.print(ratios)
    console.print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
