"""The churn model on a real transaction history it was never tuned on (CDNOW).

CDNOW (tests/fixtures/real/README.md) is orders only: one store, no customers,
sessions or lines. The churn recipe runs unchanged (default ChurnSettings) and is
compared with its two baselines on the newest fully observed cutoff, for a few
as-of dates.

    python -m benchmarks.churn_real
"""

from __future__ import annotations

import argparse
import gzip
import json
from datetime import date
from pathlib import Path

import polars as pl

from models import churn

CDNOW = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real" / "CDNOW_master.txt.gz"
# The data runs to 1998-06-30; each as_of leaves one 90-day horizon to observe.
AS_OF_DATES = (date(1998, 4, 1), date(1998, 5, 15), date(1998, 7, 1))


def load_cdnow(path: Path = CDNOW, store_id: str = "cdnow") -> pl.DataFrame:
    """CDNOW as staging-like orders: store_id, order_id, customer_id, order_date, total_usd."""
    # Whitespace-separated with a header; values never contain spaces.
    with gzip.open(path, "rt", encoding="ascii") as handle:
        rows = [line.split() for line in handle.read().splitlines()[1:] if line.strip()]
    fields = pl.DataFrame({"f": rows}, schema={"f": pl.List(pl.String)})
    return fields.select(
        store_id=pl.lit(store_id),
        order_id=pl.int_range(pl.len()).cast(pl.String).str.zfill(6),
        customer_id=pl.col("f").list.get(0),
        order_date=pl.col("f").list.get(1).str.to_date("%Y%m%d"),
        total_usd=pl.col("f").list.get(3).cast(pl.Float64),
    )


def evaluate(orders: pl.DataFrame, as_of: date, seed: int = 0) -> dict:
    result = churn.train(orders, as_of, seed=seed)
    return {
        "as_of": as_of.isoformat(),
        "cutoff": result.backtest.cutoff.isoformat(),
        "model": result.backtest.metrics,
        "baselines": result.backtest.baseline_metrics,
        "approved": result.approved,
        "train_seconds": result.train_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    orders = load_cdnow()
    for as_of in AS_OF_DATES:
        row = evaluate(orders, as_of, args.seed)
        model, base = row["model"], row["baselines"]
        print(
            f"as_of {row['as_of']} cutoff {row['cutoff']}: AUC model {model['auc']:.4f} "
            f"bgnbd {base['bgnbd']['auc']:.4f} recency {base['recency']['auc']:.4f} | Brier "
            f"model {model['brier']:.4f} bgnbd {base['bgnbd']['brier']:.4f} "
            f"recency {base['recency']['brier']:.4f} | approved {row['approved']}"
        )
        print(json.dumps(row, default=str))


if __name__ == "__main__":
    main()
