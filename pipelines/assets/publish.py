"""Publish: per-store merchant export sets and the dated history.

- `store_exports` (group publish, one dynamic partition per store): exports/<store>/<as_of>/
  with segment files for Klaviyo, Mailchimp and Meta, scores, forecast, plans,
  report.html and manifest.json; `latest` moves only after the set is complete.
- `export_history` (group publish): Parquet snapshot of every marts/scores table.
"""

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from pipelines.assets.ad_roi import BUDGET_PLAN, CHANNEL_ROI, LIFT_PLAN, LIFT_TEST_RESULTS
from pipelines.assets.churn import CHURN_SCORES, CLV_SCORES
from pipelines.assets.demand import DEMAND_FORECAST, REORDER_PLAN
from pipelines.assets.experiments import EXPERIMENT_READOUT
from pipelines.assets.marts import KPI_DAILY
from pipelines.assets.order_risk import ORDER_RISK
from pipelines.assets.partners import PARTNER_SCORECARD
from pipelines.assets.segments import CUSTOMER_RFM
from pipelines.assets.staging import PRIVACY_APPLIED
from pipelines.metadata import OWNER, metrics, preview
from pipelines.partitions import STORES
from pipelines.resources import READ_POOL, RunSettings, StorepulseResource
from storepulse.ingest.normalise import safe_store_id

STORE_EXPORTS = dg.AssetKey("store_exports")
EXPORT_HISTORY = dg.AssetKey("export_history")
# Freshness: the nightly publish runs every 24 h; allow two hours of slack.
MAX_EXPORT_AGE = timedelta(hours=26)

# The tables the exports read (DESIGN §4); each is optional for the publish code.
PUBLISH_INPUTS = [
    KPI_DAILY,
    CUSTOMER_RFM,
    CHURN_SCORES,
    CLV_SCORES,  # predicted value in scores.parquet and the Klaviyo properties
    DEMAND_FORECAST,
    REORDER_PLAN,
    CHANNEL_ROI,
    BUDGET_PLAN,
    LIFT_PLAN,
    LIFT_TEST_RESULTS,
    # Growth levers (#17): partners.csv, experiments.csv, orders_to_review.csv.
    PARTNER_SCORECARD,
    EXPERIMENT_READOUT,
    ORDER_RISK,
    PRIVACY_APPLIED,
]


@dg.asset(
    key=STORE_EXPORTS,
    group_name="publish",
    partitions_def=STORES,
    deps=PUBLISH_INPUTS,
    kinds={"duckdb", "polars", "csv", "parquet", "html"},
    owners=[OWNER],
    # Read-only: per-store publish runs proceed side by side (pool limit
    # STOREPULSE_PUBLISH_PARALLELISM, set by `storepulse init-home`).
    pool=READ_POOL,
    check_specs=[dg.AssetCheckSpec("export_set_complete", asset=STORE_EXPORTS, blocking=True)],
    description=(
        "One merchant's export set, exports/<store_id>/<as_of>/: segments/<segment>.klaviyo.csv, "
        ".mailchimp.csv and .meta.csv (consent-filtered; Meta identifiers SHA-256 hashed) for "
        "every RFM segment plus the win-back-high-value and repurchase-due lists, "
        "scores.parquet, forecast.parquet, reorder_plan.csv, budget_plan.csv, a self-contained "
        "report.html and manifest.json (rows and sha256 per file). Written to a temporary "
        "folder and renamed into place; exports/<store_id>/latest (symlink, plus a LATEST "
        "file) moves only after the set is complete."
    ),
)
def store_exports(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    from storepulse.publish import load_store_data, publish_store, verify_set

    store_id = context.partition_key
    paths = storepulse.paths()
    # Hold the read-only connection only while reading: files, plots and the report
    # are written after it is closed, so writers are never kept waiting for them.
    with storepulse.reader() as con:
        as_of = run_settings.as_of_date(con)
        data = load_store_data(con, safe_store_id(store_id), as_of)
    result = publish_store(data, store_id, as_of, paths.exports)
    problems = verify_set(result.path)
    report_copy = _copy_report(result.path / "report.html", paths.reports, store_id)
    import polars as pl

    files = pl.DataFrame(result.files).select("path", "rows", "bytes")
    return dg.MaterializeResult(
        metadata={
            "store_id": store_id,
            "as_of": as_of.isoformat(),
            "path": dg.MetadataValue.path(str(result.path)),
            "report": dg.MetadataValue.path(str(result.path / "report.html")),
            "report_copy": dg.MetadataValue.path(str(report_copy)),
            "latest_pointer": result.latest_pointer,
            "files": preview(files, rows=60),
            "list_sizes": metrics(result.lists),
            "notes": dg.MetadataValue.md(
                "\n".join(f"- {n}" for n in result.notes) or "_(all inputs present)_"
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="export_set_complete",
                passed=not problems,
                metadata={"problems": metrics(problems), "files": len(result.files)},
            )
        ],
    )


@dg.asset(
    key=EXPORT_HISTORY,
    group_name="publish",
    deps=PUBLISH_INPUTS,
    kinds={"duckdb", "parquet"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Dated Parquet snapshot of every marts and scores table, exports/_history/<as_of>/"
        "<schema>.<table>.parquet, so nothing a run replaced is lost."
    ),
)
def export_history(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    from storepulse.publish import publish_history

    paths = storepulse.paths()
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        counts = publish_history(con, as_of, paths.exports)
    import polars as pl

    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "path": dg.MetadataValue.path(str(paths.exports / "_history" / as_of.isoformat())),
            "tables": preview(
                pl.DataFrame({"table": list(counts), "rows": list(counts.values())}), rows=60
            ),
            "dagster/row_count": sum(counts.values()),
        }
    )


