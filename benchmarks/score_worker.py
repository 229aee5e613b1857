"""Score a slice of the stores into a lake, one store at a time (one process).

Used by the `scoring_scaling` bench stage: the code of the per-store `lake/order_risk`
and `lake/customer_rfm` runs (pipelines/assets/lake.py), each store read over a
read-only connection and written to its own Parquet files, timed with 1 and 2
processes side by side.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from benchmarks.publish_worker import slice_arguments
from models import rfm
from models.order_risk import SCORE_SCHEMA, RiskSettings
from pipelines.assets.order_risk import score_store
from storepulse import lake
from storepulse.inputs import order_risk as risk_inputs
from storepulse.inputs import rfm as rfm_inputs
from storepulse.publish import store_ids
from storepulse.warehouse import Warehouse


def main() -> int:
    args = slice_arguments("--lake")
    settings = RiskSettings()
    warehouse = Warehouse(args.warehouse)
    with warehouse.reader() as con:
        stores = store_ids(con)[args.part :: args.parts]
    for store in stores:
        with warehouse.reader() as con:
            orders = risk_inputs.load_orders(con, args.as_of, store)
            customers = risk_inputs.load_customers(con, store)
            countries = risk_inputs.load_store_countries(con, store)
            since = args.as_of - timedelta(days=settings.review_days)
            open_orders = risk_inputs.load_open_orders(con, args.as_of, since, store)
            valid_orders = rfm_inputs.load_orders(con, args.as_of, store)
        segments = rfm.score_rfm(valid_orders, args.as_of, rfm.RfmSettings())
        lake.write_partition(args.lake, "marts.customer_rfm", store, args.as_of, segments)
        outcomes: list = []
        rows = score_store(
            store, orders, customers, countries, open_orders, args.as_of, settings, outcomes
        )
        if outcomes[-1].status == "failed":
            raise SystemExit(f"{store}: {outcomes[-1].message}")
        if rows is None:
            import polars as pl

            rows = pl.DataFrame(schema=SCORE_SCHEMA)
        lake.write_partition(args.lake, "scores.order_risk", store, args.as_of, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
