"""Sensors. They never open the warehouse (a run may hold the one writer):
the landing sensor keeps its own cursor of file names, sizes and mtimes and
leaves the real bookkeeping (sha256, ops.ingested_files) to the run."""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from pipelines.jobs import ingest_job, nightly_scoring_job, publish_store_job
from pipelines.partitions import STORES
from storepulse.alerts import raise_alert
from storepulse.settings import Paths


def landing_snapshot(landing) -> dict[str, list]:
    """{relative path: [size, mtime_ns]} for every candidate file (skips _ and . folders)."""
    snapshot: dict[str, list] = {}
    if not landing.exists():
        return snapshot
    for path in sorted(landing.rglob("*")):
        rel = path.relative_to(landing)
        if not path.is_file() or any(part.startswith(("_", ".")) for part in rel.parts):
            continue
        stat = path.stat()
        snapshot[rel.as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return snapshot


@dg.sensor(
    name="landing_folder_sensor",
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the ingest job when files appear or change in the landing folder.",
)
def landing_folder_sensor(context: dg.SensorEvaluationContext):
    landing = Paths.from_env().landing
    snapshot = landing_snapshot(landing)
    previous = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(k for k, v in snapshot.items() if previous.get(k) != v)
    if not changed:
        return dg.SkipReason(f"No new or changed files in {landing}")
    digest = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:16]
    context.update_cursor(json.dumps(snapshot))
    return dg.RunRequest(
        run_key=f"landing-{digest}",
        tags={"storepulse/changed_files": str(len(changed))},
    )


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Records every failed run as an alert: ops.alerts (via a spool file, since the "
        "warehouse may be busy), the log, and STOREPULSE_ALERT_WEBHOOK when set."
    ),
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    message = context.failure_event.message or "run failed"
    raise_alert(
        Paths.from_env().home,
        run_id=context.dagster_run.run_id,
        job_name=context.dagster_run.job_name,
        message=message,
    )


def publish_after_nightly(request_job) -> dg.SensorDefinition:
    """The publish fan-out sensor for `request_job` (the publish_store job: in-process
    here, on Celery in pipelines/definitions_celery.py)."""

    @dg.run_status_sensor(
        name="publish_after_nightly_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[nightly_scoring_job],
        request_job=request_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "When nightly_scoring succeeds, fan out one publish_store run per store partition "
            "(the partitions are registered by the privacy step after every ingest)."
        ),
    )
    def publish_after_nightly_sensor(context: dg.RunStatusSensorContext):
        stores = context.instance.get_dynamic_partitions(STORES.name)
        if not stores:
            return dg.SkipReason("No store partitions registered yet.")
        run_config = context.dagster_run.run_config or {}
        return [
            dg.RunRequest(
                run_key=f"{context.dagster_run.run_id}-{store_id}",
                partition_key=store_id,
                run_config=run_config,
                tags={"storepulse/nightly_run": context.dagster_run.run_id},
            )
            for store_id in stores
        ]

    return publish_after_nightly_sensor


publish_after_nightly_sensor = publish_after_nightly(publish_store_job)

SENSORS = [landing_folder_sensor, run_failure_alert_sensor, publish_after_nightly_sensor]
