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
from storepulse.warehouse import query, table_exists

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
    import great_expectations as gx

    suite = SUITES[table] if suite is None else suite
    present = [(name, kw, blocking) for name, kw, blocking in suite if _columns_present(kw, frame)]
    if frame.is_empty() or not present:
        return QualityResult(table, frame.height, [])
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
    outcomes = []
    for (expectation, kwargs, blocking), res in zip(present, result.results, strict=True):
        detail = res.result or {}
        failing = detail.get("partial_unexpected_list") or []
        outcomes.append(
            ExpectationOutcome(
                expectation=expectation,
                kwargs=kwargs,
                blocking=blocking,
                success=bool(res.success),
                unexpected_count=detail.get("unexpected_count"),
                unexpected_percent=detail.get("unexpected_percent"),
                failing_values=[_plain(v) for v in failing[:20]],
            )
        )
    context.data_sources.delete(name)
    return QualityResult(table, frame.height, outcomes)


def _columns_present(kwargs: dict, frame: pl.DataFrame) -> bool:
    columns = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
    columns += kwargs.get("column_list", [])
    return all(c in frame.columns for c in columns if c)


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


def validate_table(con: duckdb.DuckDBPyConnection, table: str) -> QualityResult:
    """Validate staging.<table> as it is in the warehouse."""
    if not table_exists(con, f"staging.{table}"):
        return QualityResult(table, 0, [])
    frame = query(con, f"select * from staging.{table}")
    return validate_frame(table, frame)


def validate_order_totals(con: duckdb.DuckDBPyConnection) -> QualityResult:
    """Order total = lines − discount + shipping + tax, within TOTALS_TOLERANCE_USD."""
    if not (table_exists(con, "staging.orders") and table_exists(con, "staging.order_lines")):
        return QualityResult("order_totals", 0, [])
    frame = query(con, ORDER_TOTALS_SQL)
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
    return validate_frame("order_totals", frame, suite=suite)
