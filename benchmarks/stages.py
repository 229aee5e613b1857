"""Benchmark stages. Each runs in its own process (see run.py) and may write a
small JSON of extra numbers (row counts, accuracy) to --out."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def _landing(workdir: Path) -> Path:
    return workdir / "home" / "landing"


def _fresh_warehouse(workdir: Path, name: str) -> Path:
    path = workdir / f"{name}.duckdb"
    for suffix in ("", ".wal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def landed_files(landing: Path) -> list[Path]:
    """The files the pipeline reads (what the peer must read too)."""
    return sorted(
        p
        for p in landing.rglob("*")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(landing).parts)
    )


def stage_sample_data(workdir: Path, scale: str, seed: int) -> dict:
    from storepulse.sample_data import generate

    home = workdir / "home"
    if home.exists():
        shutil.rmtree(home)
    summary = generate(_landing(workdir), scale=scale, seed=seed, progress=False)
    files = landed_files(_landing(workdir))
    return {
        "files": len(files),
        "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
        "summary": str(summary)[:200],
    }


def stage_duckdb_read_csv(workdir: Path, scale: str, seed: int) -> dict:
    """The floor: bare DuckDB reading every landed file into a table, nothing else."""
    import duckdb

    con = duckdb.connect(str(_fresh_warehouse(workdir, "floor")))
    rows = 0
    for i, path in enumerate(landed_files(_landing(workdir))):
        reader = (
            f"read_parquet('{path}')"
            if path.suffix == ".parquet"
            else f"read_csv('{path}', all_varchar=true, ignore_errors=true, null_padding=true)"
        )
        con.execute(f"create table t{i} as select * from {reader}")
        rows += con.execute(f"select count(*) from t{i}").fetchall()[0][0]
    con.close()
    return {"rows": rows}


def stage_ingest(workdir: Path, scale: str, seed: int) -> dict:
    from storepulse.ingest import ingest_landing
    from storepulse.warehouse import Warehouse

    with Warehouse(_fresh_warehouse(workdir, "ingest")).writer() as con:
        report = ingest_landing(con, _landing(workdir))
    return {
        "files": len(report.files),
        "rows_read": sum(f.rows_read for f in report.files),
        "rows_quarantined": sum(f.rows_quarantined for f in report.files),
    }


def _run_job(name: str, workdir: Path) -> dict:
    from storepulse.runner import run_job

    result = run_job(name)
    if not result.success:
        raise SystemExit("\n".join(result.failures))
    return {"tables": len(result.tables)}


def stage_weekly_training(workdir: Path, scale: str, seed: int) -> dict:
    """Retrain every model on a fresh home (ingest first, so training has staging)."""
    for suffix in ("", ".wal"):
        Path(str(workdir / "home" / "warehouse.duckdb") + suffix).unlink(missing_ok=True)
    shutil.rmtree(workdir / "home" / "model_store", ignore_errors=True)
    shutil.rmtree(workdir / "home" / "dagster", ignore_errors=True)
    _run_job("ingest", workdir)
    return _run_job("weekly_training", workdir)


def stage_nightly(workdir: Path, scale: str, seed: int) -> dict:
    """The nightly job with approved models in place: ingest, score, publish every store."""
    from storepulse.runner import run_nightly

    result = run_nightly()
    if not result.success:
        raise SystemExit("\n".join(result.failures))
    return {"published_stores": len(result.published_stores)}


STAGES = {
    "sample_data": stage_sample_data,
    "duckdb_read_csv": stage_duckdb_read_csv,
    "ingest": stage_ingest,
    "weekly_training": stage_weekly_training,
    "nightly": stage_nightly,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    extra = STAGES[args.stage](args.workdir, args.scale, args.seed) or {}
    args.out.write_text(json.dumps(extra, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
