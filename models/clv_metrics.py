"""How the CLV candidates are judged on a holdout: per-customer errors, the aggregate,
calibration by decile, and the rule the learned model must pass to be champion.

The rule (learned_beats), in words: the learned model replaces BG/NBD + Gamma-Gamma
when it is better per customer (lower RMSE of orders and of revenue, with a total of
orders no more off than AGGREGATE_OK / AGGREGATE_TOLERANCE allow), or when it is not
measurably worse per customer (its squared error, of orders and of revenue, is not
higher by more than NOISE_SE standard errors of the paired difference) and it gets
the total of orders closer. Per-customer errors of counts and of money are dominated
by purchase noise: on a holdout of a few months they often cannot tell two models
apart, and then the one whose totals are right is the one to publish (scores.clv
feeds revenue forecasts as well as lists of customers)."""

from __future__ import annotations

import numpy as np
import polars as pl

# The learned total of orders over the holdout may be off by AGGREGATE_OK, or by no
# more than AGGREGATE_TOLERANCE beyond BTYD's own error, whichever is larger.
AGGREGATE_OK = 0.05
AGGREGATE_TOLERANCE = 0.02
# The learned model counts as not measurably worse per customer while its squared error
# is higher by no more than this many standard errors of the paired difference (the
# two-standard-error rule of the churn prior).
NOISE_SE = 2.0


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


def paired_difference(actual: np.ndarray, predicted: np.ndarray, baseline: np.ndarray) -> dict:
    """Mean per-customer squared error of `predicted` minus that of `baseline` on the
    same customers (negative: `predicted` is better), and its standard error."""
    actual = np.asarray(actual, dtype=float)
    diff = (np.asarray(predicted, dtype=float) - actual) ** 2 - (
        np.asarray(baseline, dtype=float) - actual
    ) ** 2
    if diff.size < 2:
        return {"mse_diff": None, "se": None}
    return {
        "mse_diff": float(np.mean(diff)),
        "se": float(np.std(diff, ddof=1) / np.sqrt(diff.size)),
    }


