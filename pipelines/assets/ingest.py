"""Ingest: landing files -> raw.* (as landed) -> staging.* (typed, conformed, USD).

One step, one transaction: the staging tables are only ever replaced together,
so a killed run leaves the previous complete set.
"""

import dagster as dg

from pipelines.assets.staging import LANDING_FILES, STAGING_KINDS, STAGING_SPECS, staging_key
from pipelines.metadata import OWNER, preview
from pipelines.resources import StorepulseResource
from storepulse.alerts import drain_alerts
from storepulse.warehouse import query


@dg.multi_asset(
    name="ingest_landing",
    specs=[
        dg.AssetSpec(
            LANDING_FILES,
            group_name="ingest",
            kinds={"duckdb"},
            owners=[OWNER],
            description=(
                "Every file in the landing folder, detected by header, recorded in "
                "ops.ingested_files (by sha256: the same content is ingested once) and "
                "loaded as landed into raw.<kind>. Unusable rows go to quarantine.rows."
            ),
        ),
        *STAGING_SPECS,
    ],
    can_subset=False,
    pool="duckdb",
)
def ingest_landing_asset(context: dg.AssetExecutionContext, storepulse: StorepulseResource):
    from storepulse.ingest import ingest_landing

    paths = storepulse.paths()
    with storepulse.writer() as con:
        drained = drain_alerts(con, paths.home)
        if drained:
            context.log.info(f"moved {drained} spooled run-failure alerts into ops.alerts")
        report = ingest_landing(con, paths.landing)
        files = query(
            con,
            "select path, kind, store_id, status, rows_read, rows_staged, rows_duplicate, "
            "rows_quarantined, match_score, runner_up, runner_up_score, unused_columns, message "
            "from ops.ingested_files order by ingested_at desc, path",
        )
        counts = {
            kind: query(con, f"select count(*) as n from staging.{kind}")["n"][0]
            for kind in STAGING_KINDS
        }
    new_files = [f for f in report.files if f.status != "skipped"]
    # Files a person should look at tonight: not loaded, or loaded without some columns.
    for line in report.attention:
        context.log.warning(line)
    yield dg.MaterializeResult(
        asset_key=LANDING_FILES,
        metadata={
            "landing_dir": str(paths.landing),
            "files_seen": len(report.files),
            "files_ingested_this_run": len(new_files),
            "rows_quarantined_this_run": sum(f.rows_quarantined for f in report.files),
            "files_needing_attention": dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in report.attention) or "none"
            ),
            "files": preview(files, rows=25),
        },
    )
    for kind in STAGING_KINDS:
        yield dg.MaterializeResult(
            asset_key=staging_key(kind),
            metadata={"dagster/row_count": int(counts[kind])},
        )
