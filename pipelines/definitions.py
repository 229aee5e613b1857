"""The one Definitions object: read this file to see the whole system."""

from __future__ import annotations

import dagster as dg

from pipelines import checks, jobs, schedules, sensors
from pipelines.assets import (
    ad_roi,
    churn,
    demand,
    experiments,
    ingest,
    lake,
    marts,
    order_risk,
    partners,
    publish,
    segments,
    staging,
)
from pipelines.resources import run_settings_resource, storepulse_resource

ASSET_MODULES = [
    ingest, staging, marts, segments, churn, demand, ad_roi,
    partners, experiments, order_risk,
    publish, lake,
]  # fmt: skip

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=[*dg.load_asset_checks_from_modules(ASSET_MODULES), *checks.CHECKS],
    jobs=[
        jobs.ingest_job,
        jobs.nightly_scoring_job,
        jobs.publish_store_job,
        jobs.weekly_training_job,
        jobs.score_store_job,
        jobs.merge_lake_job,
    ],
    schedules=schedules.SCHEDULES,
    sensors=sensors.SENSORS,
    # Every step reads or writes the one DuckDB file, so steps of a run cannot run
    # in parallel anyway; in-process execution saves a Python start-up per step.
    # Parallelism comes from runs: one publish run per store (DESIGN §7).
    executor=dg.in_process_executor,
    # Bound to the STOREPULSE_* variables (dg.EnvVar), so the Launchpad shows them.
    resources={
        "storepulse": storepulse_resource(),
        "run_settings": run_settings_resource(),
    },
)
