"""Great Expectations suites for the staging tables.

GX 1.x has no polars engine and its SQL path fails on DuckDB, so each table is
validated as a pandas frame with an ephemeral context (no files written). The
suites are plain data below: what a staging table must satisfy for the marts
and models to be right. `validate_table` returns a summary with the failing
values, for asset-check metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import duckdb
import polars as pl

from storepulse.ingest.channels import CHANNELS as CHANNEL_VOCABULARY
from storepulse.warehouse import query, quote_ident, scalar, table_exists

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

FINANCIAL_STATUSES = [
    "paid",
    "pending",
    "refunded",
    "partially_refunded",
    "voided",
    "authorized",
    "partially_paid",
    "unpaid",
]
# One channel vocabulary for the whole pipeline (docs/architecture.md).
CHANNELS = list(CHANNEL_VOCABULARY)
CURRENCY_REGEX = r"^[A-Z]{3}$"

# (expectation class name, kwargs, blocking): blocking expectations guard keys
# and money that every downstream number depends on; the rest warn.
SUITES: dict[str, list[tuple[str, dict, bool]]] = {
    "stores": [
        ("ExpectColumnValuesToNotBeNull", {"column": "store_id"}, True),
        ("ExpectColumnValuesToBeUnique", {"column": "store_id"}, True),
        ("ExpectColumnValuesToMatchRegex", {"column": "currency", "regex": CURRENCY_REGEX}, False),
    ],
    "customers": [
        ("ExpectColumnValuesToNotBeNull", {"column": "customer_id"}, True),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["store_id", "customer_id"]}, True),
        (
            "ExpectColumnValuesToMatchRegex",
            {"column": "email", "regex": r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "mostly": 0.99},
            False,
        ),
        (
            "ExpectColumnValuesToMatchRegex",
            {"column": "phone", "regex": r"^[0-9]{6,15}$", "mostly": 0.99},
            False,
        ),
    ],
    "orders": [
        ("ExpectColumnValuesToNotBeNull", {"column": "order_id"}, True),
        ("ExpectColumnValuesToNotBeNull", {"column": "customer_id"}, True),
        ("ExpectColumnValuesToNotBeNull", {"column": "created_at"}, True),
        ("ExpectColumnValuesToNotBeNull", {"column": "total_usd"}, True),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["store_id", "order_id"]}, True),
        ("ExpectColumnValuesToBeBetween", {"column": "total_usd", "min_value": 0}, True),
        ("ExpectColumnValuesToBeBetween", {"column": "refunded_amount_usd", "min_value": 0}, False),
        ("ExpectColumnValuesToMatchRegex", {"column": "currency", "regex": CURRENCY_REGEX}, True),
        (
            "ExpectColumnValuesToBeInSet",
            {"column": "financial_status", "value_set": FINANCIAL_STATUSES},
            False,
        ),
        ("ExpectColumnValuesToBeInSet", {"column": "channel", "value_set": CHANNELS}, False),
    ],
    "order_lines": [
        (
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["store_id", "order_id", "line_no"]},
            True,
        ),
        ("ExpectColumnValuesToNotBeNull", {"column": "sku"}, False),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "quantity", "min_value": 0, "strict_min": True},
            True,
        ),
        ("ExpectColumnValuesToBeBetween", {"column": "unit_price_usd", "min_value": 0}, True),
    ],
    "products": [
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["store_id", "sku"]}, True),
        ("ExpectColumnValuesToBeBetween", {"column": "price_usd", "min_value": 0}, False),
        ("ExpectColumnValuesToBeBetween", {"column": "unit_cost_usd", "min_value": 0}, False),
    ],
    "inventory": [
        (
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["snapshot_date", "store_id", "sku", "warehouse"]},
            True,
        ),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "lead_time_days", "min_value": 0, "max_value": 365},
            False,
        ),
    ],
    "ad_spend": [
        ("ExpectColumnValuesToNotBeNull", {"column": "date"}, True),
        ("ExpectColumnValuesToNotBeNull", {"column": "platform"}, True),
        ("ExpectColumnValuesToBeBetween", {"column": "spend_usd", "min_value": 0}, True),
        ("ExpectColumnValuesToBeInSet", {"column": "platform", "value_set": CHANNELS}, False),
    ],
    "sessions": [
        ("ExpectColumnValuesToBeBetween", {"column": "sessions", "min_value": 0}, True),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "sessions", "column_B": "add_to_cart", "or_equal": True, "mostly": 0.99},
            False,
        ),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {
                "column_A": "add_to_cart",
                "column_B": "checkout_started",
                "or_equal": True,
                "mostly": 0.99,
            },
            False,
        ),
    ],
    "fx_rates": [
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["date", "currency"]}, True),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "usd_per_unit", "min_value": 0, "strict_min": True},
            True,
        ),
    ],
    "privacy_requests": [
        ("ExpectColumnValuesToNotBeNull", {"column": "store_id"}, True),
        ("ExpectColumnValuesToBeInSet", {"column": "kind", "value_set": ["delete"]}, False),
    ],
    "lift_tests": [
        (
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["store_id", "channel", "start_date", "end_date"]},
            True,
        ),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "std_error_usd", "min_value": 0, "strict_min": True},
            True,
        ),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "end_date", "column_B": "start_date", "or_equal": True},
            True,
        ),
        (
            "ExpectColumnValuesToBeInSet",
            {"column": "scope", "value_set": ["immediate", "total"]},
            True,
        ),
    ],
    "partners": [
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["store_id", "partner_id"]}, True),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "commission_rate", "min_value": 0, "max_value": 1},
            True,
        ),
        ("ExpectColumnValuesToBeBetween", {"column": "fixed_fee_usd", "min_value": 0}, True),
        (
            "ExpectColumnValuesToBeInSet",
            {"column": "kind", "value_set": ["kol", "affiliate"]},
            False,
        ),
    ],
    "experiment_assignments": [
        (
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["store_id", "experiment_id", "customer_id"]},
            True,
        ),
        ("ExpectColumnValuesToNotBeNull", {"column": "variant"}, True),
        ("ExpectColumnValuesToNotBeNull", {"column": "assigned_at"}, True),
    ],
}

# Order totals must reconcile with their lines: total = lines - discount + shipping + tax,
# or, where prices include tax (EU/UK/AU stores), total = lines - discount + shipping.
TOTALS_TOLERANCE_USD = 0.05
ORDER_TOTALS_SQL = """
with line_sums as (
    select store_id, order_id, sum(line_total_usd) as lines_usd
    from staging.order_lines group by store_id, order_id
),
differences as (
    select o.store_id, o.order_id,
           o.total_usd - (l.lines_usd - coalesce(o.discount_usd, 0) + coalesce(o.shipping_usd, 0)
                          + coalesce(o.tax_usd, 0)) as tax_exclusive_difference,
           o.total_usd - (l.lines_usd - coalesce(o.discount_usd, 0)
                          + coalesce(o.shipping_usd, 0)) as tax_inclusive_difference
    from staging.orders as o
    join line_sums as l using (store_id, order_id)
    where o.discount_usd is not null or o.shipping_usd is not null or o.tax_usd is not null
)
select store_id, order_id,
       case when abs(tax_exclusive_difference) <= abs(tax_inclusive_difference)
            then tax_exclusive_difference else tax_inclusive_difference end as total_minus_parts_usd
