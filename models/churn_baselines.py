"""Churn candidates next to the learned model: the recency rule and BG/NBD, their
metrics (overall and per store) and the champion rule.

Candidates, from the most to the least complex (the fallback chain):
- "lightgbm": the learned model (models.churn), when it could be fitted and backtested;
- "bgnbd": P(no order in the horizon) = 1 - P(at least one order) from BG/NBD fitted
  per store at the scoring day; runs for any store with one customer or more
  (models.bgnbd falls back to population defaults below 30 customers);
- "recency": days since the last order, mapped to a probability by an isotonic fit on
  the newest labelled cutoff (per store where the store has labels, else pooled;
  with no labels anywhere, a rule of thumb from the store's own reorder gaps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

METHODS = ("lightgbm", "bgnbd", "recency")  # the fallback chain, most complex first
SIMPLER_FIRST = tuple(reversed(METHODS))
MIN_STORE_LABELS = 30  # a store's own recency map needs this many labelled customers


def classification_metrics(
    y: np.ndarray, score: np.ndarray, probability: np.ndarray | None
) -> dict:
    """AUC, PR-AUC (churn = positive), Brier (None without probabilities), top-decile
    lift, churn rate and the number of customers. AUC, PR-AUC and lift are None when
    every customer has the same outcome."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    both = y.size > 0 and 0 < y.sum() < y.size
    n_top = max(1, int(math.ceil(0.1 * y.size)))
    top = np.argsort(-score, kind="stable")[:n_top]
    base_rate = float(y.mean()) if y.size else float("nan")
    return {
        "auc": round(float(roc_auc_score(y, score)), 4) if both else None,
        "pr_auc": round(float(average_precision_score(y, score)), 4) if both else None,
        "brier": round(float(brier_score_loss(y, probability)), 4)
        if probability is not None and y.size
        else None,
        "lift_top_decile": round(float(y[top].mean() / base_rate), 4)
        if both and base_rate > 0
        else None,
        "churn_rate": round(base_rate, 4) if y.size else None,
        "n_customers": int(y.size),
    }


def store_metrics(
    frame: pl.DataFrame, probability: str, score: str | None = None
) -> dict[str, dict]:
    """classification_metrics per store of a frame with store_id, churned and the
    probability (and ranking score, default the probability) columns."""
    out = {}
    for (store,), part in frame.group_by("store_id", maintain_order=True):
        y = part["churned"].to_numpy()
        p = part[probability].to_numpy()
        out[str(store)] = classification_metrics(y, part[score or probability].to_numpy(), p)
    return dict(sorted(out.items()))


@dataclass
class RecencyScorer:
    """Days since the last order -> P(churn): isotonic maps fitted on a labelled cutoff."""

    horizon_days: int
    overall: IsotonicRegression | None = None
    by_store: dict[str, IsotonicRegression] = field(default_factory=dict)

    @classmethod
    def fit(cls, labelled: pl.DataFrame, horizon_days: int) -> RecencyScorer:
        """`labelled`: features with `churned` at one cutoff (may be empty)."""
        scorer = cls(horizon_days)
        if labelled.is_empty() or labelled["churned"].n_unique() < 2:
            return scorer
        scorer.overall = _isotonic(labelled)
        for (store,), part in labelled.group_by("store_id"):
            if part.height >= MIN_STORE_LABELS and part["churned"].n_unique() == 2:
                scorer.by_store[str(store)] = _isotonic(part)
        return scorer

    def probability(self, features: pl.DataFrame) -> np.ndarray:
        recency = features["recency_days"].to_numpy().astype(float)
        # Rule of thumb when nothing is labelled anywhere: the longer the silence
        # relative to the horizon, the likelier the customer is gone.
        fallback = recency / (recency + float(self.horizon_days))
        out = self.overall.predict(recency) if self.overall is not None else fallback
        stores = features["store_id"].to_numpy()
        for store, model in self.by_store.items():
            mask = stores == store
            if mask.any():
                out[mask] = model.predict(recency[mask])
        return np.clip(out, 0.0, 1.0)


def _isotonic(labelled: pl.DataFrame) -> IsotonicRegression:
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
        labelled["recency_days"].to_numpy(), labelled["churned"].to_numpy()
    )


def pick_champion(metrics: dict[str, dict | None], min_auc_gain: float = 0.0) -> tuple[str, str]:
    """(method, why) from backtest metrics per method (None = not backtested).

    Starting from the simplest backtested method, a more complex one takes over only
    when it is better on both: Brier lower and AUC at least `min_auc_gain` higher
    (a tie goes to the simpler method). Nothing backtested -> BG/NBD, the standard
    model that needs no labels."""
    tested = [m for m in SIMPLER_FIRST if metrics.get(m) and metrics[m].get("brier") is not None]
    if not tested:
        return "bgnbd", "no labelled history to backtest on: BG/NBD, which needs no labels"
    champion = tested[0]
    why = f"{champion}: the simplest method with a backtest"
    for challenger in tested[1:]:
        best, new = metrics[champion], metrics[challenger]
        auc_ok = (
            new.get("auc") is not None
            and best.get("auc") is not None
            and new["auc"] >= best["auc"] + min_auc_gain
            and (new["auc"] > best["auc"] or min_auc_gain > 0 or new["brier"] < best["brier"])
        )
        if auc_ok and new["brier"] < best["brier"]:
            why = (
                f"{challenger} beats {champion}: AUC {new['auc']:.4f} vs {best['auc']:.4f}, "
                f"Brier {new['brier']:.4f} vs {best['brier']:.4f}"
            )
            champion = challenger
    return champion, why


def baseline_reasons(features: pl.DataFrame, method: str, horizon_days: int) -> pl.Series:
    """top_reasons for rows scored by a baseline (no feature contributions to read)."""
    days = pl.col("recency_days").round(0).cast(pl.Int64).cast(pl.String)
    recency = pl.format("No order for {} days", days)
    if method == "bgnbd":
        chance = ((1 - pl.col("bgnbd_p_no_order")) * 100).round(0).cast(pl.Int64).cast(pl.String)
        text = pl.concat_str(
            [
                recency,
                pl.format(
                    "Their buying pattern gives only a {}% chance of ordering in the next {} days",
                    chance,
                    pl.lit(str(horizon_days)),
                ),
            ],
            separator="; ",
        )
    else:
        text = recency
    return features.select(text.alias("top_reasons"))["top_reasons"]
