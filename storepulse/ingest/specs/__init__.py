"""What each input kind's staging table is made of, one function per kind.

Each function returns a `KindSql`: how the raw strings are parsed (`parsed`, over
`raw.<kind> r` and its `joins`), the row checks in order (the first failed check is
the row's quarantine reason, in words a merchant can act on), the staging columns
(`output`), the keys that decide versions and duplicates, and the FX conversion.
`staging.build_kind` turns a KindSql into SQL; adding a kind is one function here
plus its columns in kinds.py.
"""

from __future__ import annotations

from collections.abc import Callable

from storepulse.ingest.specs.commerce import (
    _customers,
    _fx_rates,
    _inventory,
    _order_lines,
    _orders,
    _products,
    _stores,
)
from storepulse.ingest.specs.common import KindSql, lit, raw_cols
from storepulse.ingest.specs.growth import _experiment_assignments, _lift_tests, _partners
from storepulse.ingest.specs.marketing import _ad_spend, _privacy_requests, _sessions

__all__ = ["SPECS", "KindSql", "kind_sql", "lit", "raw_cols"]


SPECS: dict[str, Callable[[str], KindSql]] = {
    "fx_rates": _fx_rates,
    "stores": _stores,
    "customers": _customers,
    "products": _products,
    "orders": _orders,
    "inventory": _inventory,
    "ad_spend": _ad_spend,
    "sessions": _sessions,
    "privacy_requests": _privacy_requests,
    "lift_tests": _lift_tests,
    "partners": _partners,
    "experiment_assignments": _experiment_assignments,
}


def kind_sql(kind: str, now: str, *, line_no_gaps: bool = True) -> KindSql:
    """The SQL pieces of one kind. `line_no_gaps=False` says no order line lacks its
    line_no, so the row_number() window that numbers such lines (a sort of every line)
    is left out: its value would never be used."""
    if kind == "order_lines":
        return _order_lines(now, line_no_gaps)
    return SPECS[kind](now)
