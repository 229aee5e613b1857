"""Score a slice of the stores into the lake, one Dagster run per store (one process).

Used by the `scoring_scaling` bench stage: the per-store runs of the `score_store` job
(pipelines/assets/lake.py: order risk, RFM segments, customer value and churn from the
approved versions the nightly stage trained), each store read over a read-only
connection and written to its own Parquet files, timed with 1 and 2 processes side by
side. The home is the warehouse's folder; --lake must be its lake folder.
"""

from __future__ import annotations

import os
import sys

from benchmarks.publish_worker import (
    claimed_stores,
    slice_arguments,
    stores_largest_first,
    wait_at_start_line,
)


def main() -> int:
    args = slice_arguments("--lake")
    os.environ["STOREPULSE_HOME"] = str(args.warehouse.parent)
    os.environ["STOREPULSE_AS_OF"] = args.as_of.isoformat()
    import dagster as dg

    from pipelines.assets import lake as lake_assets
    from pipelines.resources import RunSettings, StorepulseResource
    from storepulse.settings import Paths
    from storepulse.warehouse import Warehouse

    if Paths.from_env().lake != args.lake.resolve():
        raise SystemExit(f"--lake must be {Paths.from_env().lake}")
    with Warehouse(args.warehouse).reader() as con:
        stores = stores_largest_first(con)
    assets = [lake_assets.store_order_risk, lake_assets.store_customer_rfm,
              lake_assets.store_clv, lake_assets.store_churn]  # fmt: skip
    resources = {"storepulse": StorepulseResource(), "run_settings": RunSettings()}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("stores", stores)
        wait_at_start_line(args.start_line)
        for store in claimed_stores(stores, args.claims):
            result = dg.materialize(
                assets, partition_key=store, instance=instance, resources=resources,
                raise_on_error=False,
            )  # fmt: skip
            if not result.success:
                raise SystemExit(f"{store}: the per-store run failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
