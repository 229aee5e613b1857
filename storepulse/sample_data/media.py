"""Paid media: daily spend plans, each channel's true response, and platform-style reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from .calendar import black_friday
from .truth import geometric_adstock, saturation

PAID_CHANNELS = ["meta", "google", "tiktok", "pinterest"]
CHANNEL_ADOPTION = {"meta": 0.95, "google": 0.9, "tiktok": 0.55, "pinterest": 0.3}
# Upper-funnel channels carry over longer.
DECAY_RANGE = {
    "meta": (0.3, 0.6),
    "google": (0.1, 0.35),
    "tiktok": (0.4, 0.7),
    "pinterest": (0.3, 0.65),
}
CPM_USD = {"meta": 9.0, "google": 22.0, "tiktok": 6.0, "pinterest": 5.0}
CTR = {"meta": 0.012, "google": 0.045, "tiktok": 0.009, "pinterest": 0.006}
CAMPAIGNS = {
    "meta": ["Prospecting | Broad", "Prospecting | Lookalike 1%", "Retargeting | 30d"],
    "google": [
        "Search | Brand",
        "Search | Generic",
        "PMax | All products",
        "Shopping | Bestsellers",
    ],
    "tiktok": ["Spark Ads | UGC", "Prospecting | Interest"],
    "pinterest": ["Shopping | Catalog", "Awareness | Pins"],
}
CPC_GROWTH_PER_YEAR = 0.20
# The truth credits a channel with the revenue of the customers it caused on the day of
# acquisition and the 7 days after (first order plus repeat orders in that week, cancelled
# ones excluded; a 7-day click window, as the platforms use): what a daily-revenue response
# model can see. Later repeat orders spread over months and look like baseline; the truth
# reports them separately (`roas_with_30d_repeats`).
ATTRIBUTION_WINDOW_DAYS = 7
LONG_WINDOW_DAYS = 30


@dataclass
class ChannelPlan:
    """One paid channel of one store: its true response and its daily spend (USD)."""

    channel: str
    adstock_decay: float
    saturation_kind: str
    half_saturation_usd: float
    hill_shape: float  # NaN for exponential curves
    max_daily_revenue_usd: float
    platform_over_credit: float
    spend_usd: np.ndarray
    adstocked_usd: np.ndarray = field(repr=False)
    incremental_revenue_usd: np.ndarray = field(repr=False)
    # ROAS counting only the caused customers' first orders (set by calibration).
    first_order_roas: float = float("nan")
    # ROAS counting their orders within LONG_WINDOW_DAYS of acquisition.
    long_window_roas: float = float("nan")

    def params(self) -> dict:
        return {
            "adstock_decay": self.adstock_decay,
            "saturation_kind": self.saturation_kind,
            "half_saturation_usd": self.half_saturation_usd,
            "hill_shape": self.hill_shape,
            "max_daily_revenue_usd": self.max_daily_revenue_usd,
        }

    def calibrate(self, revenue_factor: float, spend_factor: float) -> None:
        """Rescale the response once the caused customers' realised revenue is known.

        Revenue (ceiling and daily series) is multiplied by revenue_factor. Spend, its
        adstock and the half-saturation point are multiplied by spend_factor together,
        so the saturation curve's shape over the days is unchanged (and so is the
        number of customers it brought); only the price paid for them moves.
        """
        self.max_daily_revenue_usd *= revenue_factor
        self.incremental_revenue_usd = self.incremental_revenue_usd * revenue_factor
        self.spend_usd = self.spend_usd * spend_factor
        self.adstocked_usd = self.adstocked_usd * spend_factor
        self.half_saturation_usd *= spend_factor


def black_fridays_in(start: date, n_days: int) -> list[int]:
    """Day indices of every Black Friday inside the window."""
    out = []
    for year in range(start.year, start.year + n_days // 365 + 2):
        index = (black_friday(year) - start).days
        if 0 <= index < n_days:
            out.append(index)
    return out


def spend_pattern(rng: np.random.Generator, start: date, n_days: int) -> np.ndarray:
    """Relative daily spend (mean 1) of one channel, planned the way DTC teams run accounts.

    - Budget re-plans every 2-8 weeks: the new level moves from the old one (log-AR(1)),
      so a channel drifts between clearly lower and higher budgets instead of hovering.
    - Campaign bursts (launches, promotions, creator pushes): 4-14 days at 1.8-3.2x.
    - Pauses (creative refresh, budget freeze, ad-account review, go-dark tests): 5-21 days
      at zero, a few a year.
    - The pre-Black-Friday ramp and the BF/CM push, with their own start and size per
      channel (teams do not scale every channel in lockstep).
    - Daily pacing noise.

    Every channel of a store draws its own plan, so channels are not collinear, and the
    swings are what make each channel's effect identifiable from daily revenue.
    """
    level = np.empty(n_days)
    day = 0
    log_level = rng.normal(0.0, 0.5)
    while day < n_days:
        length = int(rng.integers(14, 57))
        log_level = 0.4 * log_level + rng.normal(0.0, 0.55)
        level[day : day + length] = np.exp(log_level)
        day += length
    for _ in range(max(1, round(n_days / 60 * rng.uniform(0.7, 1.3)))):
        first = int(rng.integers(0, n_days))
        level[first : first + int(rng.integers(4, 15))] *= rng.uniform(1.8, 3.2)
    for _ in range(max(1, round(n_days / 120 * rng.uniform(0.7, 1.3)))):
        first = int(rng.integers(0, n_days))
        level[first : first + int(rng.integers(5, 22))] = 0.0
    for bf in black_fridays_in(start, n_days):
        ramp_start = max(bf - int(rng.integers(20, 41)), 0)
        peak = rng.uniform(1.4, 2.4)
        level[ramp_start:bf] *= np.linspace(1.0, peak, bf - ramp_start + 1)[:-1]
        level[max(bf - 3, 0) : bf + 4] *= rng.uniform(1.6, 2.8)
    level *= rng.lognormal(0.0, 0.15, n_days)
    return level / level.mean()


def plan_channel(
    rng: np.random.Generator,
    channel: str,
    start: date,
    n_days: int,
    total_spend_usd: float,
    total_revenue_usd: float,
) -> ChannelPlan:
    """Draw a channel's true adstock and saturation, scaled so revenue/spend is the true ROAS."""
    spend = spend_pattern(rng, start, n_days) * total_spend_usd / n_days
    decay = float(rng.uniform(*DECAY_RANGE[channel]))
    kind = str(rng.choice(["hill", "exponential"]))
    hill_shape = float(rng.uniform(0.8, 2.5)) if kind == "hill" else float("nan")
    adstocked = geometric_adstock(spend, decay)
    # Typical spend sits around or below the half-saturation point: returns diminish, no wall.
    half = float(rng.uniform(0.8, 2.4) * adstocked[adstocked > 0].mean())
    shape = saturation(adstocked, kind, half, 1.0 if kind == "exponential" else hill_shape)
    max_daily = total_revenue_usd / shape.sum()
    return ChannelPlan(
        channel=channel,
        adstock_decay=decay,
        saturation_kind=kind,
        half_saturation_usd=half,
        hill_shape=hill_shape,
        max_daily_revenue_usd=max_daily,
        platform_over_credit=float(rng.uniform(0.2, 0.7)),
        spend_usd=spend,
        adstocked_usd=adstocked,
        incremental_revenue_usd=max_daily * shape,
    )


