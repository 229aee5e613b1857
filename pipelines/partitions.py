"""The `stores` dynamic partitions: one per merchant (DESIGN §7), declared once."""

from __future__ import annotations

import dagster as dg

from storepulse.ingest.normalise import safe_store_id

STORES = dg.DynamicPartitionsDefinition(name="stores")


def sync_store_partitions(instance: dg.DagsterInstance, store_ids) -> list[str]:
    """Add a `stores` partition for every new valid store id; returns the ids added.

    Ids that are not slugs (letters, digits, '-', '_') are refused by the exports anyway,
    so they never become partitions.
    """
    valid = set()
    for store_id in store_ids:
        try:
            valid.add(safe_store_id(store_id))
        except ValueError:
            continue
    existing = set(instance.get_dynamic_partitions(STORES.name))
    new = sorted(valid - existing)
    if new:
        instance.add_dynamic_partitions(STORES.name, new)
    return new
