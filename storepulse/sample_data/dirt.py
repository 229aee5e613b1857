"""Small, realistic defects injected into landing files, each one recorded for `_truth/dirt.csv`.

Row numbers are 1-based data rows of the written file (the header line, and
Google's title lines, are not counted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from .people import messy_phone

UNKNOWN_CURRENCY = "XYZ"


@dataclass(frozen=True)
class DirtItem:
    store_id: str
    kind: str
    file: str
    row_number: int | None
    description: str


def dirt_frame(items: list[DirtItem]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "store_id": [i.store_id for i in items],
            "kind": [i.kind for i in items],
            "file": [i.file for i in items],
            "row_number": [i.row_number for i in items],
            "description": [i.description for i in items],
        },
        schema={
            "store_id": pl.String,
            "kind": pl.String,
            "file": pl.String,
            "row_number": pl.Int64,
            "description": pl.String,
        },
    )


def _pick(
    rng: np.random.Generator, n: int, share: float, minimum: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    pool = np.arange(n) if allowed is None else np.flatnonzero(allowed)
    k = min(pool.size, max(minimum, int(round(n * share))))
    return np.sort(rng.choice(pool, k, replace=False)) if k else np.array([], dtype=np.int64)


def _replace_values(
    frame: pl.DataFrame,
    column: str,
    rows: np.ndarray,
    dirty: Callable[[object], tuple[object, str]],
    kind: str,
    store_id: str,
    file: str,
    dtype: pl.DataType | None = None,
):
    """`column` with each of `rows` replaced by dirty(value) -> (new value, description),
    and one DirtItem of `kind` per replaced row."""
    values = frame[column].to_list()
    items = []
    for r in rows:
        values[r], description = dirty(values[r])
        items.append(DirtItem(store_id, kind, file, int(r) + 1, description))
    return frame.with_columns(pl.Series(column, values, dtype=dtype)), items


def messy_emails(
    frame: pl.DataFrame,
    column: str,
    rng,
    store_id: str,
    file: str,
    share: float = 0.015,
    allowed=None,
):
    """Stray spaces and capitals, as customers type them."""

    def dirty(clean: str) -> tuple[str, str]:
        style = int(rng.integers(0, 3))
        if style == 0:
            typed = f" {clean} "
        elif style == 1:
            typed = clean.upper()
        else:
            local, domain = clean.split("@")
            typed = f"{local.capitalize()}@{domain.capitalize()} "
        return typed, f"e-mail {typed!r} should normalise to {clean!r}"

    rows = _pick(rng, frame.height, share, 2, allowed)
    return _replace_values(frame, column, rows, dirty, "email_format", store_id, file)


def messy_phones(frame: pl.DataFrame, rng, store_id: str, file: str, share: float = 0.03):
    def dirty(clean: str) -> tuple[str, str]:
        typed = messy_phone(clean, rng)
        return typed, f"phone {typed!r} is {clean!r} in another format"

    rows = _pick(rng, frame.height, share, 2)
    return _replace_values(frame, "phone", rows, dirty, "phone_format", store_id, file)


def unknown_currency(
    frame: pl.DataFrame, column: str, rng, store_id: str, file: str, allowed=None, count: int = 3
):
    def dirty(code: str) -> tuple[str, str]:
        return UNKNOWN_CURRENCY, f"currency {UNKNOWN_CURRENCY!r} instead of {code!r}"

    rows = _pick(rng, frame.height, 0.0, count, allowed)
    return _replace_values(frame, column, rows, dirty, "unknown_currency", store_id, file)


def negative_quantity(
    frame: pl.DataFrame, column: str, rng, store_id: str, file: str, allowed=None, count: int = 3
):
    dtype = frame.schema[column]

    def dirty(quantity) -> tuple[object, str]:
        flipped = -int(quantity)
        written = flipped if dtype != pl.String else str(flipped)
        return written, f"quantity {flipped} should be {quantity}"

    rows = _pick(rng, frame.height, 0.0, count, allowed)
    return _replace_values(frame, column, rows, dirty, "negative_quantity", store_id, file, dtype)


def duplicate_rows(
    frame: pl.DataFrame,
    rng,
    store_id: str,
    file: str,
    share: float = 0.003,
    block_key: str | None = None,
):
    """Re-exported rows appended at the end; with block_key, whole blocks (e.g. every row of a Shopify order) repeat."""
    if block_key is None:
        rows = _pick(rng, frame.height, share, 2)
    else:
        keys = frame[block_key].unique(maintain_order=True)
        chosen = set(keys.gather(_pick(rng, keys.len(), share, 2)).to_list())
        rows = np.flatnonzero(frame[block_key].is_in(list(chosen)).to_numpy())
    copies = frame[rows.tolist()]
    items = [
        DirtItem(
            store_id,
            "duplicate_row",
            file,
            frame.height + i + 1,
            f"exact copy of row {int(r) + 1} (re-export)",
        )
        for i, r in enumerate(rows)
    ]
    return pl.concat([frame, copies]), items
