"""Dagster resources: the one warehouse writer and the run-wide settings.

Both are configured from environment variables with local defaults (DESIGN §2),
and both are editable per run in the Launchpad (resources config).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg
import duckdb

from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, scalar, table_exists

# Concurrency pools (dagster.yaml): every step that opens the warehouse read-write
# is in WRITE_POOL (limit 1: DuckDB has one writer process); read-only steps are in
# READ_POOL, whose limit `storepulse init-home` sets (STOREPULSE_PUBLISH_PARALLELISM).
WRITE_POOL = "duckdb"
READ_POOL = "duckdb_read"


def publish_parallelism(env: dict[str, str] | None = None) -> int:
    """READ_POOL's limit: STOREPULSE_PUBLISH_PARALLELISM, default the number of cores."""
    import os

    value = (os.environ if env is None else env).get("STOREPULSE_PUBLISH_PARALLELISM", "")
    if not value:
        return max(1, os.cpu_count() or 1)
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(
            f"STOREPULSE_PUBLISH_PARALLELISM={value!r} must be a whole number >= 1, e.g. 2"
        )
    return limit


def set_pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """Give READ_POOL its limit in the instance (dagster.yaml only has a default
    for all pools, which keeps WRITE_POOL at 1)."""
    limits = {READ_POOL: publish_parallelism()}
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limits


class StorepulseResource(dg.ConfigurableResource):
    """Paths under STOREPULSE_HOME and the DuckDB warehouse (the one writer).

    Leave a field empty to use the environment variable / default of DESIGN §2.
    """

    home: str | None = None
    warehouse_path: str | None = None
    landing_dir: str | None = None
    export_dir: str | None = None

    def paths(self) -> Paths:
        env = {}
        import os

        env.update(os.environ)
        for var, value in (
            ("STOREPULSE_HOME", self.home),
            ("STOREPULSE_WAREHOUSE", self.warehouse_path),
            ("STOREPULSE_LANDING_DIR", self.landing_dir),
            ("STOREPULSE_EXPORT_DIR", self.export_dir),
        ):
            if value:
                env[var] = value
        return Paths.from_env(env).ensure()

    def warehouse(self) -> Warehouse:
        return Warehouse(self.paths().warehouse)

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.warehouse().writer() as con:
            yield con

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (pool `duckdb_read`): many processes may hold one."""
        with self.warehouse().reader() as con:
            yield con


class RunSettings(dg.ConfigurableResource):
    """Settings shared by every asset of one run.

    as_of: the scoring day (YYYY-MM-DD); only data strictly before it is used.
    Empty = STOREPULSE_AS_OF, else the latest order date in the data + 1 day.
    """

    as_of: str | None = None

    def as_of_date(self, con: duckdb.DuckDBPyConnection) -> date:
        import os

        value = self.as_of or os.environ.get("STOREPULSE_AS_OF")
        if value:
            try:
                return date.fromisoformat(value)
            except ValueError as exc:
                raise dg.Failure(
                    f"as_of={value!r} is not a date; use YYYY-MM-DD, e.g. 2025-06-30"
                ) from exc
        latest = (
            scalar(con, "select max(order_date) from staging.orders")
            if table_exists(con, "staging.orders")
            else None
        )
        if latest is None:
            raise dg.Failure(
                "No orders staged yet, so the default as_of (latest order date + 1 day) is "
                "unknown. Put order files in the landing folder and run ingest, or set as_of."
            )
        return latest + timedelta(days=1)
