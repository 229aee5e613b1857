"""Dagster resources: the one warehouse writer and the run-wide settings.

Both are bound to environment variables with dg.EnvVar in definitions.py
(`storepulse_resource`, `run_settings_resource`), so the Launchpad shows the values
a run will use; storepulse.settings holds the defaults and is the one place that
reads the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg
import duckdb
from pydantic import Field

from storepulse import settings
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, scalar, table_exists, unpin_all

# Concurrency pools (dagster.yaml): every step that opens the warehouse read-write
# is in WRITE_POOL (limit 1: DuckDB has one writer process); read-only steps are in
# READ_POOL, whose limit `storepulse init-home` sets (STOREPULSE_PUBLISH_PARALLELISM).
WRITE_POOL = "duckdb"
READ_POOL = "duckdb_read"


def set_pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """Give READ_POOL its limit in the instance (dagster.yaml only has a default
    for all pools, which keeps WRITE_POOL at 1)."""
    limits = {READ_POOL: settings.publish_parallelism()}
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limits


class StorepulseResource(dg.ConfigurableResource):
    """Paths under STOREPULSE_HOME and the DuckDB warehouse (the one writer).

    In the code location every field is bound to its environment variable
    (storepulse.settings.PATH_VARIABLES); a field left empty takes the default
    derived from `home` (DESIGN §2).
    """

    home: str | None = Field(default=None, description="STOREPULSE_HOME")
    landing_dir: str | None = Field(default=None, description="STOREPULSE_LANDING_DIR")
    warehouse_path: str | None = Field(default=None, description="STOREPULSE_WAREHOUSE")
    export_dir: str | None = Field(default=None, description="STOREPULSE_EXPORT_DIR")
    report_dir: str | None = Field(default=None, description="STOREPULSE_REPORT_DIR")

    def paths(self) -> Paths:
        given = {
            var: value
            for field, var in settings.PATH_VARIABLES.items()
            if (value := getattr(self, field))
        }
        return settings.paths(given).ensure()

    def warehouse(self) -> Warehouse:
        return Warehouse(self.paths().warehouse)

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.warehouse().writer() as con:
            yield con

    @contextmanager
    def reader(self, *, for_run: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (pool `duckdb_read`): many processes may hold one.

        for_run: the steps of a read-only run (a store's scoring) share one DuckDB
        instance until the run ends (`Warehouse.pin`), instead of each loading the
        catalog and the store's blocks again."""
        warehouse = self.warehouse()
        if for_run:
            warehouse.pin()
        with warehouse.reader() as con:
            yield con

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        unpin_all()


class RunSettings(dg.ConfigurableResource):
    """Settings shared by every asset of one run.

    as_of: the scoring day (YYYY-MM-DD); only data strictly before it is used.
    Empty = the latest order date in the data + 1 day.
    """

    as_of: str | None = Field(default=None, description="STOREPULSE_AS_OF")

    def as_of_date(self, con: duckdb.DuckDBPyConnection) -> date:
        try:
            chosen = settings.parse_as_of(self.as_of)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from exc
        if chosen is not None:
            return chosen
        latest = (
            scalar(con, "select max(order_date) from staging.orders")
            if table_exists(con, "staging.orders")
            else None
        )
        if latest is None:
            raise dg.Failure(_no_orders_message(con))
        return latest + timedelta(days=1)


def _no_orders_message(con: duckdb.DuckDBPyConnection) -> str:
    """Why there is no default as_of: no order landed, or every order row landed so far
    was quarantined (then how many, and the first one's reason)."""
    quarantined = (
        con.execute(
            "select count(*), min_by(reason, (quarantined_at, source_file, row_number)) "
            "from quarantine.rows where kind = 'orders'"
        ).fetchone()
        if table_exists(con, "quarantine.rows")
        else (0, None)
    )
    if quarantined[0]:
        return (
            f"No orders staged: all {quarantined[0]:,} order rows landed so far were "
            f"quarantined, e.g. {quarantined[1]}. Fix them (quarantine.rows has each row and "
            "its reason) and land the file again, or set as_of."
        )
    return (
        "No orders staged yet, so the default as_of (latest order date + 1 day) is "
        "unknown. Put order files in the landing folder and run ingest, or set as_of."
    )


def storepulse_resource() -> StorepulseResource:
    """The resource of the code location: every path field bound to its variable
    (only the variables that are set: an unset override means 'derive from home')."""
    settings.apply_defaults()
    return StorepulseResource(
        **{field: dg.EnvVar(var) for field, var in settings.path_overrides().items()}
    )


def run_settings_resource() -> RunSettings:
    if settings.as_of() is not None:
        return RunSettings(as_of=dg.EnvVar("STOREPULSE_AS_OF"))
    return RunSettings()
