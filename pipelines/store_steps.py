"""What every store-by-store step shares (the models' scoring in model_assets.py and the
growth levers): one store's failure as an outcome, the step's tables written together
with its ops.store_status rows, and the stores' outcomes as a person reads them."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl

from pipelines.metadata import preview
from pipelines.resources import StorepulseResource
from storepulse.lifecycle import STATUS_FAILED, StoreOutcome, record_store_status, status_frame
from storepulse.warehouse import replace_table


def failed(store: str, step: str, exc: Exception) -> StoreOutcome:
    """The outcome of a store whose step raised (the other stores go on)."""
    return StoreOutcome(store, step, STATUS_FAILED, None, f"{type(exc).__name__}: {exc}")


def write_step(
    storepulse: StorepulseResource,
    as_of: date,
    step: str,
    tables: dict[str, pl.DataFrame],
    outcomes: list[StoreOutcome],
) -> dict[str, int]:
    """Replace each table with its rows and the step's ops.store_status rows of as_of,
    on one writer connection. Returns the rows written per table."""
    with storepulse.writer() as con:
        rows = {name: replace_table(con, name, frame) for name, frame in tables.items()}
        record_store_status(con, as_of, step, outcomes)
    return rows


def status_preview(outcomes: list[StoreOutcome]) -> dg.MetadataValue:
    """Every store's outcome of the step, as the "store_status" metadata shows it."""
    return preview(status_frame(outcomes), rows=50)
