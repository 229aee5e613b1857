"""Small, realistic defects injected into landing files, each one recorded for `_truth/dirt.csv`.

Row numbers are 1-based data rows of the written file (the header line, and
Google's title lines, are not counted).
"""

from __future__ import annotations

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
    rows = _pick(rng, frame.height, share, 2, allowed)
    emails = frame[column].to_list()
    items = []
    for r in rows:
        clean = emails[r]
        style = int(rng.integers(0, 3))
        if style == 0:
            dirty = f" {clean} "
        elif style == 1:
            dirty = clean.upper()
        else:
            local, domain = clean.split("@")
            dirty = f"{local.capitalize()}@{domain.capitalize()} "
        emails[r] = dirty
        items.append(
            DirtItem(
                store_id,
                "email_format",
                file,
                int(r) + 1,
                f"e-mail {dirty!r} should normalise to {clean!r}",
            )
        )
    return frame.with_columns(pl.Series(column, emails)), items


def messy_phones(frame: pl.DataFrame, rng, store_id: str, file: str, share: float = 0.03):
    rows = _pick(rng, frame.height, share, 2)
    phones = frame["phone"].to_list()
    items = []
    for r in rows:
        clean = phones[r]
        phones[r] = messy_phone(clean, rng)
        items.append(
            DirtItem(
                store_id,
                "phone_format",
                file,
                int(r) + 1,
                f"phone {phones[r]!r} is {clean!r} in another format",
            )
        )
    return frame.with_columns(pl.Series("phone", phones)), items


def unknown_currency(
    frame: pl.DataFrame, column: str, rng, store_id: str, file: str, allowed=None, count: int = 3
):
    rows = _pick(rng, frame.height, 0.0, count, allowed)
    values = frame[column].to_list()
    items = []
    for r in rows:
        items.append(
            DirtItem(
                store_id,
                "unknown_currency",
                file,
                int(r) + 1,
                f"currency {UNKNOWN_CURRENCY!r} instead of {values[r]!r}",
            )
        )
        values[r] = UNKNOWN_CURRENCY
    return frame.with_columns(pl.Series(column, values)), items


def negative_quantity(
    frame: pl.DataFrame, column: str, rng, store_id: str, file: str, allowed=None, count: int = 3
):
    rows = _pick(rng, frame.height, 0.0, count, allowed)
    values = frame[column].to_list()
    items = []
    for r in rows:
        flipped = -int(values[r])
        items.append(
            DirtItem(
                store_id,
                "negative_quantity",
                file,
                int(r) + 1,
                f"quantity {flipped} should be {values[r]}",
            )
        )
        values[r] = flipped if frame.schema[column] != pl.String else str(flipped)
    dtype = frame.schema[column]
    return frame.with_columns(pl.Series(column, values, dtype=dtype)), items


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
