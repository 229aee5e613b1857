"""Do two commits behave the same? Same sample data, same nightly run, every table.

    .venv/bin/python -m benchmarks.compare_runs --base <commit> [--head <commit>]
        [--scale small] [--seed 0] [--bench] [--json PATH]

For each commit: a detached git worktree under --workdir, its own `make install`,
`storepulse sample-data` with the given scale and seed (the landing files of both
must be byte-identical), then `storepulse run` on a fresh home. Every table of the
staging, marts, scores, quarantine and ops schemas is then compared row for row
(ordered by all columns), leaving out what is wall-clock or names a run rather than
a result: timestamps of when something happened (ingested_at, trained_at…), run ids,
model version strings (they hash the recipe's settings, so a renamed setting changes
them without changing a number), timings inside ops.model_runs' metrics, and the
landing order of files written within a millisecond (file_seq). Floats are equal
within a relative 1e-9: a query plan that adds in another order changes the last
bits of a sum.

With --bench, `make bench` runs in both worktrees one after the other and every
ratio of the two runs is printed side by side (the refactor issue's bar: within
10 %). Used for issue #15: the refactor must change no behaviour.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = ("staging", "marts", "scores", "quarantine", "ops")
# Columns that record when or in which run something happened, not what it produced.
VOLATILE = {
    "ingested_at", "quarantined_at", "trained_at", "raised_at", "applied_at",
    "last_checked_at", "published_at", "run_id", "version", "model_version",
    "scored_at", "created_at_run", "recorded_at",
    # the order files landed in: mtimes of files written a millisecond apart
    "file_seq",
}  # fmt: skip

VOLATILE_TABLES = {"ops.alerts"}


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def checkout(rev: str, workdir: Path) -> Path:
    sha = sh(["git", "rev-parse", rev], REPO).strip()
    tree = workdir / sha[:10]
    if not tree.exists():
        sh(["git", "worktree", "add", "--detach", str(tree), sha], REPO)
    sh(["make", "install"], tree)
    return tree


def run_commit(tree: Path, scale: str, seed: int) -> tuple[Path, dict[str, str]]:
    """Generate, run nightly; returns (warehouse path, sha256 per landing file)."""
    home = tree / ".compare-home"
    if home.exists():
        shutil.rmtree(home)
    landing = home / "landing"
    env = {**os.environ, "STOREPULSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    for var in ("STOREPULSE_LANDING_DIR", "STOREPULSE_WAREHOUSE", "STOREPULSE_AS_OF"):
        env.pop(var, None)
    cli = str(tree / ".venv" / "bin" / "storepulse")
    sh(
        [cli, "sample-data", "--scale", scale, "--seed", str(seed), "--out", str(landing)],
        tree,
        env,
    )
    files = _landing_digests(landing)
    truth = landing / "_truth"
    shutil.move(str(truth), str(home / "_truth"))  # the pipeline never reads it anyway
    sh([cli, "run"], tree, env)
    return home / "warehouse.duckdb", files


def _landing_digests(landing: Path) -> dict[str, str]:
    return {
        str(p.relative_to(landing)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(landing.rglob("*"))
        if p.is_file() and "_truth" not in p.parts
    }


def read_tables(warehouse: Path) -> dict:
    """Every compared table as a polars frame (volatile columns left out, rows sorted)."""
    import duckdb
    import polars as pl

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables"
            f" where table_schema in ({', '.join(repr(s) for s in SCHEMAS)})"
            " and table_type = 'BASE TABLE' order by 1, 2"
        ).fetchall()
        out = {}
        for schema, name in tables:
            full = f"{schema}.{name}"
            if full in VOLATILE_TABLES:
                continue
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from information_schema.columns where table_schema = ?"
                    " and table_name = ? order by ordinal_position",
                    [schema, name],
                ).fetchall()
                if c not in VOLATILE
            ]
            frame = con.sql(
                f'select {", ".join(chr(34) + c + chr(34) for c in columns)} from {schema}."{name}"'
            ).pl()
            if full == "ops.model_runs":
                frame = frame.with_columns(
                    pl.col(c).map_elements(_without_seconds, return_dtype=pl.String)
                    for c in ("metrics", "baseline_metrics", "champions")
                    if c in frame.columns
                )
            floats = [c for c, t in frame.schema.items() if t.is_float()]
            keys = [
                pl.col(c).round_sig_figs(6) if c in floats else pl.col(c) for c in frame.columns
            ]
            out[full] = frame.sort(keys, nulls_last=True) if frame.height else frame
        return out
    finally:
        con.close()


def same_table(left, right) -> bool:
    from polars.testing import assert_frame_equal

    try:
        assert_frame_equal(left, right, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    except AssertionError:
        return False
    return True


def _without_seconds(value: str | None) -> str | None:
    if value is None or not value.startswith("{"):
        return value
    return json.dumps(_drop_seconds(json.loads(value)), sort_keys=True)


def _drop_seconds(data):
    """Timings left out; floats to 9 significant digits, as the tables' floats are
    compared (a sum in another order changes the last bits)."""
    if isinstance(data, dict):
        return {k: _drop_seconds(v) for k, v in data.items() if "seconds" not in k}
    if isinstance(data, list):
        return [_drop_seconds(v) for v in data]
    if isinstance(data, float):
        return float(f"{data:.9g}")
    return data


def bench(tree: Path, scale: str) -> dict:
    sh(["make", "bench", f"SCALE={scale}"], tree)
    newest = max((tree / ".storepulse" / "bench").glob("*.json"))
    return json.loads(newest.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/storepulse-compare"))
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--reuse", action="store_true", help="compare the warehouses of an earlier run again"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, rev in (("base", args.base), ("head", args.head)):
        tree = checkout(rev, args.workdir)
        home = tree / ".compare-home"
        if args.reuse and (home / "warehouse.duckdb").exists():
            warehouse, files = home / "warehouse.duckdb", _landing_digests(home / "landing")
        else:
            warehouse, files = run_commit(tree, args.scale, args.seed)
        results[label] = {"tree": str(tree), "files": files, "tables": read_tables(warehouse)}
        if args.bench:
            results[label]["bench"] = bench(tree, args.scale)
    base, head = results["base"], results["head"]
    same_files = base["files"] == head["files"]
    print(f"landing files: {len(base['files'])} vs {len(head['files'])}; identical: {same_files}")
    differing = []
    for table in sorted(set(base["tables"]) | set(head["tables"])):
        left, right = base["tables"].get(table), head["tables"].get(table)
        same = left is not None and right is not None and same_table(left, right)
        if not same:
            differing.append(table)
        rows = [str(t.height) if t is not None else "-" for t in (left, right)]
        print(f"  {table:<36} {rows[0]:>9} {rows[1]:>9}  {'identical' if same else 'DIFFERENT'}")
    if args.bench:
        print("bench ratios (base vs head):")
        for name, value in base["bench"].get("ratios", {}).items():
            other = head["bench"].get("ratios", {}).get(name)
            a = value.get("value") if isinstance(value, dict) else value
            b = other.get("value") if isinstance(other, dict) else other
            change = (b / a - 1) if a and b else None
            print(f"  {name:<36} {a!s:>10} {b!s:>10}  {'' if change is None else f'{change:+.1%}'}")
    if args.json:
        for side in results.values():
            side["tables"] = {name: frame.height for name, frame in side["tables"].items()}
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print("tables that differ:", ", ".join(differing) or "none")
    sys.exit(1 if differing or not same_files else 0)


if __name__ == "__main__":
    main()
