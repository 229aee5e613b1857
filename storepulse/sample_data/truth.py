"""The generator's ground truth: the true media response and a loader for `_truth/`.

`true_incremental_revenue` is the exact function the generator used to decide
how many customers each paid channel brought in on each day, so a test can ask
whether a budget plan's claimed uplift is real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

TRUTH_DIR = "_truth"


def geometric_adstock(daily_spend: np.ndarray, decay: float) -> np.ndarray:
    """carry-over: adstock[t] = spend[t] + decay * adstock[t-1]."""
    spend = np.asarray(daily_spend, dtype=float)
    out = np.empty_like(spend)
    carry = 0.0
    for t, value in enumerate(spend):
        carry = value + decay * carry
        out[t] = carry
    return out


def saturation(
    adstocked: np.ndarray, kind: str, half_saturation: float, hill_shape: float
) -> np.ndarray:
    """Share of the channel's maximum daily response reached at this adstocked spend (0..1)."""
    x = np.maximum(np.asarray(adstocked, dtype=float), 0.0) / half_saturation
    if kind == "hill":
        powered = x**hill_shape
        return powered / (1.0 + powered)
    if kind == "exponential":
        # Scaled so that x = 1 (the half-saturation point) gives exactly 0.5, like the Hill curve.
        return 1.0 - np.exp(-np.log(2.0) * x)
    raise ValueError(f"unknown saturation kind {kind!r}; expected 'hill' or 'exponential'")


def true_incremental_revenue(channel_params: dict, daily_spend_usd: np.ndarray) -> np.ndarray:
    """True incremental revenue (USD) per day caused by a channel's daily spend (USD).

    channel_params is one row of `_truth/channels.csv` as a dict: adstock_decay,
    saturation_kind ('hill' | 'exponential'), half_saturation_usd, hill_shape
    (ignored for exponential) and max_daily_revenue_usd. Spend before the first
    element is taken as zero.
    """
    adstocked = geometric_adstock(daily_spend_usd, float(channel_params["adstock_decay"]))
    hill_shape = channel_params.get("hill_shape")
    share = saturation(
        adstocked,
        str(channel_params["saturation_kind"]),
        float(channel_params["half_saturation_usd"]),
        float(hill_shape) if hill_shape is not None and hill_shape == hill_shape else 1.0,
    )
    return float(channel_params["max_daily_revenue_usd"]) * share


TRUTH_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "customers": {
        "store_id": pl.String, "customer_id": pl.String, "email": pl.String,
        "acquisition_date": pl.Date, "acquisition_channel": pl.String,
        "purchase_rate_per_day": pl.Float64, "dropout_probability": pl.Float64,
        "dropout_date": pl.Date, "is_high_value": pl.Boolean,
    },
    "channels": {
        "store_id": pl.String, "channel": pl.String, "adstock_decay": pl.Float64,
        "saturation_kind": pl.String, "half_saturation_usd": pl.Float64, "hill_shape": pl.Float64,
        "max_daily_revenue_usd": pl.Float64, "platform_over_credit": pl.Float64,
        "total_spend_usd": pl.Float64, "total_incremental_revenue_usd": pl.Float64, "true_roas": pl.Float64,
    },
    "channel_daily": {
        "store_id": pl.String, "date": pl.Date, "channel": pl.String, "spend_usd": pl.Float64,
        "adstocked_spend_usd": pl.Float64, "incremental_revenue_usd": pl.Float64,
    },
    "sku_demand": {
        "store_id": pl.String, "sku": pl.String, "date": pl.Date, "expected_units": pl.Float64,
        "in_stock": pl.Boolean,
    },
    "dirt": {
        "store_id": pl.String, "kind": pl.String, "file": pl.String, "row_number": pl.Int64,
        "description": pl.String,
    },
}  # fmt: skip


def load_truth(out: Path | str) -> dict[str, pl.DataFrame]:
    """Read every `_truth/*.csv` of a generated folder into typed polars frames, keyed by name."""
    truth_dir = Path(out) / TRUTH_DIR
    frames = {}
    for name, schema in TRUTH_SCHEMAS.items():
        path = truth_dir / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; regenerate with storepulse sample-data")
        frames[name] = pl.read_csv(path, schema=schema)
    return frames
