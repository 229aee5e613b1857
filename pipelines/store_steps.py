"""What every store-by-store step shares (the models' scoring in model_assets.py and the
growth levers): one store's failure, skip or result as an outcome, the step's tables
written together with its ops.store_status rows, and the stores' outcomes as a person
reads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import dagster as dg
import polars as pl

from pipelines.metadata import preview, table_metadata
from pipelines.resources import StorepulseResource
from storepulse.lifecycle import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_SKIPPED,
    StoreOutcome,
    record_store_status,
    status_frame,
)
from storepulse.warehouse import replace_table

Result = TypeVar("Result")


def failed(store: str, step: str, exc: Exception) -> StoreOutcome:
    """The outcome of a store whose step raised (the other stores go on)."""
    return StoreOutcome(store, step, STATUS_FAILED, None, f"{type(exc).__name__}: {exc}")


def skipped(store: str, step: str, why: str) -> StoreOutcome:
    """The outcome of a store the step has nothing to work on (`why` says what to add)."""
    return StoreOutcome(store, step, STATUS_SKIPPED, None, why)


def done(store: str, step: str, method: str, message: str) -> StoreOutcome:
    """The outcome of a store the step worked on with `method`."""
    return StoreOutcome(store, step, STATUS_OK, method, message)


def attempt(
    outcomes: list[StoreOutcome],
    store: str,
    step: str,
    work: Callable[..., Result],
    *args: Any,
) -> Result | None:
    """`work(*args)` for one store (a result that is never None). When it raises, the
    store's failed outcome goes to `outcomes` and None comes back: one store's problem
    never stops another's."""
    try:
        return work(*args)
    except Exception as exc:
        outcomes.append(failed(store, step, exc))
        return None


def concat_or_empty(frames: list[pl.DataFrame], schema: dict) -> pl.DataFrame:
    """The stores' rows as one table; no rows at all is the empty table of `schema`."""
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


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


def step_metadata(rows: int, as_of: date, outcomes: list[StoreOutcome]) -> dict:
    """What a store-by-store step's result shows first: the rows of its main table, the
    as_of and every store's outcome."""
    return {**table_metadata(rows, as_of), "store_status": status_preview(outcomes)}
