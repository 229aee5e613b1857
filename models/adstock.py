"""Carryover (adstock) kernels and saturation curves for media-mix models.

A `Carryover` spreads each day's spend over the following days with weights that
sum to one, so adstocked spend stays in "effective USD per day" and a channel's
total adstocked spend equals its total spend (up to the end of the series).
Two families cover the usual shapes: geometric (the effect is strongest on the
day of spend and fades) and delayed (it peaks a few days later, like video or
upper-funnel channels). Nothing here knows how any particular data set was made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_KERNEL_DAYS = 45


@dataclass(frozen=True)
class Carryover:
    """kind 'geometric': w[l] ∝ decay**l; 'delayed': w[l] ∝ decay**((l - peak_day)**2)."""

    kind: str = "geometric"
    decay: float = 0.0
    peak_day: int = 0

    def weights(self) -> np.ndarray:
        lags = np.arange(MAX_KERNEL_DAYS, dtype=float)
        if self.kind == "geometric":
            raw = np.power(self.decay, lags) if self.decay > 0 else (lags == 0).astype(float)
        elif self.kind == "delayed":
            raw = np.power(self.decay, (lags - self.peak_day) ** 2)
        else:
            raise ValueError(f"unknown carryover kind {self.kind!r}; use 'geometric' or 'delayed'")
        raw[raw < 1e-6 * raw.max()] = 0.0
        return raw / raw.sum()

    def apply(self, daily_spend: np.ndarray) -> np.ndarray:
        """Adstocked spend, same length; spend before the first day is taken as zero."""
        spend = np.asarray(daily_spend, dtype=float)
        return np.convolve(spend, self.weights())[: spend.size]

    @property
    def mean_lag_days(self) -> float:
        w = self.weights()
        return float((w * np.arange(w.size)).sum())

    def label(self) -> str:
        if self.kind == "geometric":
            return f"geometric(decay={self.decay:g})"
        return f"delayed(peak={self.peak_day}d, decay={self.decay:g})"


# Searched per channel. Geometric decays span "same day only" to a ~2-week memory;
# the delayed kernels cover effects that build up over a few days.
DEFAULT_CARRYOVER_GRID: tuple[Carryover, ...] = (
    Carryover("geometric", 0.0),
    Carryover("geometric", 0.2),
    Carryover("geometric", 0.4),
    Carryover("geometric", 0.6),
    Carryover("geometric", 0.75),
    Carryover("geometric", 0.88),
    Carryover("delayed", 0.6, 2),
    Carryover("delayed", 0.8, 3),
    Carryover("delayed", 0.85, 6),
)


def hill(x: np.ndarray, half_saturation: float, shape: float) -> np.ndarray:
    """Hill saturation in [0, 1): x**s / (x**s + k**s)."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    powered = np.power(x / half_saturation, shape)
    return powered / (1.0 + powered)
