"""Staging (group "staging"): one typed table per input kind, and privacy erasure.

The staging tables are built by the ingest step (pipelines/assets/ingest.py) in the
same transaction that appends the landed files to raw: raw and staging are only
ever replaced together, so a run killed between them cannot leave staging behind
raw. Their specs are declared here, with the group's other asset:
`privacy_requests_applied` erases requested customers right after ingest; every
mart and score depends on it, so nothing built later sees them.
"""

import dagster as dg

from pipelines.metadata import OWNER, metrics, preview
from pipelines.partitions import sync_store_partitions
from pipelines.resources import StorepulseResource
from storepulse.ingest.kinds import KINDS

# One staging table per input kind (the list lives in storepulse/ingest/kinds.py).
STAGING_KINDS = KINDS
LANDING_FILES = dg.AssetKey(["raw", "landing_files"])
# Every mart and model depends on it, so nothing is computed from a customer who
# asked to be forgotten.
PRIVACY_APPLIED = dg.AssetKey(["ops", "privacy_requests_applied"])


def staging_key(kind: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", kind])


def staging_inputs(*kinds: str) -> list[dg.AssetKey]:
    """The deps of an asset that reads staging.<kind> for each of `kinds`: those tables
    and the privacy step that runs after every ingest."""
    return [*(staging_key(kind) for kind in kinds), PRIVACY_APPLIED]


STAGING_SPECS = [
    dg.AssetSpec(
        staging_key(kind),
        group_name="staging",
        kinds={"duckdb"},
        owners=[OWNER],
        deps=[LANDING_FILES],
        description=(
            f"staging.{kind}: typed, deduplicated, conformed keys, money also in USD "
            "(nearest earlier FX rate). Columns: docs/architecture.md."
        ),
    )
    for kind in STAGING_KINDS
]


@dg.asset(
    key=PRIVACY_APPLIED,
    group_name="staging",
    deps=[staging_key(kind) for kind in STAGING_KINDS],
    kinds={"duckdb"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Privacy deletion requests applied: every customer ever asked to be forgotten "
        "(`storepulse forget`, or privacy_requests files) is deleted from raw, staging, marts, "
        "scores and quarantine in one transaction, right after each ingest, and recorded in "
        "ops.privacy_log (hashed e-mail only). Also registers a `stores` partition for every "
        "store seen."
    ),
)
def privacy_requests_applied(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource
) -> dg.MaterializeResult:
    from storepulse.privacy import apply_privacy_requests
    from storepulse.publish import store_ids

    with storepulse.writer() as con:
        summary = apply_privacy_requests(con)
        stores = store_ids(con)
    added = sync_store_partitions(context.instance, stores)
    if added:
        context.log.info(f"New store partitions: {', '.join(added)}")
    import polars as pl

    touched = pl.DataFrame(
        {"table": list(summary.rows_deleted), "rows_deleted": list(summary.rows_deleted.values())}
    )
    return dg.MaterializeResult(
        metadata={
            "requests": summary.requests,
            "imported_from_landing": summary.imported_from_landing,
            "rows_deleted": summary.total_rows_deleted,
            "tables_touched": preview(touched, rows=50),
            "stores": metrics({"count": len(stores), "new_partitions": added}),
        }
    )
