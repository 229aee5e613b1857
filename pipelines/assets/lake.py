"""Per-store scoring runs (group "lake"): one `stores` partition scores one store and
writes Parquet to the lake; `lake_merge` loads the lake into the warehouse.

The nightly job scores every store in one process (pipelines/assets/order_risk.py).
These assets run the same per-store code as separate Dagster runs, so a store's
scoring, rerun or backfill is its own run, and runs proceed side by side: they read
the warehouse read-only (READ_POOL) and write only their own files
(`<lake>/scores.order_risk/store_id=<id>/as_of=<date>/part.parquet`, storepulse/lake.py).
The merge is the one short step on the writer (docs/scaling.md).
"""

from datetime import timedelta

import dagster as dg
import polars as pl

from models import churn, clv, rfm
from models import order_risk as risk_model
from pipelines.assets.churn import (
    CHURN_MODEL,
    CHURN_SPEC,
    CLV_MODEL,
    CLV_SPEC,
    INPUTS,
    ChurnConfig,
    churn_store_inputs,
    score_churn,
    score_clv,
)
from pipelines.assets.order_risk import STEP as ORDER_RISK_STEP
from pipelines.assets.order_risk import OrderRiskConfig, score_store
from pipelines.assets.segments import RfmConfig
from pipelines.assets.staging import PRIVACY_APPLIED, staging_key
from pipelines.config import validated_settings
from pipelines.metadata import OWNER, metrics, table_metadata
from pipelines.partitions import STORES
from pipelines.resources import READ_POOL, RunSettings, StorepulseResource
from pipelines.store_steps import status_preview
from storepulse import lake
from storepulse.ingest.normalise import safe_store_id
from storepulse.inputs import order_risk as risk_inputs
from storepulse.inputs import rfm as rfm_inputs
from storepulse.lifecycle import (
    STATUS_FAILED,
    CannotScore,
    NoApprovedVersion,
    StaleArtifact,
    approved_release,
    score_stores,
    status_frame,
)

STORE_ORDER_RISK = dg.AssetKey(["lake", "order_risk"])
STORE_RFM = dg.AssetKey(["lake", "customer_rfm"])
STORE_CLV = dg.AssetKey(["lake", "clv"])
STORE_CHURN = dg.AssetKey(["lake", "churn"])
LAKE_MERGE = dg.AssetKey(["lake", "merged"])
# What the lake holds: warehouse table -> the ops.store_status step of its runs (None:
# the nightly step records none).
LAKE_TABLES = {
    "scores.order_risk": ORDER_RISK_STEP,
    "marts.customer_rfm": None,
    "scores.clv": "clv",
    "scores.churn": "churn",
}