def _copy_report(report: Path, reports_dir: Path, store_id: str) -> Path:
    """The newest report also lands in STOREPULSE_REPORT_DIR/<store_id>.html, for whoever
    serves reports from one folder; written beside and renamed, so never half a file."""
    from storepulse.ingest import safe_store_id

    reports_dir.mkdir(parents=True, exist_ok=True)
    target = reports_dir / f"{safe_store_id(store_id)}.html"
    partial = target.with_suffix(".html.tmp")
    shutil.copyfile(report, partial)
    partial.replace(target)
    return target


def _age(generated_at: str, now: datetime) -> timedelta:
    stamp = datetime.fromisoformat(generated_at)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return now - stamp


@dg.asset_check(
    asset=STORE_EXPORTS,
    name="store_exports_fresh",
    description=(
        "Every store partition has a `latest` export set whose manifest was written in the "
        f"last {MAX_EXPORT_AGE.total_seconds() / 3600:.0f} hours, with every listed file "
        "present and unchanged (sha256). Inside a one-store publish run it checks that store; "
        "run on its own it checks them all."
    ),
)
def store_exports_fresh(
    context: dg.AssetCheckExecutionContext, storepulse: StorepulseResource
) -> dg.AssetCheckResult:
    from storepulse.publish import latest_set, store_dir, verify_set

    now = datetime.now(UTC)
    exports = storepulse.paths().exports
    if context.has_partition_key:
        stores = [context.partition_key]
    else:
        stores = context.instance.get_dynamic_partitions(STORES.name)
    problems: dict[str, str] = {}
    ages: dict[str, float] = {}
    for store_id in stores:
        folder = latest_set(store_dir(exports, store_id))
        if folder is None or not folder.exists():
            problems[store_id] = "no latest export set"
            continue
        issues = verify_set(folder)
        if issues:
            problems[store_id] = "; ".join(issues)
            continue
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        age = _age(manifest["generated_at"], now)
        ages[store_id] = round(age.total_seconds() / 3600, 1)
        if age > MAX_EXPORT_AGE:
            problems[store_id] = f"latest set is {ages[store_id]} h old (as_of {manifest['as_of']})"
    return dg.AssetCheckResult(
        passed=bool(stores) and not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stores": len(stores),
            "problems": metrics(problems if stores else {"*": "no store partitions yet"}),
            "age_hours": metrics(ages),
        },
    )


@dg.asset_check(
    asset=EXPORT_HISTORY,
    name="export_history_fresh",
    description=(
        "The newest exports/_history/<as_of>/ snapshot was written in the last "
        f"{MAX_EXPORT_AGE.total_seconds() / 3600:.0f} hours."
    ),
)
def export_history_fresh(storepulse: StorepulseResource) -> dg.AssetCheckResult:
    history = storepulse.paths().exports / "_history"
    manifests = sorted(history.glob("*/manifest.json")) if history.exists() else []
    if not manifests:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"problem": "no history snapshot yet"},
        )
    newest = max(
        (json.loads(m.read_text(encoding="utf-8")) for m in manifests),
        key=lambda m: m["generated_at"],
    )
    age = _age(newest["generated_at"], datetime.now(UTC))
    return dg.AssetCheckResult(
        passed=age <= MAX_EXPORT_AGE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"as_of": newest["as_of"], "age_hours": round(age.total_seconds() / 3600, 1)},
    )