def campaign_rows(
    rng: np.random.Generator,
    plan: ChannelPlan,
    start: date,
    caused_orders: np.ndarray,
    mean_order_value_usd: float,
    cpm_factor: float,
) -> dict[str, np.ndarray]:
    """Split a channel's daily spend into campaigns, with impressions, clicks and platform-claimed conversions.

    Platform conversions over-credit the true caused orders (view-through, overlap).
    """
    n_days = plan.spend_usd.size
    names = CAMPAIGNS[plan.channel]
    n_campaigns = len(names)
    base = rng.dirichlet(np.full(n_campaigns, 3.0))
    drift = rng.lognormal(0.0, 0.25, size=(n_days // 14 + 1, n_campaigns)).repeat(14, axis=0)[
        :n_days
    ]
    weights = base * drift
    weights /= weights.sum(axis=1, keepdims=True)
    spend = plan.spend_usd[:, None] * weights
    years = np.arange(n_days) / 365.0
    cpm = CPM_USD[plan.channel] * cpm_factor * (1 + CPC_GROWTH_PER_YEAR) ** years
    impressions = rng.poisson(spend / cpm[:, None] * 1000.0)
    clicks = rng.binomial(impressions, CTR[plan.channel] * rng.uniform(0.8, 1.25))
    # The platform sees the orders it caused plus view-through and overlap claims on top.
    claimed = caused_orders + rng.poisson(caused_orders * plan.platform_over_credit)
    # Platforms book a conversion on the day of the click or view, so orders caused during a pause
    # (adstock carry-over) are reported on the last day the channel was live.
    live = plan.spend_usd > 0
    last_live = np.maximum.accumulate(np.where(live, np.arange(n_days), -1))
    booked_on = np.where(last_live >= 0, last_live, int(np.argmax(live)))
    claimed = np.bincount(booked_on, weights=claimed, minlength=n_days).astype(np.int64)
    conversions = rng.multinomial(claimed, weights)
    value = conversions * mean_order_value_usd * rng.lognormal(0.0, 0.15, conversions.shape)
    day_index = np.repeat(np.arange(n_days), n_campaigns)
    keep = spend.ravel() > 0
    return {
        "day_index": day_index[keep],
        "campaign_index": np.tile(np.arange(n_campaigns), n_days)[keep],
        "spend_usd": spend.ravel()[keep],
        "impressions": impressions.ravel()[keep],
        "clicks": clicks.ravel()[keep],
        "conversions": conversions.ravel()[keep],
        "conversion_value_usd": value.ravel()[keep],
    }
