"""Data-quality asset checks on the staging layer.

- One Great Expectations suite per staging table (storepulse/quality.py), with the
  failing values in the check metadata. Key and money expectations are blocking:
  marts are not built on duplicate keys or negative totals.
- Order totals reconcile with their lines (total = lines − discount + shipping + tax).
- Conservation: for every landed file, rows read = staged + duplicates + quarantined.
"""

import dagster as dg

from pipelines.assets.staging import LANDING_FILES, STAGING_KINDS, staging_key
from pipelines.metadata import preview
from pipelines.resources import StorepulseResource
from storepulse.quality import (
    STALE_AFTER_DAYS,
    QualityResult,
    stale_stores,
    validate_order_totals,
    validate_table,
)
from storepulse.warehouse import query


def _to_check_result(result: QualityResult) -> dg.AssetCheckResult:
    failed = [o for o in result.outcomes if not o.success]
    blocking_failed = [o for o in failed if o.blocking]
    return dg.AssetCheckResult(
        passed=not blocking_failed,
        severity=dg.AssetCheckSeverity.ERROR if blocking_failed else dg.AssetCheckSeverity.WARN,
        description=result.describe(),
        metadata={
            "rows": result.rows,
            "expectations": len(result.outcomes),
            "failed_expectations": len(failed),
            "failures": dg.MetadataValue.json(
                [
                    {
                        "expectation": o.expectation,
                        "args": {k: v for k, v in o.kwargs.items() if k != "value_set"},
                        "blocking": o.blocking,
                        "unexpected_count": o.unexpected_count,
                        "unexpected_percent": o.unexpected_percent,
                        "failing_values": o.failing_values,
                    }
                    for o in failed
                ]
            ),
        },
    )


def _gx_check(kind: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=staging_key(kind),
        name=f"gx_{kind}",
        description=f"Great Expectations suite for staging.{kind} (storepulse/quality.py).",
        blocking=True,
        pool="duckdb",
    )
    def _check(storepulse: StorepulseResource) -> dg.AssetCheckResult:
        with storepulse.writer() as con:
            result = validate_table(con, kind)
        # Failed non-blocking expectations surface as a passed check with WARN severity.
        return _to_check_result(result)

    return _check


gx_checks = [_gx_check(kind) for kind in STAGING_KINDS]


@dg.asset_check(
    asset=staging_key("orders"),
    name="order_totals_match_lines",
    description="total = lines − discount + shipping + tax (±0.05 USD) for orders that have lines.",
    pool="duckdb",
)
def order_totals_match_lines(storepulse: StorepulseResource) -> dg.AssetCheckResult:
    with storepulse.writer() as con:
        result = validate_order_totals(con)
    outcome = _to_check_result(result)
    failed = not result.success
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=outcome.metadata,
    )


@dg.asset_check(
    asset=LANDING_FILES,
    name="rows_conserved",
    description="For every landed file: rows read = staged + duplicates + quarantined. Nothing is lost.",
    blocking=True,
    pool="duckdb",
)
def rows_conserved(storepulse: StorepulseResource) -> dg.AssetCheckResult:
    with storepulse.writer() as con:
        files = query(
            con,
            "select path, kind, rows_read, rows_staged, rows_duplicate, rows_quarantined "
            "from ops.ingested_files where status = 'ingested' "
            "and rows_read <> rows_staged + rows_duplicate + rows_quarantined",
        )
        totals = query(
            con,
            "select count(*) as files, coalesce(sum(rows_read), 0) as rows_read, "
            "coalesce(sum(rows_staged), 0) as rows_staged, coalesce(sum(rows_duplicate), 0) as rows_duplicate, "
            "coalesce(sum(rows_quarantined), 0) as rows_quarantined from ops.ingested_files "
            "where status = 'ingested'",
        ).row(0, named=True)
    return dg.AssetCheckResult(
        passed=files.is_empty(),
        description=(
            f"{totals['files']} files: {totals['rows_read']:,} rows read = {totals['rows_staged']:,} "
            f"staged + {totals['rows_duplicate']:,} duplicates + {totals['rows_quarantined']:,} quarantined"
            if files.is_empty()
            else f"{files.height} files do not add up; see 'unbalanced_files'"
        ),
        metadata={**{k: int(v) for k, v in totals.items()}, "unbalanced_files": preview(files)},
    )


@dg.asset_check(
    asset=staging_key("orders"),
    name="every_store_is_current",
    description=f"Every store's last order is within {STALE_AFTER_DAYS} days of the newest "
    "order in the home: a store far behind has more likely a broken export than no sales.",
    pool="duckdb",
)
def every_store_is_current(storepulse: StorepulseResource) -> dg.AssetCheckResult:
    with storepulse.writer() as con:
        behind = stale_stores(con)
    return dg.AssetCheckResult(
        passed=behind.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "every store is current"
            if behind.is_empty()
            else f"{behind.height} stores stopped sending orders: "
            + ", ".join(f"{s} (last {d})" for s, d, _ in behind.iter_rows())
        ),
        metadata={"stores_behind": preview(behind)},
    )


CHECKS = [*gx_checks, order_totals_match_lines, rows_conserved, every_store_is_current]
