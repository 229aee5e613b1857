"""The DuckDB warehouse: one writer, explicit SQL, polars in and out.

Everything that writes goes through `Warehouse.writer()`; every table is replaced
or merged inside one transaction, so a killed run leaves the previous complete
version (DuckDB rolls back an uncommitted transaction on the next open).
Read-only steps (per-store publishing) and readers outside a run use
`Warehouse.reader()`. DuckDB lets one process open the file read-write or many
open it read-only, never both: either side waits for the other's lock
(STOREPULSE_LOCK_WAIT_SECONDS, default 900) instead of failing at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from storepulse import settings
from storepulse.settings import SQL_DIR

SCHEMAS = ("raw", "staging", "marts", "scores", "quarantine", "ops")

# Tables every layer may append to; created up front so readers never miss them.
OPS_DDL = """
create table if not exists ops.ingested_files (
    path varchar, sha256 varchar, kind varchar, store_id varchar,
    rows_read bigint, rows_staged bigint, rows_duplicate bigint, rows_quarantined bigint,
    status varchar, message varchar, ingested_at timestamp
);
create table if not exists quarantine.rows (
    source_file varchar, row_number bigint, kind varchar, store_id varchar,
    reason varchar, record json, quarantined_at timestamp
);
create table if not exists ops.model_runs (
    model varchar, version varchar, store_id varchar, trained_at timestamp,
    train_window varchar, metrics json, baseline_metrics json, approved boolean,
    reason varchar
);
alter table ops.model_runs add column if not exists champion varchar;
alter table ops.model_runs add column if not exists champions json;
alter table ops.model_runs add column if not exists code_version varchar;
create table if not exists ops.store_status (
    as_of date, store_id varchar, step varchar, status varchar, method varchar,
    message varchar, recorded_at timestamp
);
create table if not exists ops.privacy_log (
    store_id varchar, email_sha256 varchar, customer_id varchar, requested_at timestamp,
    source varchar, applied_at timestamp, tables_touched varchar
);
create table if not exists ops.alerts (
    raised_at timestamp, run_id varchar, job_name varchar, severity varchar, message varchar
);
"""


def _is_lock_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text)


# Row groups of 32k rows instead of DuckDB's 122,880: DuckDB scans a table with one
# thread per row group, so a 100k-row table (a small store's orders) would otherwise
# be staged on one core. Only the writer sets it (it is how new data is written).
WRITER_ROW_GROUP_SIZE = 32_768
WAREHOUSE_ALIAS = "warehouse"

# Read-only instances held open by `Warehouse.pin()`, by resolved path. While one is
# held, every read-only connect to that file in this process joins it (DuckDB's
# instance cache), so the catalog and the blocks already read are shared instead of
# loaded again per connection. `Warehouse.writer()` drops the pin before it opens.
_PINS: dict[Path, duckdb.DuckDBPyConnection] = {}


def _limit_memory(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """DuckDB's memory_limit and spill folder (storepulse.settings), on every connection."""
    spill = settings.duckdb_temp_directory()
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"set memory_limit = '{settings.duckdb_memory_limit()}'")
    con.execute(f"set temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
    threads = settings.duckdb_threads()
    if threads is not None:
        con.execute(f"set threads = {threads}")
    return con


def _open(path: str | Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only:
        return _limit_memory(duckdb.connect(str(path), read_only=True))
    con = _limit_memory(duckdb.connect())
    try:
        literal = str(path).replace("'", "''")
        con.execute(
            f"attach '{literal}' as {WAREHOUSE_ALIAS} (row_group_size {WRITER_ROW_GROUP_SIZE})"
        )
        con.execute(f"use {WAREHOUSE_ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def connect(
    path: str | Path, *, read_only: bool = False, wait_seconds: float | None = None
) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, waiting (with back-off) while another process holds a
    conflicting lock on the file; after `wait_seconds` the error says who to wait for."""
    wait = settings.lock_wait_seconds() if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return _open(path, read_only)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc) or time.monotonic() >= deadline:
                if _is_lock_conflict(exc):
                    raise duckdb.IOException(
                        f"{path}: still locked by another process after {wait:.0f} s "
                        f"({'read-only' if read_only else 'read-write'} open). Another "
                        "storepulse run or a tool holds the warehouse; wait for it, or raise "
                        f"STOREPULSE_LOCK_WAIT_SECONDS. DuckDB said: {exc}"
                    ) from exc
                raise
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """Quote one SQL identifier; refuses anything that is not a plain name."""
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a valid table or column name")
    return f'"{name}"'


def qualified(name: str) -> str:
    """'schema.table' -> '"schema"."table"' (both parts checked)."""
    parts = name.split(".")
    if len(parts) != 2:
        raise ValueError(f"table name {name!r} must be 'schema.table'")
    return ".".join(quote_ident(p) for p in parts)


def set_as_of(con: duckdb.DuckDBPyConnection, as_of: date) -> None:
    """Expose a run's as_of to SQL (the files in sql/) as getvariable('as_of')."""
    con.execute(f"set variable as_of = date '{as_of.isoformat()}'")


def read_sql(relative_path: str) -> str:
    """The text of a file under sql/, e.g. read_sql('marts/kpi_daily.sql')."""
    return (SQL_DIR / relative_path).read_text()


class Warehouse:
    """A DuckDB file with the storepulse schemas."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The one read-write connection (callers hold it only for a run step)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.unpin()  # this process's read-only instance would stand in the writer's way
        con = connect(self.path)
        try:
            ensure_schemas(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection: per-store publishing, reports, tests."""
        con = connect(self.path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    def pin(self) -> None:
        """Keep one read-only instance of the file open in this process until `unpin()`
        (or a `writer()` here): the readers opened meanwhile share its catalog and
        buffer pool. A per-store run pins for its steps (they read the same store's
        rows); the pin is a read lock, so other processes' writers wait for `unpin()`."""
        key = self.path.resolve()
        if key not in _PINS:
            _PINS[key] = connect(self.path, read_only=True)

    def unpin(self) -> None:
        con = _PINS.pop(self.path.resolve(), None)
        if con is not None:
            con.close()


def unpin_all() -> None:
    """Drop every pin this process holds (the end of a run)."""
    while _PINS:
        _PINS.popitem()[1].close()


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        con.execute(f"create schema if not exists {schema}")
    con.execute(OPS_DDL)


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params=None):
    """The first value of a query (fetches everything: duckdb 2 refuses new work
    on a connection while a result is only partly read)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    return bool(
        scalar(
            con,
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        )
    )


def read_table(
    con: duckdb.DuckDBPyConnection, name: str, where: str = "", params=None
) -> pl.DataFrame:
    """A whole table (optionally filtered) as polars; an empty frame if it does not exist."""
    if not table_exists(con, name):
        return pl.DataFrame()
    sql = f"select * from {qualified(name)}" + (f" where {where}" if where else "")
    return query(con, sql, params)


def query(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> pl.DataFrame:
    """Run a SELECT and return polars (duckdb 2: `con.sql(...).pl()`, not execute)."""
    rel = con.sql(sql, params=params) if params else con.sql(sql)
    return rel.pl() if rel is not None else pl.DataFrame()


def replace_table(
    con: duckdb.DuckDBPyConnection, name: str, data: pl.DataFrame | str, params=None
) -> int:
    """Atomically replace `schema.table` with a polars frame or a SELECT statement.

    Returns the new row count. Runs in its own transaction unless one is open.
    """
    target = qualified(name)
    with transaction(con):
        if isinstance(data, pl.DataFrame):
            con.register("_sp_incoming", data.to_arrow())
            try:
                con.execute(f"create or replace table {target} as select * from _sp_incoming")
            finally:
                con.unregister("_sp_incoming")
        else:
            con.execute(f"create or replace table {target} as {data}", params or [])
        return scalar(con, f"select count(*) from {target}")


def append_rows(con: duckdb.DuckDBPyConnection, name: str, data: pl.DataFrame) -> int:
    """Append a polars frame to an existing table, matching columns by name."""
    if data.is_empty():
        return 0
    target = qualified(name)
    cols = ", ".join(quote_ident(c) for c in data.columns)
    con.register("_sp_append", data.to_arrow())
    try:
        con.execute(f"insert into {target} ({cols}) select {cols} from _sp_append")
    finally:
        con.unregister("_sp_append")
    return data.height


_OPEN: dict[int, int] = {}


class transaction:
    """`with transaction(con):` — begin/commit, rollback on error.

    Nested uses join the outermost transaction (DuckDB has no savepoints), so a
    function that replaces one table can also be part of a larger atomic step.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def __enter__(self):
        key = id(self.con)
        if _OPEN.get(key, 0) == 0:
            self.con.execute("begin transaction")
        _OPEN[key] = _OPEN.get(key, 0) + 1
        return self.con

    def __exit__(self, exc_type, exc, tb):
        key = id(self.con)
        _OPEN[key] -= 1
        if _OPEN[key] == 0:
            del _OPEN[key]
            self.con.execute("commit" if exc_type is None else "rollback")
        return False
