"""Publish: per-store merchant exports, the HTML report and the dated history.

Pure functions over a DuckDB connection and an export folder (no Dagster):
`publish_store`, `publish_history`, `store_ids`, `verify_set`.
"""

from storepulse.publish.data import load_store_data, store_ids
from storepulse.publish.exports import (
    PublishResult,
    latest_set,
    publish_history,
    publish_store,
    store_dir,
    verify_set,
)

__all__ = [
    "PublishResult",
    "latest_set",
    "load_store_data",
    "publish_history",
    "publish_store",
    "store_dir",
    "store_ids",
    "verify_set",
]
