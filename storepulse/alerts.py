"""Run-failure alerts: ops.alerts in the warehouse, the log, and an optional webhook.

The failure sensor runs in the Dagster daemon while another run may hold the one
DuckDB writer, so an alert is first appended to a spool file
(STOREPULSE_HOME/alerts.jsonl) and copied into ops.alerts by whoever next holds
the writer (`drain_alerts`). Nothing is lost when the warehouse is busy.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from storepulse import settings
from storepulse.warehouse import append_rows, transaction

log = logging.getLogger("storepulse.alerts")


def spool_path(home: Path) -> Path:
    return Path(home) / "alerts.jsonl"


def raise_alert(
    home: Path, *, run_id: str, job_name: str, message: str, severity: str = "error"
) -> dict:
    """Record an alert in the spool, the log and the webhook (if configured)."""
    alert = {
        "raised_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
        "run_id": run_id,
        "job_name": job_name,
        "severity": severity,
        "message": message,
    }
    path = spool_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(alert) + "\n")
    log.error("storepulse run %s (%s) failed: %s", run_id, job_name, message)
    url = settings.alert_webhook_url()
    if url:
        try:
            request = urllib.request.Request(
                url,
                data=json.dumps(
                    {"text": f"storepulse {job_name} failed: {message}", **alert}
                ).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 - operator-configured URL
        except OSError as exc:  # the alert is already spooled and logged
            log.warning("alert webhook %s failed: %s", url, exc)
    return alert


def drain_alerts(con: duckdb.DuckDBPyConnection, home: Path) -> int:
    """Move spooled alerts into ops.alerts (atomically: the spool is cleared after commit)."""
    path = spool_path(home)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    processing = path.with_suffix(".jsonl.processing")
    path.replace(processing)
    lines = [json.loads(line) for line in processing.read_text().splitlines() if line.strip()]
    if lines:
        frame = pl.DataFrame(lines).with_columns(pl.col("raised_at").str.to_datetime())
        with transaction(con):
            append_rows(con, "ops.alerts", frame)
    processing.unlink()
    return len(lines)