@dg.asset(
    key=STORE_ORDER_RISK,
    group_name="lake",
    partitions_def=STORES,
    deps=[*(staging_key(k) for k in ("orders", "customers", "stores")), PRIVACY_APPLIED],
    kinds={"parquet", "polars", "scikitlearn"},
    owners=[OWNER],
    # Read-only: per-store runs proceed side by side (pool limit
    # STOREPULSE_PUBLISH_PARALLELISM, as for publishing).
    pool=READ_POOL,
    description=(
        "One store's orders to review (the nightly scores.order_risk code, for one store) "
        "as Parquet: lake/scores.order_risk/store_id=<id>/as_of=<date>/part.parquet, and its "
        "outcome under lake/ops.store_status.order_risk/. Written under a temporary name and "
        "renamed: a killed run leaves the previous file. A store that fails writes its "
        "failed outcome and no scores; the run fails. lake/merged loads the lake."
    ),
)
def store_order_risk(
    context: dg.AssetExecutionContext,
    config: OrderRiskConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    store = safe_store_id(context.partition_key)
    settings = validated_settings(config, "order risk config")
    with storepulse.reader(for_run=True) as con:
        as_of = run_settings.as_of_date(con)
        orders = risk_inputs.load_orders(con, as_of, store)
        customers = risk_inputs.load_customers(con, store)
        countries = risk_inputs.load_store_countries(con, store)
        open_orders = risk_inputs.load_open_orders(
            con, as_of, as_of - timedelta(days=settings.review_days), store
        )
    outcomes: list = []
    scored = score_store(
        store, orders, customers, countries, open_orders, as_of, settings, outcomes
    )
    return _write_store(storepulse, "scores.order_risk", store, as_of, scored, outcomes,
                        pl.DataFrame(schema=risk_model.SCORE_SCHEMA))  # fmt: skip


def _write_store(
    storepulse: StorepulseResource,
    table: str,
    store: str,
    as_of,
    rows: pl.DataFrame | None,
    outcomes: list,
    empty: pl.DataFrame,
) -> dg.MaterializeResult:
    """A per-store run's end: its rows (`empty` when the store had nothing to score) and
    its outcome into the lake; a failed store writes its outcome only and fails the run."""
    root = storepulse.paths().lake
    outcome = outcomes[-1]
    if outcome.status == STATUS_FAILED:
        lake.write_status(root, as_of, status_frame(outcomes))
        raise dg.Failure(
            description=f"{outcome.step} failed for {store}: {outcome.message}",
            metadata={"store_id": store, "as_of": as_of.isoformat()},
        )
    rows = rows if rows is not None else empty
    path = lake.write_partition(root, table, store, as_of, rows)
    lake.write_status(root, as_of, status_frame(outcomes))
    return dg.MaterializeResult(
        metadata={
            **table_metadata(rows.height, as_of),
            "store_id": store,
            "path": dg.MetadataValue.path(str(path)),
            "store_status": status_preview(outcomes),
        }
    )


def _model_into_lake(
    context: dg.AssetExecutionContext,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
    spec,
    step: str,
    empty: pl.DataFrame,
    load,
    score,
) -> dg.MaterializeResult:
    """One store scored by the newest approved version of `spec` (no training here: the
    weekly or nightly job trains), down the fallback chain, into lake/scores.<step>."""
    store = safe_store_id(context.partition_key)
    paths = storepulse.paths()
    with storepulse.reader(for_run=True) as con:
        as_of = run_settings.as_of_date(con)
        try:
            release = approved_release(con, spec, as_of, paths.model_store)
        except (NoApprovedVersion, FileNotFoundError, StaleArtifact) as exc:
            raise dg.Failure(description=f"{step} for {store}: {exc}") from exc
        inputs = load(con, as_of, store)

    def score_one(_store: str, method: str) -> pl.DataFrame:
        if inputs["orders"].is_empty():
            raise CannotScore(f"no orders before {as_of}")
        return score(release, inputs, as_of, store, method)

    results, outcomes = score_stores(release, [store], score_one, step)
    return _write_store(
        storepulse, f"scores.{step}", store, as_of, results.get(store), outcomes, empty
    )


@dg.asset(
    key=STORE_CLV,
    group_name="lake",
    partitions_def=STORES,
    deps=[CLV_MODEL, *INPUTS],
    kinds={"parquet", "lightgbm"},
    owners=[OWNER],
    pool=READ_POOL,
    description=(
        "One store's customer value (the nightly scores.clv code, the newest approved "
        "version, the store's champion and fallbacks) as lake/scores.clv/store_id=<id>/"
        "as_of=<date>/part.parquet. Never trains: without an approved version the run fails "
        "and says to run weekly_training."
    ),
)
def store_clv(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    return _model_into_lake(
        context, storepulse, run_settings, CLV_SPEC, "clv", clv.empty_clv(),
        CLV_SPEC.load_store, score_clv,
    )  # fmt: skip


@dg.asset(
    key=STORE_CHURN,
    group_name="lake",
    partitions_def=STORES,
    deps=[CHURN_MODEL, STORE_CLV, *INPUTS],
    kinds={"parquet", "lightgbm"},
    owners=[OWNER],
    pool=READ_POOL,
    description=(
        "One store's churn scores (the nightly scores.churn code) as lake/scores.churn/"
        "store_id=<id>/as_of=<date>/part.parquet; value at risk from the store's fresh "
        "lake/clv file of the same as_of when there is one, else scores.clv."
    ),
)
def store_churn(
    context: dg.AssetExecutionContext,
    config: ChurnConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    root = storepulse.paths().lake

    def load(con, as_of, store):
        fresh = None
        if lake.has_partition(root, "scores.clv", store, as_of):
            fresh = lake.read_table(root, "scores.clv", as_of, [store]).select(
                "store_id", "customer_id", "predicted_revenue_365d_usd"
            )
        return churn_store_inputs(con, as_of, store, fresh)

    def score(release, mine, as_of, store, method):
        return score_churn(release, mine, as_of, store, method, config.explain_top_reasons)

    return _model_into_lake(
        context, storepulse, run_settings, CHURN_SPEC, "churn", churn.empty_scores(), load, score
    )


@dg.asset(
    key=STORE_RFM,
    group_name="lake",
    partitions_def=STORES,
    deps=[staging_key("orders"), PRIVACY_APPLIED],
    kinds={"parquet", "polars"},
    owners=[OWNER],
    pool=READ_POOL,
    description=(
        "One store's RFM segments (the nightly marts.customer_rfm code on the store's "
        "orders; quintiles are per store either way) as Parquet: "
        "lake/marts.customer_rfm/store_id=<id>/as_of=<date>/part.parquet."
    ),
)
def store_customer_rfm(
    context: dg.AssetExecutionContext,
    config: RfmConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    store = safe_store_id(context.partition_key)
    settings = validated_settings(config, "RFM config")
    with storepulse.reader(for_run=True) as con:
        as_of = run_settings.as_of_date(con)
        orders = rfm_inputs.load_orders(con, as_of, store)
    scored = rfm.score_rfm(orders, as_of, settings)
    path = lake.write_partition(storepulse.paths().lake, "marts.customer_rfm", store, as_of, scored)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(scored.height, as_of),
            "store_id": store,
            "path": dg.MetadataValue.path(str(path)),
            "segments": metrics(dict(scored.group_by("segment").len().sort("segment").iter_rows())),
        }
    )


@dg.asset(
    key=LAKE_MERGE,
    group_name="lake",
    deps=[STORE_ORDER_RISK, STORE_RFM, STORE_CLV, STORE_CHURN],
    kinds={"duckdb", "parquet"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Loads the lake's files of the run's as_of into the warehouse (scores.order_risk, "
        "marts.customer_rfm, scores.clv, scores.churn) "
        "and ops.store_status, in one transaction per table: each store found replaces its "
        "own rows; stores without a file (not run yet, or failed) keep theirs. Every "
        "lake table is also a view over all its files (lake.scores_order_risk, ...)."
    ),
)
def lake_merge(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    root = storepulse.paths().lake
    merged, statuses = {}, {}
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        for table, step in LAKE_TABLES.items():
            merged[table] = lake.merge(con, root, table, as_of)
            if step is not None:
                statuses[step] = lake.merge_status(con, root, step, as_of)
        views = lake.expose_views(con, root)
    for table, result in merged.items():
        context.log.info(f"{table}: {len(result['stores'])} stores, {result['rows']} rows")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "rows": metrics({t: r["rows"] for t, r in merged.items()}),
            "stores": metrics({t: len(r["stores"]) for t, r in merged.items()}),
            "status_rows": metrics({s: len(v) for s, v in statuses.items()}),
            "views": ", ".join(views),
        }
    )
