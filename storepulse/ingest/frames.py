"""Polars expression helpers shared by the layout mappers (layouts.py, platforms.py)."""

from __future__ import annotations

import polars as pl

from storepulse.ingest.kinds import ROW_PROBLEM, header_key

ROW = "__row"
PROBLEM = "__problem"  # a row-level problem found while reading (readers.py); else null


class LayoutError(ValueError):
    """A header that is recognised but cannot be used (the message says why and how to fix)."""


def find(columns: tuple[str, ...], *candidates: str) -> str | None:
    """The first file column whose header_key is one of the candidates (in candidate order)."""
    keyed = {}
    for column in columns:
        keyed.setdefault(header_key(column), column)
    for candidate in candidates:
        if candidate in keyed:
            return keyed[candidate]
    return None


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def problem_expr(frame: pl.DataFrame) -> pl.Expr:
    return col(frame, PROBLEM).alias(ROW_PROBLEM)


def col(frame: pl.DataFrame, column: str | None) -> pl.Expr:
    return (
        pl.col(column) if column is not None and column in frame.columns else pl.lit(None, pl.Utf8)
    )
