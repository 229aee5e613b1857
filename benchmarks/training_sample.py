"""Does a bounded training sample keep churn and CLV accuracy? (issue #18)

For each cap on training customers (0 = all), in a fresh process: train churn and
customer value exactly as the pipeline does (models.churn.train / models.clv.fit
with `max_train_customers`), note the process's peak memory after training, then
score the learned models' backtests on the FULL population, so every cap is judged
on the same customers: churn AUC and Brier at the newest fully observed cutoff, CLV
RMSE of orders and revenue over the 90-day holdout.

    python -m benchmarks.training_sample --warehouse /path/warehouse.duckdb \
        [--caps 0,150000,60000] [--json out.json]

The warehouse is any ingested one (e.g. after `storepulse run` on medium).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from datetime import timedelta
from pathlib import Path


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB


def _timed(row: dict, model: str, train):
    """Run `train`, noting its seconds, what it trained on and the peak memory so far."""
    started = time.perf_counter()
    result = train()
    row[f"{model}_train_seconds"] = round(time.perf_counter() - started, 1)
    row[f"{model}_sample"] = result.training_sample
    row[f"{model}_peak_gb"] = round(_peak_gb(), 2)
    return result


def _one_cap(warehouse: str, cap: int, out: mp.Queue) -> None:
    from models import churn, clv
    from storepulse.inputs.churn import load_inputs
    from storepulse.warehouse import Warehouse, scalar

    with Warehouse(Path(warehouse)).reader() as con:
        as_of = scalar(con, "select max(order_date) + 1 from staging.orders")
        inputs = load_inputs(con, as_of)
    orders, customers, sessions = inputs["orders"], inputs["customers"], inputs["sessions"]
    loaded = _peak_gb()
    row = {"cap": cap or "all", "customers": orders.select("store_id", "customer_id").n_unique()}

    settings = churn.ChurnSettings(max_train_customers=cap or None)
    trained = _timed(row, "churn", lambda: churn.train(
        orders, as_of, customers=customers, sessions=sessions, settings=settings, seed=42
    ))  # fmt: skip
    full = churn.FeatureCache(orders, as_of, customers=customers, sessions=sessions,
                              settings=settings)  # fmt: skip
    test_cutoff = churn.backtest_cutoff(as_of, settings)
    judged = churn.evaluate(trained.backtest_model, full, test_cutoff)
    for method in ("lightgbm", "bgnbd"):
        metrics = judged.method_metrics().get(method) or {}
        row[f"churn_{method}_auc"] = metrics.get("auc")
        row[f"churn_{method}_brier"] = metrics.get("brier")
    del trained, full, judged

    clv_settings = clv.ClvSettings(max_train_customers=cap or None)
    _timed(row, "clv", lambda: clv.fit(
        orders, as_of, customers=customers, sessions=sessions, settings=clv_settings, seed=0
    ))  # fmt: skip
    # The backtest booster of that sample, judged on every customer's holdout.
    from models.sampling import sample_customers

    h = timedelta(days=clv_settings.horizon_days)
    kept = sample_customers(orders, clv_settings.max_train_customers, 0).orders
    sample_data = clv._Data(kept, as_of, customers, sessions, clv_settings)
    booster = clv._fit_at(sample_data, as_of - h - h, 0)
    full_data = clv._Data(orders, as_of, customers, sessions, clv_settings)
    holdout = clv.evaluate_holdout(full_data, as_of - h, 90, booster)
    for method in ("lightgbm", "bgnbd_gg"):
        metrics = holdout["metrics"].get(method) or {}
        row[f"clv_{method}_rmse_orders"] = (metrics.get("orders") or {}).get("rmse")
        row[f"clv_{method}_rmse_revenue"] = (metrics.get("revenue") or {}).get("rmse")
        row[f"clv_{method}_aggregate_error"] = (metrics.get("orders") or {}).get("aggregate_error")
    row["inputs_peak_gb"] = round(loaded, 2)
    out.put(row)


def run(warehouse: str, caps: list[int]) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for cap in caps:
        queue = ctx.Queue()
        proc = ctx.Process(target=_one_cap, args=(warehouse, cap, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
        print(json.dumps(rows[-1], default=str), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--caps", default="0,150000,60000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = run(args.warehouse, [int(c) for c in args.caps.split(",")])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
