"""The code location for a deployment over many machines (issue #18, docs/deploy.md):
the same Definitions as pipelines/definitions.py, except that the per-store jobs run
their steps on Dagster's Celery executor, so the steps of every per-store run are
spread over the Celery workers of all machines.

Load it instead of pipelines.definitions (deploy/celery/workspace.yaml, or
`dagster ... -m pipelines.definitions_celery`), on the webserver/daemon machine and on
every worker (`dagster-celery worker start -A dagster_celery.app -y
deploy/celery/celery.yaml -i pipelines.definitions_celery`): a worker imports the job
of each step it runs from this module. The default code location is unchanged.

Only the per-store jobs move: their steps read the warehouse read-only and write their
own store's files (the lake, the export set), so any number of them can run on any
machine. The jobs that write the warehouse (ingest, nightly_scoring, weekly_training,
merge_lake) stay in-process, in their run's process, on the machine that holds the
DuckDB file: DuckDB has one writer (docs/deploy.md).
"""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor

from pipelines import definitions as local
from pipelines import jobs, sensors

# The broker and the result backend, from the environment of the run's process (the
# workers read the same variables through deploy/celery/celery.yaml, which must say the
# same as this; tests/test_celery_executor.py checks that it does). Both Redis, e.g.
# redis://broker-host:6379/0 and redis://broker-host:6379/1.
BROKER_ENV = "STOREPULSE_CELERY_BROKER_URL"
BACKEND_ENV = "STOREPULSE_CELERY_BACKEND_URL"
CELERY_CONFIG = {
    "broker": {"env": BROKER_ENV},
    "backend": {"env": BACKEND_ENV},
}
storepulse_celery_executor = celery_executor.configured(
    CELERY_CONFIG, name="storepulse_celery_executor"
)

# Per-store jobs: one run per `stores` partition, steps on the Celery workers.
CELERY_JOBS = (jobs.score_store_job, jobs.publish_store_job)


def on_celery(job: dg.UnresolvedAssetJobDefinition) -> dg.UnresolvedAssetJobDefinition:
    """The same job (name, selection, partitions, hooks) with its steps on Celery."""
    return dg.define_asset_job(
        name=job.name,
        selection=job.selection,
        config=job.config,
        description=f"{job.description} Steps run on the Celery workers.",
        tags=job.tags,
        run_tags=job.run_tags,
        partitions_def=job.partitions_def,
        executor_def=storepulse_celery_executor,
        hooks=job.hooks,
        op_retry_policy=job.op_retry_policy,
    )


_celery_jobs = {job.name: on_celery(job) for job in CELERY_JOBS}
# The publish fan-out sensor requests the Celery publish_store (a job name must mean
# one job in a code location).
_sensors = [
    sensors.publish_after_nightly(_celery_jobs[jobs.publish_store_job.name])
    if sensor.name == sensors.publish_after_nightly_sensor.name
    else sensor
    for sensor in local.defs.sensors or []
]
defs = dg.Definitions(
    assets=local.defs.assets,
    asset_checks=local.defs.asset_checks,
    jobs=[
        *(job for job in local.defs.jobs or [] if job.name not in _celery_jobs),
        *_celery_jobs.values(),
    ],
    schedules=local.defs.schedules,
    sensors=_sensors,
    executor=local.defs.executor,
    resources=local.defs.resources,
)
