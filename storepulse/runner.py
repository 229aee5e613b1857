"""Run the Dagster jobs in-process against STOREPULSE_HOME (what `storepulse run` does).

Runs are recorded in the same Dagster instance as `make ui`, so the UI shows them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from storepulse.settings import Paths


@dataclass
class RunResult:
    success: bool
    as_of: date | None
    paths: Paths
    run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    published_stores: list[str] = field(default_factory=list)
    # Landing files of this run that were not loaded, or only partly (their reasons).
    attention: list[str] = field(default_factory=list)
    # Stores whose last order is far behind the home's newest (a broken export?).
    stale: list[str] = field(default_factory=list)
    # Landing files of this run with quarantined rows (how many, and the first one's reason).
    quarantined: list[str] = field(default_factory=list)
    # ops.store_status lines of this as_of that are not plain "ok" (fallbacks, skips, failures).
    store_notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        status = "succeeded" if self.success else "FAILED"
        lines = [
            f"storepulse nightly run {status} in {self.seconds:.1f}s (as_of {self.as_of})",
            f"  warehouse: {self.paths.warehouse}",
            f"  exports:   {self.paths.exports}",
            f"  reports:   {self.paths.reports}/<store_id>.html (also in each store's export set)",
            f"  dagster:   {self.paths.dagster_home} (open with `make ui`)",
        ]
        if self.tables:
            lines.append("  tables:")
            lines += [
                f"    {name:<28} {rows:>10,} rows" for name, rows in sorted(self.tables.items())
            ]
        if self.published_stores:
            lines.append(f"  published stores: {', '.join(self.published_stores)}")
        if self.attention:
            lines.append("  files needing attention:")
            lines += [f"    {line}" for line in self.attention]
        if self.quarantined:
            lines.append("  rows quarantined (quarantine.rows has each row, its reason and fix):")
            lines += [f"    {line}" for line in self.quarantined]
        if self.stale:
            lines.append("  stores whose orders stopped (check that their exports still land):")
            lines += [f"    {line}" for line in self.stale]
        if self.store_notes:
            lines.append("  stores (what was used where the usual could not run):")
            lines += [f"    {line}" for line in self.store_notes]
        lines += [f"  {line}" for line in _grouped_failures(self.failures)]
        return "\n".join(lines)


def _grouped_failures(failures: list[str]) -> list[str]:
    """'failure: <step>: <message>' lines, steps that failed with the same message on one
    line (when every asset fails for one reason, the reason is said once)."""
    steps: dict[str, list[str]] = {}
    for failure in failures:
        step, sep, message = failure.partition(": ")
        key = message if sep and not failure.startswith("store ") else failure
        steps.setdefault(key, []).append(step if key == message else "")
    lines = []
    for message, names in steps.items():
        if len(names) > 1 and all(names):
            lines.append(f"failure in {len(names)} steps ({', '.join(names)}): {message}")
        else:
            lines += [f"failure: {name}: {message}" if name else f"failure: {message}"
                      for name in names]  # fmt: skip
    return lines


def run_config(as_of: date | None) -> dict:
    return {
        "resources": {"run_settings": {"config": {"as_of": as_of.isoformat() if as_of else None}}}
    }


def run_job(
    name: str,
    as_of: date | None = None,
    select: list[str] | None = None,
    publish: bool = False,
) -> RunResult:
    """Execute one job in-process, recorded in the Dagster instance under DAGSTER_HOME."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.resources import set_pool_limits

    paths = Paths.from_env().ensure()
    started = time.monotonic()
    started_at = datetime.now(UTC)
    instance = dg.DagsterInstance.get()
    set_pool_limits(instance)
    result = RunResult(success=True, as_of=as_of, paths=paths)

    job = defs.resolve_job_def(name)
    selection = [dg.AssetKey(s.split("/")) for s in select] if select else None
    outcome = _execute(job, instance, as_of, result, asset_selection=selection)
    if not outcome.success:
        result.success = False
        result.failures += _failures(outcome)

    if result.success and publish:
        result.published_stores = _publish_each_store(defs, instance, as_of, result)

    _describe_warehouse(result, started_at)
    _store_outcomes(result)
    result.seconds = time.monotonic() - started
    return result


