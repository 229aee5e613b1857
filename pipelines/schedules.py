"""Schedules (UTC). Cron strings are overridable by environment variables."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import nightly_scoring_job, weekly_training_job
from storepulse import settings


def _running_on_utc(name: str, job, cron: str, description: str) -> dg.ScheduleDefinition:
    """Every schedule reads its cron as UTC and is on from the start."""
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


nightly_scoring_schedule = _running_on_utc(
    "nightly_scoring_schedule",
    nightly_scoring_job,
    settings.nightly_cron(),
    "Every night (02:00 UTC by default): ingest, score, then publish per store.",
)
weekly_training_schedule = _running_on_utc(
    "weekly_training_schedule",
    weekly_training_job,
    settings.weekly_cron(),
    "Sundays 04:00 UTC by default: retrain, backtest and approve every model.",
)

SCHEDULES = [nightly_scoring_schedule, weekly_training_schedule]