from differences
"""


@dataclass
class ExpectationOutcome:
    expectation: str
    kwargs: dict
    blocking: bool
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    failing_values: list = field(default_factory=list)


@dataclass
class QualityResult:
    table: str
    rows: int
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.blocking and not o.success]

    def describe(self) -> str:
        failed = [o for o in self.outcomes if not o.success]
        if not failed:
            return f"staging.{self.table}: all {len(self.outcomes)} expectations pass on {self.rows:,} rows"
        parts = [
            f"{o.expectation}({_short(o.kwargs)}): {o.unexpected_count} rows, e.g. {o.failing_values[:5]}"
            for o in failed
        ]
        return f"staging.{self.table}: " + "; ".join(parts)


def _short(kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("value_set",))


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_frame(table: str, frame: pl.DataFrame, suite=None) -> QualityResult:
    """Validate a polars frame with the suite for `table` (or an explicit suite)."""
    suite = SUITES[table] if suite is None else suite
    present = [(name, kw, blocking) for name, kw, blocking in suite if _columns_present(kw, frame)]
    if frame.is_empty() or not present:
        return QualityResult(table, frame.height, [])
    outcomes = [
        _outcome(expectation, kwargs, blocking, [part])
        for (expectation, kwargs, blocking), part in zip(
            present, _run_suite(table, frame, present), strict=True
        )
    ]
    return QualityResult(table, frame.height, outcomes)


def _run_suite(table: str, frame: pl.DataFrame, present: list) -> list[tuple[bool, dict]]:
    """GX on one pandas batch: (success, result detail) per expectation."""
    import great_expectations as gx

    context = _context()
    name = f"sp_{table}_{id(frame)}"
    source = context.data_sources.add_or_update_pandas(name)
    asset = source.add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name).get_batch(
        batch_parameters={"dataframe": frame.to_pandas()}
    )
    gx_suite = gx.ExpectationSuite(name=name)
    for expectation, kwargs, _ in present:
        gx_suite.add_expectation(getattr(gx.expectations, expectation)(**kwargs))
    result = batch.validate(gx_suite)
    context.data_sources.delete(name)
    return [(bool(res.success), res.result or {}) for res in result.results]


def _outcome(expectation: str, kwargs: dict, blocking: bool, parts: list) -> ExpectationOutcome:
    """One expectation's outcome over the batches of a table, as if GX had seen it whole.

    Every batch holds whole stores, so a key that includes store_id is unique in the table
    exactly when it is unique in each batch; counts add up; a `mostly` expectation is
    judged on the share over all batches (GX's rule: non-missing values that pass)."""
    if len(parts) == 1:
        success, detail = parts[0]
        unexpected, percent = detail.get("unexpected_count"), detail.get("unexpected_percent")
    else:
        counts = [d.get("unexpected_count") for _, d in parts]
        unexpected = None if None in counts else sum(counts)
        present = sum(d.get("element_count", 0) - (d.get("missing_count") or 0) for _, d in parts)
        percent = None if unexpected is None or not present else 100 * unexpected / present
        success = all(ok for ok, _ in parts)
        if "mostly" in kwargs and percent is not None:
            success = (100 - percent) / 100 >= kwargs["mostly"]
    failing = [v for _, d in parts for v in (d.get("partial_unexpected_list") or [])]
    return ExpectationOutcome(
        expectation=expectation,
        kwargs=kwargs,
        blocking=blocking,
        success=success,
        unexpected_count=unexpected,
        unexpected_percent=percent,
        failing_values=[_plain(v) for v in failing[:20]],
    )


def _columns_present(kwargs: dict, frame: pl.DataFrame) -> bool:
    return _columns_in(kwargs, frame.columns)


def _plain(value):
    if isinstance(value, dict | list | tuple):
        return (
            [_plain(v) for v in value]
            if not isinstance(value, dict)
            else {k: _plain(v) for k, v in value.items()}
        )
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


# Rows of one GX batch: a table is validated in batches of whole stores, so memory is
# bounded by this (or by the largest store), not by the whole portfolio (issue #18).
VALIDATION_BATCH_ROWS = 1_000_000


def validate_table(
    con: duckdb.DuckDBPyConnection, table: str, batch_rows: int = VALIDATION_BATCH_ROWS
) -> QualityResult:
    """Validate staging.<table> as it is in the warehouse: only the columns its suite
    reads, in batches of whole stores (one batch up to `batch_rows` rows)."""
    name = f"staging.{table}"
    if not table_exists(con, name):
        return QualityResult(table, 0, [])
    columns = query(con, f"select * from {name} limit 0").columns
    suite = [(e, kw, b) for e, kw, b in SUITES[table] if _columns_in(kw, columns)]
    if not suite:
        return QualityResult(table, int(scalar(con, f"select count(*) from {name}")), [])
    needed = list(dict.fromkeys(c for _, kw, _ in suite for c in _columns_of(kw)))
    if "store_id" in columns:
        needed = list(dict.fromkeys(["store_id", *needed]))
    select = f"select {', '.join(quote_ident(c) for c in needed)} from {name}"
    return _validate_by_stores(con, table, select, suite, batch_rows)


def _validate_by_stores(
    con: duckdb.DuckDBPyConnection, table: str, select: str, suite: list, batch_rows: int
) -> QualityResult:
    """GX over the rows of `select`, in batches of whole stores where it has store_id."""
    source = f"select * from ({select}) as source"
    if "store_id" not in query(con, f"{source} limit 0").columns:
        return validate_frame(table, query(con, source), suite)
    sizes = query(con, f"select store_id, count(*) as n from ({select}) group by all order by all")
    batches: list[list] = [[]]
    filled = 0
    for store, n in sizes.iter_rows():
        if batches[-1] and filled + n > batch_rows:
            batches.append([])
            filled = 0
        batches[-1].append(store)
        filled += n
    if len(batches) == 1:
        return validate_frame(table, query(con, source), suite)
    parts: list[list] = [[] for _ in suite]
    rows = 0
    for stores in batches:
        known = [s for s in stores if s is not None]
        where = "list_contains($stores, store_id)" + (
            " or store_id is null" if None in stores else ""
        )
        frame = query(con, f"{source} where {where}", {"stores": known})
        rows += frame.height  # every batch has rows: its stores were counted above
        for outcome, part in zip(parts, _run_suite(table, frame, suite), strict=True):
            outcome.append(part)
        del frame
    outcomes = [_outcome(e, kw, b, p) for (e, kw, b), p in zip(suite, parts, strict=True)]
    return QualityResult(table, rows, outcomes)


def _columns_of(kwargs: dict) -> list[str]:
    columns = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
    return [c for c in [*columns, *kwargs.get("column_list", [])] if c]


def _columns_in(kwargs: dict, columns: list[str]) -> bool:
    return all(c in columns for c in _columns_of(kwargs))


def validate_order_totals(con: duckdb.DuckDBPyConnection) -> QualityResult:
    """Order total = lines − discount + shipping + tax, within TOTALS_TOLERANCE_USD."""
    if not (table_exists(con, "staging.orders") and table_exists(con, "staging.order_lines")):
        return QualityResult("order_totals", 0, [])
    suite = [
        (
            "ExpectColumnValuesToBeBetween",
            {
                "column": "total_minus_parts_usd",
                "min_value": -TOTALS_TOLERANCE_USD,
                "max_value": TOTALS_TOLERANCE_USD,
                "mostly": 0.995,
            },
            False,
        )
    ]
    return _validate_by_stores(con, "order_totals", ORDER_TOTALS_SQL, suite, VALIDATION_BATCH_ROWS)


# A store of a home whose last order is this many days older than the home's newest
# order has more likely a broken export than no customers.
STALE_AFTER_DAYS = 14


def stale_stores(
    con: duckdb.DuckDBPyConnection, stale_after_days: int = STALE_AFTER_DAYS
) -> pl.DataFrame:
    """Stores whose last staged order is more than `stale_after_days` before the newest
    order of any store in the home: store_id, last_order_date, days_behind (newest
    first). Empty when the home has one store, or none behind."""
    if not table_exists(con, "staging.orders"):
        return pl.DataFrame(
            schema={"store_id": pl.String, "last_order_date": pl.Date, "days_behind": pl.Int64}
        )
    return query(
        con,
        "with last as (select store_id, max(order_date) as last_order_date from staging.orders"
        " where store_id is not null group by store_id)"
        " select store_id, last_order_date,"
        " cast(date_diff('day', last_order_date, (select max(last_order_date) from last))"
        " as bigint) as days_behind from last"
        " where date_diff('day', last_order_date, (select max(last_order_date) from last)) > ?"
        " order by days_behind, store_id",
        [stale_after_days],
    )
