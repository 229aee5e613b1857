"""Jobs: ingest (sensor-driven), nightly_scoring (schedule), weekly_training."""

from __future__ import annotations

import dagster as dg

from pipelines.partitions import STORES
from storepulse.memory import release_free_memory


@dg.success_hook(name="release_free_memory")
def release_memory(_context: dg.HookContext) -> None:
    """After every step: what the step freed goes back to the system before the next one
    starts (issue #18: a run's peak is one step's, not one step's on another's leftovers)."""
    release_free_memory()


@dg.failure_hook(name="release_free_memory_after_failure")
def release_memory_after_failure(_context: dg.HookContext) -> None:
    release_free_memory()


HOOKS = {release_memory, release_memory_after_failure}

# Trained-model assets live under the "models" key prefix; they are refreshed
# weekly. Nightly scoring trains inline only when no approved version exists.
MODEL_ASSETS = dg.AssetSelection.key_prefixes(["models"])
# Per-store exports are partitioned: they run as one publish_store run per store.
STORE_EXPORTS = dg.AssetSelection.assets(dg.AssetKey("store_exports"))
# Per-store scoring into the lake (partitioned) and its merge: their own jobs.
LAKE = dg.AssetSelection.groups("lake")

ingest_job = dg.define_asset_job(
    name="ingest",
    selection=dg.AssetSelection.groups("ingest", "staging"),
    hooks=HOOKS,
    description="Ingest new landing files into raw, staging and quarantine.",
)

nightly_scoring_job = dg.define_asset_job(
    name="nightly_scoring",
    selection=dg.AssetSelection.all() - MODEL_ASSETS - STORE_EXPORTS - LAKE,
    hooks=HOOKS,
    description=(
        "Ingest -> staging -> marts -> score with the latest approved models. "
        "Publishing then fans out one run per store (publish_store)."
    ),
)

publish_store_job = dg.define_asset_job(
    name="publish_store",
    selection=STORE_EXPORTS,
    partitions_def=STORES,
    description=(
        "Publish one merchant's export set (segment files, scores, plans, report.html). "
        "One run per store partition: the unit that runs in parallel."
    ),
)

score_store_job = dg.define_asset_job(
    name="score_store",
    selection=dg.AssetSelection.groups("lake")
    - dg.AssetSelection.assets(dg.AssetKey(["lake", "merged"])),
    partitions_def=STORES,
    description=(
        "Score one store into the lake (Parquet, read-only on the warehouse): one run per "
        "store partition, side by side; then run merge_lake."
    ),
)

merge_lake_job = dg.define_asset_job(
    name="merge_lake",
    selection=dg.AssetSelection.assets(dg.AssetKey(["lake", "merged"])),
    description="Load the lake's per-store files of the as_of into the warehouse tables.",
)

weekly_training_job = dg.define_asset_job(
    name="weekly_training",
    selection=MODEL_ASSETS,
    hooks=HOOKS,
    description="Retrain every model, backtest it against its baselines, approve or reject.",
)