def paired_differences(scored: pl.DataFrame, base: pl.DataFrame) -> tuple[dict, dict[str, dict]]:
    """(overall, per store) for two scored holdout frames of the same rows (actual_<t>,
    pred_<t>_h): per target (orders, revenue), paired_difference of `scored` against
    `base`."""
    overall = {
        target: paired_difference(
            scored[f"actual_{target}"].to_numpy(),
            scored[f"pred_{target}_h"].to_numpy(),
            base[f"pred_{target}_h"].to_numpy(),
        )
        for target in ("orders", "revenue")
    }
    diffs = scored.select(
        "store_id",
        *[
            (
                (scored[f"pred_{t}_h"] - scored[f"actual_{t}"]) ** 2
                - (base[f"pred_{t}_h"] - scored[f"actual_{t}"]) ** 2
            ).alias(t)
            for t in ("orders", "revenue")
        ],
    )
    per_store = diffs.group_by("store_id", maintain_order=True).agg(
        *[pl.col(t).mean().alias(f"{t}_mean") for t in ("orders", "revenue")],
        *[(pl.col(t).std() / pl.len().sqrt()).alias(f"{t}_se") for t in ("orders", "revenue")],
        n=pl.len(),
    )
    stores = {
        str(row["store_id"]): {
            t: {
                "mse_diff": row[f"{t}_mean"] if row["n"] >= 2 else None,
                "se": row[f"{t}_se"] if row["n"] >= 2 else None,
            }
            for t in ("orders", "revenue")
        }
        for row in per_store.iter_rows(named=True)
    }
    return overall, stores


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
    holdout, per-customer RMSE of revenue on the 365-day holdout when every method of
    the 90-day one was evaluated there too (else the 90-day one: the candidates are
    always compared on the same holdout), the paired differences in squared error
    against BG/NBD + Gamma-Gamma (`*_mse_diff`, `*_mse_diff_se`; learned model only),
    and n (customers evaluated). None without a 90-day backtest."""

    def of(horizon: int, name: str = method) -> dict | None:
        part = backtest.get(horizon) or {}
        if store is None:
            return part.get("metrics", {}).get(name)
        return part.get("store_metrics", {}).get(name, {}).get(store)

    short = of(90)
    if not short:
        return None
    methods = set((backtest.get(90) or {}).get("metrics", {}))
    long_ok = all(of(365, name) for name in methods)
    long = of(365) if long_ok else short
    paired_orders = short.get("paired", {}).get("orders", {})
    paired_revenue = long.get("paired", {}).get("revenue", {})
    return {
        "rmse_orders": short["orders"]["rmse"],
        "mae_orders": short["orders"]["mae"],
        "aggregate_error": short["orders"]["aggregate_error"],
        "rmse_revenue": long["revenue"]["rmse"],
        "revenue_holdout_days": 365 if long_ok else 90,
        "orders_mse_diff": paired_orders.get("mse_diff"),
        "orders_mse_diff_se": paired_orders.get("se"),
        "revenue_mse_diff": paired_revenue.get("mse_diff"),
        "revenue_mse_diff_se": paired_revenue.get("se"),
        "n": short["orders"]["n_customers"],
    }


def _not_worse(learned: dict, target: str) -> bool:
    """The learned model's mean squared error of `target` is not higher than BG/NBD +
    GG's by more than NOISE_SE standard errors of the paired difference (False when
    the difference was not measured)."""
    diff, se = learned.get(f"{target}_mse_diff"), learned.get(f"{target}_mse_diff_se")
    if diff is None or se is None:
        return False
    return diff <= NOISE_SE * se


def no_worse_per_customer(learned: dict) -> bool:
    """Per customer, the learned model is not measurably worse than BG/NBD + GG, on
    orders nor on revenue (tied within noise, or better)."""
    return _not_worse(learned, "orders") and _not_worse(learned, "revenue")


def learned_beats(learned: dict, base: dict) -> bool:
    """The learned model wins (flat_metrics' numbers, against BG/NBD + Gamma-Gamma):
    - better per customer: its RMSE of orders and of revenue are both lower, and its
      aggregate error of orders is within AGGREGATE_OK or no worse than BTYD's by more
      than AGGREGATE_TOLERANCE; or
    - not measurably worse per customer (no_worse_per_customer: its mean squared error
      of orders and of revenue is not higher by more than NOISE_SE standard errors of
      the paired difference) and its total of orders is closer to the actual one.
    Anything else, exact ties included, goes to BTYD."""
    learned_aggregate = abs(learned["aggregate_error"] or 0.0)
    base_aggregate = abs(base["aggregate_error"] or 0.0)
    better = (
        learned["rmse_orders"] < base["rmse_orders"]
        and learned["rmse_revenue"] < base["rmse_revenue"]
        and learned_aggregate <= max(base_aggregate + AGGREGATE_TOLERANCE, AGGREGATE_OK)
    )
    if better:
        return True
    if learned["aggregate_error"] is None or base["aggregate_error"] is None:
        return False
    return no_worse_per_customer(learned) and learned_aggregate < base_aggregate


def explain(learned: dict, base: dict) -> str:
    """The numbers learned_beats decides on, in words (learned vs BG/NBD + GG)."""

    def pct(value) -> str:
        return "n/a" if value is None else f"{value:+.1%}"

    text = (
        f"learned vs BG/NBD + Gamma-Gamma: orders RMSE {learned['rmse_orders']:.4f} vs "
        f"{base['rmse_orders']:.4f}, total of orders {pct(learned['aggregate_error'])} vs "
        f"{pct(base['aggregate_error'])} (90-day holdout); revenue RMSE "
        f"{learned['rmse_revenue']:.2f} vs {base['rmse_revenue']:.2f} "
        f"({learned.get('revenue_holdout_days', 90)}-day holdout)"
    )
    diffs = [
        f"{target} {learned[f'{target}_mse_diff']:+.4g} ± {learned[f'{target}_mse_diff_se']:.2g}"
        for target in ("orders", "revenue")
        if learned.get(f"{target}_mse_diff") is not None
        and learned.get(f"{target}_mse_diff_se") is not None
    ]
    if diffs:
        verdict = "not measurably worse" if no_worse_per_customer(learned) else "worse"
        text += f"; per customer {verdict} (learned minus BTYD squared error: {', '.join(diffs)})"
    return text
