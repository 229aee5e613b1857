"""simulate_store: one store's full history, step by step (store_steps.py), as
landing frames and truth (store_frames.py)."""

from __future__ import annotations

from datetime import date

import numpy as np

from .store import SimState, StoreData, StoreProfile
from .store_frames import landing_frames
from .store_steps import STEPS


def simulate_store(
    profile: StoreProfile,
    start: date,
    n_days: int,
    fx_usd_per_unit: np.ndarray,
    mismatched_ad_currency: str | None,
) -> StoreData:
    """Simulate one store's full history. fx_usd_per_unit is the store currency's daily rate."""
    state = SimState(profile, start, n_days, fx_usd_per_unit, mismatched_ad_currency)
    for step in STEPS:
        step(state)
    return landing_frames(state)
