"""Carryover (adstock) kernels and saturation curves for media-mix models.

A `Carryover` spreads each day's spend over the following days with weights that
sum to one, so adstocked spend stays in "effective USD per day" and a channel's
total adstocked spend equals its total spend (up to the end of the series).
Three families cover the usual shapes: geometric (the effect is strongest on the
day of spend and fades), delayed (a symmetric bump a few days later) and Weibull
(a skewed delayed peak with a long tail, Robyn's "weibull_pdf"), like video or
upper-funnel channels. `Saturation` turns adstocked spend into a diminishing
response: none (linear), Hill or exponential. Nothing here knows how any particular
data set was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAX_KERNEL_DAYS = 45


@dataclass(frozen=True)
class Carryover:
    """kind 'geometric': w[l] ∝ decay**l; 'delayed': w[l] ∝ decay**((l - peak_day)**2);
    'weibull': w[l] ∝ the Weibull density at l + 1 with shape `decay` and scale `scale`."""

    kind: str = "geometric"
    decay: float = 0.0
    peak_day: int = 0
    scale: float = 0.0

    def weights(self) -> np.ndarray:
        return _kernel_weights(self.kind, self.decay, self.peak_day, self.scale)

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
        if self.kind == "weibull":
            return f"weibull(shape={self.decay:g}, scale={self.scale:g}d)"
        return f"delayed(peak={self.peak_day}d, decay={self.decay:g})"


@lru_cache(maxsize=256)
def _kernel_weights(kind: str, decay: float, peak_day: int, scale: float) -> np.ndarray:
    lags = np.arange(MAX_KERNEL_DAYS, dtype=float)
    if kind == "geometric":
        raw = np.power(decay, lags) if decay > 0 else (lags == 0).astype(float)
    elif kind == "delayed":
        raw = np.power(decay, (lags - peak_day) ** 2)
    elif kind == "weibull":
        if decay <= 0 or scale <= 0:
            raise ValueError("a weibull carryover needs shape (decay) > 0 and scale > 0")
        x = (lags + 1.0) / scale
        raw = np.power(x, decay - 1.0) * np.exp(-np.power(x, decay))
    else:
        raise ValueError(
            f"unknown carryover kind {kind!r}; use 'geometric', 'delayed' or 'weibull'"
        )
    raw[raw < 1e-6 * raw.max()] = 0.0
    weights = raw / raw.sum()
    weights.setflags(write=False)
    return weights


@dataclass(frozen=True)
class Saturation:
    """Diminishing returns on adstocked spend, as a share of the channel's ceiling.

    kind 'linear': no saturation; 'hill': x**shape / (x**shape + k**shape);
    'exponential': 1 - 2**(-x / k) (half the ceiling at k too). `half` is k as a
    multiple of the channel's typical adstocked spend, fixed in USD when a model is
    fitted (`half_usd`), so the curve does not move when spend is changed later."""

    kind: str = "linear"
    half: float = 1.0
    shape: float = 1.0

    def apply(self, adstocked: np.ndarray, half_usd: float) -> np.ndarray:
        x = np.maximum(np.asarray(adstocked, dtype=float), 0.0)
        if self.kind == "linear":
            return x
        if self.kind == "hill":
            return hill(x, half_usd, self.shape)
        if self.kind == "exponential":
            return -np.expm1(-np.log(2.0) * x / half_usd)
        raise ValueError(f"unknown saturation {self.kind!r}; use 'linear', 'hill' or 'exponential'")

    def label(self) -> str:
        if self.kind == "linear":
            return "linear"
        if self.kind == "hill":
            return f"hill(half={self.half:g}x, shape={self.shape:g})"
        return f"exponential(half={self.half:g}x)"


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

# The regression's grid: a same-day effect, geometric memories from a day to about two
# weeks, and Weibull kernels (shape 1: fading; 2 and 3: a delayed peak) whose scale
# puts the peak or the bulk of the effect between one day and about ten.
REGRESSION_CARRYOVER_GRID: tuple[Carryover, ...] = tuple(
    [Carryover("geometric", d) for d in (0.0, 0.3, 0.55, 0.75, 0.88, 0.94)]
    + [
        Carryover("weibull", shape, scale=scale)
        for shape in (1.0, 2.0, 3.0)
        for scale in (2.0, 3.5, 5.0, 7.0, 10.0)
    ]
)
# The regression's saturation grid: none, and curves whose half point is 0.5x to 3x
# the channel's typical adstocked spend. The 3x curves are for channels that bend
# gently over the spend they saw: without them such a channel had to pick a straight
# line or a curve bending at 2x (benchmarks/ad_roi_worlds.py, docs/ad_roi.md).
SATURATION_GRID: tuple[Saturation, ...] = (
    Saturation("linear"),
    Saturation("hill", 0.5, 1.0),
    Saturation("hill", 1.0, 1.0),
    Saturation("hill", 2.0, 1.0),
    Saturation("hill", 1.0, 2.0),
    Saturation("hill", 2.0, 2.0),
    Saturation("hill", 3.0, 2.0),
    Saturation("exponential", 0.5),
    Saturation("exponential", 1.0),
    Saturation("exponential", 2.0),
    Saturation("exponential", 3.0),
)


def hill(x: np.ndarray, half_saturation: float, shape: float) -> np.ndarray:
    """Hill saturation in [0, 1): x**s / (x**s + k**s)."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    powered = np.power(x / half_saturation, shape)
    return powered / (1.0 + powered)
