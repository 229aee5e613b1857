"""Schedules (UTC). Cron strings are overridable by environment variables."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import nightly_scoring_job, weekly_training_job
from storepulse import settings

nightly_scoring_schedule = dg.ScheduleDefinition(
    name="nightly_scoring_schedule",
    job=nightly_scoring_job,
    cron_schedule=settings.nightly_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night (02:00 UTC by default): ingest, score, then publish per store.",
)

weekly_training_schedule = dg.ScheduleDefinition(
    name="weekly_training_schedule",
    job=weekly_training_job,
    cron_schedule=settings.weekly_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays 04:00 UTC by default: retrain, backtest and approve every model.",
)

SCHEDULES = [nightly_scoring_schedule, weekly_training_schedule]
