"""The lake: per-store results as Parquet, so per-store runs never wait for the writer.

A per-store run (a `stores` partition) reads the warehouse read-only, scores its one
store and writes the rows here; a short merge step then loads every store's newest
files into the warehouse table on the one writer connection (docs/scaling.md).

Layout (Hive partitioning, which DuckDB, polars, Spark and Athena read as columns):

    <lake>/<schema>.<table>/store_id=<store>/as_of=<YYYY-MM-DD>/part.parquet

A file is written under a temporary name in its folder and renamed into place, so a
run killed in the middle leaves the previous complete file or none: never half a one.
Each store's outcome of the step (ok, fallback, skipped, failed: ops.store_status) is
written the same way as `ops.store_status`, also when the store failed.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from storepulse.lifecycle import StoreOutcome, record_store_status
from storepulse.warehouse import (
    append_rows,
    qualified,
    replace_table,
    table_exists,
    transaction,
)

STATUS_TABLE = "ops.store_status"
PART = "part.parquet"


def partition_dir(lake: Path, table: str, store_id: str, as_of: date) -> Path:
    return lake / table / f"store_id={store_id}" / f"as_of={as_of.isoformat()}"


def write_partition(
    lake: Path, table: str, store_id: str, as_of: date, frame: pl.DataFrame
) -> Path:
    """Write one store's rows of `table` as of `as_of` (atomically; replaces a previous
    file of the same store and day). The partition columns are the path, not the file."""
    folder = partition_dir(lake, table, store_id, as_of)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".part-*.tmp"):  # left by a run that was killed
        stale.unlink(missing_ok=True)
    rows = frame.drop([c for c in ("store_id", "as_of") if c in frame.columns])
    handle, temporary = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        rows.write_parquet(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, folder / PART)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return folder / PART


def has_partition(lake: Path, table: str, store_id: str, as_of: date) -> bool:
    """Whether the store has a complete file of `table` for `as_of`."""
    return (partition_dir(lake, table, store_id, as_of) / PART).is_file()


def stores_at(lake: Path, table: str, as_of: date) -> list[str]:
    """Stores with a complete file of `table` for `as_of`."""
    stores = (f.name.removeprefix("store_id=") for f in (lake / table).glob("store_id=*"))
    return sorted(s for s in stores if has_partition(lake, table, s, as_of))


def read_table(
    lake: Path, table: str, as_of: date, stores: list[str] | None = None
) -> pl.DataFrame:
    """Every store's rows of `table` for `as_of`, read with DuckDB: the file's columns,
    then `as_of` and `store_id` from the path."""
    stores = stores_at(lake, table, as_of) if stores is None else stores
    files = [str(partition_dir(lake, table, s, as_of) / PART) for s in stores]
    if not files:
        return pl.DataFrame()
    con = duckdb.connect()
    try:
        return con.sql(
            "select * from read_parquet($files, hive_partitioning = true, "
            "hive_types = {'store_id': varchar, 'as_of': date}, union_by_name = true)",
            params={"files": files},
        ).pl()
    finally:
        con.close()


def merge(con: duckdb.DuckDBPyConnection, lake: Path, table: str, as_of: date) -> dict:
    """Load the lake's files of `table` for `as_of` into the warehouse table: each store
    found replaces its own rows, every other store's rows stay as they were. One
    transaction: all of it or nothing (merge_status does the same for the outcomes).

    Returns {"stores": [...], "rows": n}."""
    stores = stores_at(lake, table, as_of)
    if not stores:
        return {"stores": [], "rows": 0}
    frame = read_table(lake, table, as_of, stores)
    with transaction(con):
        if not table_exists(con, table):
            first = ["store_id"]
            replace_table(con, table, frame.select(*first, pl.exclude(*first, "as_of")))
        else:
            columns = [r[0] for r in con.execute(f"describe {qualified(table)}").fetchall()]
            con.execute(
                f"delete from {qualified(table)} where store_id in (select unnest($stores))",
                {"stores": stores},
            )
            append_rows(con, table, frame.select([c for c in columns if c in frame.columns]))
    return {"stores": stores, "rows": frame.height}


VIEW_SCHEMA = "lake"


def view_name(table: str) -> str:
    """The warehouse view over every as_of of a lake table: `lake.<schema>_<table>`
    (scores.order_risk -> lake.scores_order_risk)."""
    return f"{VIEW_SCHEMA}.{table.replace('.', '_')}"


def expose_views(con: duckdb.DuckDBPyConnection, lake: Path) -> list[str]:
    """One view per lake table with files, over all its stores and as_of dates (both
    read from the folder names, Hive-style), so the warehouse can query the lake's
    history without loading it; views of tables without files are dropped. Returns the
    views."""
    con.execute(f"create schema if not exists {VIEW_SCHEMA}")
    names = []
    folders = sorted(p for p in lake.iterdir() if p.is_dir()) if lake.is_dir() else []
    for folder in folders:
        name = view_name(folder.name)
        if next(folder.glob(f"*/*/{PART}"), None) is None:
            con.execute(f"drop view if exists {name}")
            continue
        pattern = str(folder / "*" / "*" / PART).replace("'", "''")
        con.execute(
            f"create or replace view {name} as select * from read_parquet('{pattern}', "
            "hive_partitioning = true, union_by_name = true)"
        )
        names.append(name)
    return names


def write_status(lake: Path, as_of: date, outcome_rows: pl.DataFrame) -> None:
    """One store's ops.store_status rows (store_id, step, status, method, message)."""
    for (store,), rows in outcome_rows.group_by("store_id"):
        step = rows["step"][0]
        write_partition(lake, f"{STATUS_TABLE}.{step}", store, as_of, rows)


def merge_status(con: duckdb.DuckDBPyConnection, lake: Path, step: str, as_of: date) -> list[str]:
    """ops.store_status rows of `step` from the lake: each store found replaces its row."""
    table = f"{STATUS_TABLE}.{step}"
    stores = stores_at(lake, table, as_of)
    if not stores:
        return []
    rows = read_table(lake, table, as_of, stores)
    outcomes = [
        StoreOutcome(r["store_id"], r["step"], r["status"], r["method"], r["message"])
        for r in rows.iter_rows(named=True)
    ]
    record_store_status(con, as_of, step, outcomes, stores_only=True)
    return stores
