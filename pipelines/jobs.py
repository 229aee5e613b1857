"""Jobs: ingest (sensor-driven), nightly_scoring (schedule), weekly_training."""

from __future__ import annotations

import dagster as dg

# Trained-model assets live under the "models" key prefix; they are refreshed
# weekly. Nightly scoring trains inline only when no approved version exists.
MODEL_ASSETS = dg.AssetSelection.key_prefixes(["models"])
PUBLISH_ASSETS = dg.AssetSelection.groups("publish")

ingest_job = dg.define_asset_job(
    name="ingest",
    selection=dg.AssetSelection.groups("ingest", "staging"),
    description="Ingest new landing files into raw, staging and quarantine.",
)

nightly_scoring_job = dg.define_asset_job(
    name="nightly_scoring",
    selection=dg.AssetSelection.all() - MODEL_ASSETS - PUBLISH_ASSETS,
    description=(
        "Ingest -> staging -> marts -> score with the latest approved models. "
        "Publishing then fans out one run per store (publish_store)."
    ),
)

weekly_training_job = dg.define_asset_job(
    name="weekly_training",
    selection=MODEL_ASSETS,
    description="Retrain every model, backtest it against its baselines, approve or reject.",
)
