"""The churn model's prior: a covariate MBG/NBD (models.bgnbd.fit_covariates) fitted per
store and cutoff on how each customer's first order and profile went.

Its P(no order) is where the trees start (init_score), its expected purchase days
are the learned CLV model's base, and its covariate shifts feed top_reasons. Pure
numpy/polars; called by models.churn_features.build_feature_sets(with_prior=True).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models import bgnbd

# A binary covariate needs this many customers on each side within a store; one-hot
# channels and markets likewise (rarer values stay in the reference group).
MIN_COVARIATE_CUSTOMERS = 30


# The reason (models.churn_reasons) each covariate of the prior speaks for.
PRIOR_REASONS = ("discount", "cod", "refunds", "consent", "value", "channel", "market")
PRIOR_SHIFT_COLUMNS = tuple(f"prior_shift_{reason}" for reason in PRIOR_REASONS)
# Expected purchase days under the prior over these horizons (the CLV model's base).
PRIOR_EXPECTATION_DAYS = (90, 365)
PRIOR_EXPECTATION_COLUMNS = tuple(f"prior_expected_orders_{h}" for h in PRIOR_EXPECTATION_DAYS)


def prior_covariates(features: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Covariates of one store's customers for the covariate MBG/NBD, and the reason
    each speaks for: what the first order and the profile show (welcome discount
    used, cash on delivery, refunded, no e-mail consent, first-order value relative
    to the store's median, first channel, market). Columns that barely vary within
    the store are dropped."""
    value = pl.col("first_order_usd").fill_null(0.0).clip(1.0).log()
    candidates = [
        ("discount", (pl.col("first_order_discount_share").fill_null(0.0) > 0.05)),
        ("cod", (pl.col("first_order_cod").fill_null(0.0) > 0)),
        ("refunds", (pl.col("first_order_refund_share").fill_null(0.0) > 0)),
        ("consent", (pl.col("accepts_email_marketing") == 0).fill_null(False)),
    ]
    for name, reason in (("first_channel", "channel"), ("market", "market")):
        counts = features[name].drop_nulls().value_counts(sort=True)
        common = counts.filter(pl.col("count") >= MIN_COVARIATE_CUSTOMERS)[name].to_list()
        candidates += [(reason, (pl.col(name) == v).fill_null(False)) for v in common[1:]]
    columns = features.select(
        [e.cast(pl.Float64).alias(f"z{i}") for i, (_, e) in enumerate(candidates)]
        + [(value - value.median()).alias("value")]
    )
    reasons = [reason for reason, _ in candidates] + ["value"]
    kept, kept_reasons = [], []
    for column, reason in zip(columns.iter_columns(), reasons, strict=True):
        values = column.to_numpy()
        if column.name == "value":
            if np.nanstd(values) > 0.05:
                kept.append(np.nan_to_num(values))
                kept_reasons.append(reason)
        elif min(values.sum(), values.size - values.sum()) >= MIN_COVARIATE_CUSTOMERS:
            kept.append(values)
            kept_reasons.append(reason)
    matrix = np.column_stack(kept) if kept else np.zeros((features.height, 0))
    return matrix, kept_reasons


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def prior_columns(
    features: pl.DataFrame,
    horizon_days: int,
    segments: np.ndarray,
    mbg_fits: list[bgnbd.BgNbdParams] | None = None,
) -> pl.DataFrame:
    """prior_p_alive / prior_p_no_order: the covariate MBG/NBD fitted per cutoff and
    store (`segments`: the first row of each cutoff x store, rows contiguous), and its expected purchase days over 90 and 365
    days (prior_expected_orders_<h>); prior_shift_<reason>: how much each reason's
    covariates move the prior's log-odds of no order (the prior minus the prior with
    those covariates at the store's reference level), for top_reasons. `mbg_fits`: the
    plain MBG/NBD of each segment, already fitted on the same (x, t_x, T) at the
    default resolution (models.churn_features._with_bgnbd), where the fits start."""
    horizon_weeks = horizon_days / bgnbd.DAYS_PER_WEEK
    T = features["tenure_days"].to_numpy().astype(float) / bgnbd.DAYS_PER_WEEK
    t_x = T - features["recency_days"].to_numpy().astype(float) / bgnbd.DAYS_PER_WEEK
    x = features["order_days"].to_numpy().astype(float) - 1.0
    bounds = [*segments.tolist(), features.height]
    alive, quiet = np.empty(features.height), np.empty(features.height)
    shifts = {reason: np.zeros(features.height) for reason in PRIOR_REASONS}
    expected = {h: np.empty(features.height) for h in PRIOR_EXPECTATION_DAYS}
    for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        z, reasons = prior_covariates(features.slice(start, end - start))
        part = slice(start, end)
        base = mbg_fits[i] if mbg_fits is not None else None
        params = bgnbd.fit_covariates(x[part], t_x[part], T[part], z, base=base)
        alive[part], quiet[part] = bgnbd.covariate_probabilities(
            params, x[part], t_x[part], T[part], z, horizon_weeks
        )
        for h in PRIOR_EXPECTATION_DAYS:
            expected[h][part] = bgnbd.covariate_expected_purchases(
                params, x[part], t_x[part], T[part], z, h / bgnbd.DAYS_PER_WEEK
            )
        for reason in set(reasons):
            columns = [j for j, r in enumerate(reasons) if r == reason]
            reference = z.copy()
            reference[:, columns] = 0.0
            _, without = bgnbd.covariate_probabilities(
                params, x[part], t_x[part], T[part], reference, horizon_weeks
            )
            shifts[reason][part] = _logit(quiet[part]) - _logit(without)
    return features.with_columns(
        prior_p_alive=alive,
        prior_p_no_order=quiet,
        **{f"prior_shift_{reason}": values for reason, values in shifts.items()},
        **{f"prior_expected_orders_{h}": values for h, values in expected.items()},
    )