def _execute(job, instance, as_of: date | None, result: RunResult, **target):
    """Run `job` in-process the way the CLI runs every job (its run config and trigger
    tag, failures returned rather than raised) and record the run id in `result`.
    `target`: asset_selection or partition_key."""
    outcome = job.execute_in_process(
        instance=instance,
        run_config=run_config(as_of),
        raise_on_error=False,
        tags={"storepulse/trigger": "cli"},
        **target,
    )
    result.run_ids.append(outcome.run_id)
    return outcome


def run_nightly(
    as_of: date | None = None, select: list[str] | None = None, publish: bool = True
) -> RunResult:
    """nightly_scoring, then one publish run per store (what `storepulse run` does)."""
    return run_job("nightly_scoring", as_of=as_of, select=select, publish=publish)


def _describe_warehouse(result: RunResult, started_at: datetime) -> None:

    from storepulse.ingest.engine import attention_since, quarantined_since
    from storepulse.quality import stale_stores
    from storepulse.warehouse import Warehouse, query, table_exists

    if not result.paths.warehouse.exists():
        return
    with Warehouse(result.paths.warehouse).reader() as con:
        tables = query(
            con,
            "select schema_name || '.' || table_name as name, estimated_size as rows "
            "from duckdb_tables() where schema_name in ('staging','marts','scores','quarantine','ops')",
        )
        result.tables = dict(zip(tables["name"].to_list(), tables["rows"].to_list(), strict=True))
        if table_exists(con, "ops.ingested_files"):
            result.attention = attention_since(con, started_at)
            if table_exists(con, "quarantine.rows"):
                result.quarantined = quarantined_since(con, started_at)
        result.stale = [
            f"{store}: last order on {last}, {days} days before the newest store's"
            for store, last, days in stale_stores(con).iter_rows()
        ]
        if result.as_of is None:
            result.as_of = _default_as_of(con)


def _store_outcomes(result: RunResult) -> None:
    """Read ops.store_status of the run's as_of: a store that failed outright fails the
    run (its exit code), after every other store got its outputs; fallbacks and skips
    are listed so a person sees them."""
    from storepulse.warehouse import Warehouse, query, table_exists

    if result.as_of is None or not result.paths.warehouse.exists():
        return
    with Warehouse(result.paths.warehouse).reader() as con:
        if not table_exists(con, "ops.store_status"):
            return
        rows = query(
            con,
            "select store_id, step, status, message from ops.store_status"
            " where as_of = ? and status <> 'ok' order by store_id, step",
            [result.as_of],
        )
    for store, step, status, message in rows.iter_rows():
        line = f"{store} {step}: {status}: {message}"
        result.store_notes.append(line)
        if status == "failed":
            result.success = False
            result.failures.append(f"store {line}")


def _failures(outcome) -> list[str]:
    messages = []
    for event in outcome.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            messages.append(
                f"{event.step_key}: {data.error.message.strip() if data.error else 'failed'}"
            )
    return messages or ["run failed (see the Dagster UI for the event log)"]


def _publish_each_store(defs, instance, as_of, result: RunResult) -> list[str]:
    """One publish run per store partition, store after store (DESIGN §7); each store's
    outcome goes to ops.store_status (step publish)."""
    from pipelines.partitions import sync_store_partitions
    from storepulse.lifecycle import StoreOutcome, record_store_status
    from storepulse.publish import store_ids
    from storepulse.warehouse import Warehouse

    with Warehouse(result.paths.warehouse).reader() as con:
        stores = store_ids(con)
        day = result.as_of or _default_as_of(con)
    sync_store_partitions(instance, stores)
    job = defs.resolve_job_def("publish_store")
    published, outcomes = [], []
    for store_id in stores:
        outcome = _execute(job, instance, as_of, result, partition_key=store_id)
        if outcome.success:
            published.append(store_id)
            outcomes.append(StoreOutcome(store_id, "publish", "ok", None,
                                         "export set and report published"))  # fmt: skip
        else:
            reasons = _failures(outcome)
            result.success = False
            result.failures += [f"publish {store_id}: {m}" for m in reasons]
            outcomes.append(StoreOutcome(store_id, "publish", "failed", None, "; ".join(reasons)))
    if day is not None:
        with Warehouse(result.paths.warehouse).writer() as con:
            record_store_status(con, day, "publish", outcomes)
    return published


def _default_as_of(con):
    from datetime import timedelta

    from storepulse.warehouse import scalar, table_exists

    if not table_exists(con, "staging.orders"):
        return None
    latest = scalar(con, "select max(order_date) from staging.orders")
    return latest + timedelta(days=1) if latest else None
