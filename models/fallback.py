"""The fallback chain of the per-customer models (churn, CLV): their methods ordered
from the most complex to the simplest; a store scored with a method that cannot
score (not fitted, not backtested) gets the next one down, and the simplest always
stays. Also the record the model lifecycle reads about each candidate.

Pure: no Dagster, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl


def resolve(methods: tuple[str, ...], unavailable: dict[str, str], method: str, model: str) -> str:
    """`method` itself when it can score, else the next one down `methods` that can
    (`model` names the model in the error for an unknown method)."""
    if method not in methods:
        raise ValueError(f"unknown {model} method {method!r}; expected one of {methods}")
    for candidate in methods[methods.index(method) :]:
        if candidate not in unavailable:
            return candidate
    return methods[-1]


def method_per_row(
    store_id: pl.Series,
    resolve_method: Callable[[str], str],
    method_of_store: dict[str, str] | None,
    default: str,
) -> pl.Series:
    """Per row, the method that scores its store: the store's entry in
    `method_of_store`, else `default`, passed through `resolve_method`."""
    wanted = method_of_store or {}
    used = {s: resolve_method(wanted.get(s, default)) for s in store_id.unique().to_list()}
    return store_id.replace_strict(used, return_dtype=pl.String)


def candidates(
    methods: tuple[str, ...],
    unavailable: dict[str, str],
    champion: str,
    why: str,
    metrics: Callable[[str], object],
    store_metrics: Callable[[str], object],
) -> dict[str, dict]:
    """What the lifecycle reads about each candidate: whether it is available, the
    reason (why not; for the champion, why it won; else empty), its backtest metrics
    and its metrics per store (`metrics(method)`, `store_metrics(method)`)."""
    return {
        method: {
            "available": method not in unavailable,
            "reason": unavailable.get(method, why if method == champion else ""),
            "metrics": metrics(method),
            "store_metrics": store_metrics(method),
        }
        for method in methods
    }
