"""How the CLV candidates are judged on a holdout: per-customer errors, the aggregate,
calibration by decile, and the rule the learned model must pass to be champion."""

from __future__ import annotations

import numpy as np

# The learned total of orders over the holdout may be off by AGGREGATE_OK, or by no
# more than AGGREGATE_TOLERANCE beyond BTYD's own error, whichever is larger.
AGGREGATE_OK = 0.05
AGGREGATE_TOLERANCE = 0.02


def value_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict:
    """Per-customer RMSE and MAE, and the aggregate: predicted total vs actual total."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    total, predicted_total = float(actual.sum()), float(predicted.sum())
    return {
        "rmse": round(float(np.sqrt(np.mean((predicted - actual) ** 2))), 4)
        if actual.size
        else None,
        "mae": round(float(np.mean(np.abs(predicted - actual))), 4) if actual.size else None,
        "actual_total": round(total, 2),
        "predicted_total": round(predicted_total, 2),
        "aggregate_error": round((predicted_total - total) / total, 4) if total > 0 else None,
        "n_customers": int(actual.size),
    }


def decile_calibration(actual: np.ndarray, predicted: np.ndarray) -> list[dict]:
    """Customers in ten groups by predicted orders: mean predicted vs mean actual."""
    order = np.argsort(np.asarray(predicted), kind="stable")
    groups = np.array_split(order, 10)
    return [
        {
            "decile": i + 1,
            "customers": int(g.size),
            "predicted": round(float(np.mean(predicted[g])), 4) if g.size else None,
            "actual": round(float(np.mean(actual[g])), 4) if g.size else None,
        }
        for i, g in enumerate(groups)
    ]


def flat_metrics(backtest: dict, method: str, store: str | None = None) -> dict | None:
    """One method's holdout numbers as one flat dict, overall or for one store: per-
    customer RMSE and MAE of orders and the aggregate error of orders on the 90-day
    holdout, per-customer RMSE of revenue on the 365-day holdout when there is one
    (else the 90-day one), and n (customers evaluated). None without a 90-day backtest."""

    def of(horizon: int) -> dict | None:
        part = backtest.get(horizon) or {}
        if store is None:
            return part.get("metrics", {}).get(method)
        return part.get("store_metrics", {}).get(method, {}).get(store)

    short = of(90)
    if not short:
        return None
    long = of(365) or short
    return {
        "rmse_orders": short["orders"]["rmse"],
        "mae_orders": short["orders"]["mae"],
        "aggregate_error": short["orders"]["aggregate_error"],
        "rmse_revenue": long["revenue"]["rmse"],
        "revenue_holdout_days": 365 if of(365) else 90,
        "n": short["orders"]["n_customers"],
    }


def learned_beats(learned: dict, base: dict) -> bool:
    """The learned model wins only when, against BG/NBD + Gamma-Gamma, its per-customer
    RMSE of orders and of revenue are both lower and its aggregate error of orders is
    within AGGREGATE_OK or no worse than BTYD's by more than AGGREGATE_TOLERANCE; a tie
    goes to BTYD (flat_metrics' numbers)."""
    learned_aggregate = abs(learned["aggregate_error"] or 0.0)
    base_aggregate = abs(base["aggregate_error"] or 0.0)
    return (
        learned["rmse_orders"] < base["rmse_orders"]
        and learned["rmse_revenue"] < base["rmse_revenue"]
        and learned_aggregate <= max(base_aggregate + AGGREGATE_TOLERANCE, AGGREGATE_OK)
    )
