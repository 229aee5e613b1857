"""Independent marketing-mix worlds for the ad-ROI model (issue 14).

    .venv/bin/python -m benchmarks.ad_roi_worlds                      # quick: 2 seeds a family
    .venv/bin/python -m benchmarks.ad_roi_worlds --seeds 6 --jobs 2 --json out.json  # full
    .venv/bin/python -m benchmarks.ad_roi_worlds --families correlated_pair --seeds 3
    .venv/bin/python -m benchmarks.ad_roi_worlds --seeds 20 --methods ridge --test-noise 0  # exact tests
    .venv/bin/python -m benchmarks.ad_roi_worlds --seeds 6 --jobs 2 --tests planned  # the lift plan's tests

Runtime on 2 shared cores: quick (14 worlds, both media models) about 70 s; full
(6 seeds, 42 worlds, --jobs 2) about 2.5 minutes; --methods ridge alone well under
a minute.

Every world is written here from scratch with numpy, with none of the sample-data
generator's code or shapes: carryover kernels (geometric, gamma-shaped delayed peak,
Weibull), Hill and exponential saturation, Q4 spend ramps on top of organic peaks,
pairs of channels whose spend moves together (rho 0.8-0.9), channels that return
almost nothing, multiplicative AR(1) day noise of 5-25 %, trends with slow drift,
1 to 3 years of days. Each world hands the model what the pipeline would
(daily_revenue, daily_spend, the market's event days), knows every channel's true
ROAS and the media share of revenue, and can draw lift tests (a holdout study's
measured lift = the true lift over its window + sampling noise of the test's size).

Scored per family (averaged over seeds):
- ROAS MAPE of the published method (channels with true ROAS >= 0.5; the others'
  absolute error is shown apart), and the same with 2-3 lift tests per world;
- the noise floor: the ROAS an OLS finds when handed every channel's TRUE daily
  response series next to a generic baseline (trend with knots, weekly and yearly
  terms, Black Friday and Christmas windows) that is written here, not taken from
  the model; its error is what the data allow;
- ranking: over channel pairs whose true ROAS differ (relatively) by more than the
  family's noise floor, the share the model orders right;
- coverage: the share of channels whose true ROAS lies inside the p10-p90 interval;
- beats no-media: the share of worlds with media >= 20 % of revenue where the
  method's out-of-time backtest error is below the no-media baseline's;
- unidentified: the share of channels flagged as not separable, and for the
  correlated pair, whether it was flagged without tests and split right with them.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from models.events import black_friday

WORLD_END = date(2026, 6, 30)
STORE = "world"
MAPE_MIN_ROAS = 0.5  # below this a relative error says little; shown as absolute error

# --------------------------------------------------------------------------- shapes


def geometric_kernel(decay: float, days: int = 60) -> np.ndarray:
    w = decay ** np.arange(days, dtype=float) if decay > 0 else (np.arange(days) == 0) * 1.0
    return w / w.sum()


def gamma_kernel(shape: float, scale: float, days: int = 60) -> np.ndarray:
    """Delayed peak: gamma density over lags 0.. (peak at (shape - 1) * scale days)."""
    lags = np.arange(days, dtype=float) + 0.5
    w = lags ** (shape - 1.0) * np.exp(-lags / scale)
    return w / w.sum()


def weibull_kernel(shape: float, scale: float, days: int = 60) -> np.ndarray:
    lags = np.arange(days, dtype=float) + 1.0
    w = (shape / scale) * (lags / scale) ** (shape - 1) * np.exp(-((lags / scale) ** shape))
    return w / w.sum()


@dataclass
class TrueChannel:
    """A channel's true response: carryover kernel, then saturation, times a ceiling."""

    name: str
    kernel: np.ndarray
    kernel_label: str
    saturation: str  # "hill" | "exponential"
    half_usd: float  # adstocked USD per day that reach half the ceiling
    hill_shape: float
    ceiling_usd: float = 1.0  # revenue per day at full saturation

    def response(self, spend: np.ndarray) -> np.ndarray:
        adstocked = np.convolve(spend, self.kernel)[: spend.size]
        x = np.maximum(adstocked, 0.0) / self.half_usd
        if self.saturation == "hill":
            share = x**self.hill_shape / (1.0 + x**self.hill_shape)
        else:  # scaled so that half_usd gives half the ceiling, like Hill
            share = 1.0 - np.exp(-np.log(2.0) * x)
        return self.ceiling_usd * share


# --------------------------------------------------------------------------- spend plans


def _unit_mean(x: np.ndarray) -> np.ndarray:
    return x / max(x.mean(), 1e-12)


def spend_plan(rng: np.random.Generator, n: int, style: str) -> np.ndarray:
    """Relative daily spend (mean 1) in one of four ways media buyers run accounts."""
    t = 0
    level = np.empty(n)
    if style == "flighting":  # on for a few weeks, dark for a few
        on = bool(rng.random() < 0.7)
        while t < n:
            length = int(rng.integers(14, 43) if on else rng.integers(7, 29))
            level[t : t + length] = rng.lognormal(0.0, 0.3) if on else rng.uniform(0.0, 0.15)
            on, t = not on, t + length
    elif style == "weekly_drift":  # budgets re-set every week, slowly wandering
        weeks = n // 7 + 1
        log_level = np.zeros(weeks)
        for w in range(1, weeks):
            log_level[w] = 0.85 * log_level[w - 1] + rng.normal(0.0, 0.3)
        level = np.exp(np.repeat(log_level, 7)[:n])
    elif style == "steps":  # budget changes every 3-10 weeks
        while t < n:
            length = int(rng.integers(21, 71))
            level[t : t + length] = rng.lognormal(0.0, 0.6)
            t += length
    elif style == "always_on":  # steady, with a few short promotions
        level[:] = 1.0
        for _ in range(max(1, n // 90)):
            first = int(rng.integers(0, n))
            level[first : first + int(rng.integers(3, 8))] *= rng.uniform(1.5, 2.5)
    else:
        raise ValueError(f"unknown spend style {style!r}")
    if style != "always_on":  # launches and promotions: a few bursts a year
        for _ in range(max(1, n // 120)):
            first = int(rng.integers(0, n))
            level[first : first + int(rng.integers(4, 11))] *= rng.uniform(1.8, 3.0)
    level = level * rng.lognormal(0.0, 0.1, n)  # daily pacing
    return _unit_mean(level)


def correlated_pair(
    rng: np.random.Generator, n: int, rho: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Two spend plans with correlation ~rho: a shared plan plus each one's own."""
    shared = spend_plan(rng, n, "steps")
    own_a, own_b = spend_plan(rng, n, "weekly_drift"), spend_plan(rng, n, "weekly_drift")
    lo, hi = 0.0, 1.0
    for _ in range(30):  # bisection on the shared weight
        w = (lo + hi) / 2
        a, b = w * shared + (1 - w) * own_a, w * shared + (1 - w) * own_b
        r = float(np.corrcoef(a, b)[0, 1])
        lo, hi = (w, hi) if r < rho else (lo, w)
    return _unit_mean(a), _unit_mean(b), r


# --------------------------------------------------------------------------- worlds


@dataclass
class World:
    family: str
    seed: int
    dates: list[date]
    spend: dict[str, np.ndarray]
    channels: dict[str, TrueChannel]
    baseline: np.ndarray  # expected organic revenue per day
    revenue: np.ndarray
    noise_sd: float
    unit_noise_share: float  # share of day-noise variance a holdout test cannot net out
    pair: tuple[str, str] | None = None
    notes: dict = field(default_factory=dict)
    _level: np.ndarray | None = field(default=None, repr=False)

    @property
    def daily_revenue(self) -> pl.DataFrame:
        return pl.DataFrame({"store_id": STORE, "date": self.dates, "revenue_usd": self.revenue})

    @property
    def daily_spend(self) -> pl.DataFrame:
        return pl.concat(
            [
                pl.DataFrame({"store_id": STORE, "date": self.dates, "channel": c, "spend_usd": s})
                for c, s in self.spend.items()
            ]
        )

    def events(self) -> pl.DataFrame:
        """The event days the pipeline would hand the model (a US store)."""
        from models.events import event_calendar

        cal = event_calendar(self.dates[0], self.dates[-1] + timedelta(days=60), ["US"])
        return cal.select(pl.lit(STORE).alias("store_id"), "date", "event").unique()

    @property
    def level(self) -> np.ndarray:
        """Expected daily revenue (baseline + every channel's response), before noise;
        computed once (every lift test's error scales with it)."""
        if self._level is None:
            self._level = self.baseline + sum(self.media().values())
        return self._level

    def media(self) -> dict[str, np.ndarray]:
        return {c: t.response(self.spend[c]) for c, t in self.channels.items()}

    def true_roas(self) -> dict[str, float]:
        return {c: float(r.sum() / self.spend[c].sum()) for c, r in self.media().items()}

    def media_share(self) -> float:
        media = sum(self.media().values())
        return float(media.sum() / (media.sum() + self.baseline.sum()))

    def true_lift(self, channel: str, start: int, stop: int, scope: str) -> float:
        """Revenue the channel's spend on days [start, stop) caused: over the window
        ('immediate') or over the window and every later day ('total')."""
        spend = self.spend[channel]
        held = spend.copy()
        held[start:stop] = 0.0
        diff = self.channels[channel].response(spend) - self.channels[channel].response(held)
        return float(diff[start:stop].sum() if scope == "immediate" else diff[start:].sum())

    def measure(
        self,
        rng: np.random.Generator,
        channel: str,
        start: int,
        stop: int,
        holdout: float,
        scope: str,
        noise: float = 1.0,
    ) -> tuple[dict, dict]:
        """One holdout study of `channel` on days [start, stop) with `holdout` of the
        audience held out: its lift_tests row and its truth (see `lift_tests`)."""
        day_sd = self.noise_sd * self.level[start:stop]
        se = float(np.sqrt(self.unit_noise_share * (day_sd**2).sum() / (holdout * (1 - holdout))))
        true = self.true_lift(channel, start, stop, scope)
        measured = true + noise * float(rng.normal(0.0, se))
        se = se * noise if noise > 0 else max(0.02 * abs(true), 1.0)
        row = {
            "store_id": STORE,
            "channel": channel,
            "start_date": self.dates[start],
            "end_date": self.dates[stop - 1],
            "test_spend_usd": float(self.spend[channel][start:stop].sum()),
            "incremental_revenue_usd": measured,
            "std_error_usd": se,
            "scope": scope,
            "source": "holdout",
        }
        return row, {"channel": channel, "true_lift_usd": true, "holdout_share": holdout}

    def planned_test(
        self,
        rng: np.random.Generator,
        channel: str,
        days: int,
        holdout: float,
        before: int,
        noise: float = 1.0,
    ) -> tuple[dict, dict, int] | None:
        """The test a lift plan asked for (channel, duration, holdout share), run in the
        latest window ending by day `before` where the channel spends at least half its
        usual rate, carry-out included (scope 'total'). Returns (row, truth, start), or
        None when the channel has no such window."""
        spend = self.spend[channel]
        usual = spend[spend > 0].mean() if (spend > 0).any() else 0.0
        for stop in range(min(before, len(self.dates) - 14), days + 59, -7):
            if usual > 0 and spend[stop - days : stop].sum() >= 0.5 * usual * days:
                row, true = self.measure(rng, channel, stop - days, stop, holdout, "total", noise)
                return row, true, stop - days
        return None

    def lift_tests(
        self, rng: np.random.Generator, count: int, noise: float = 1.0
    ) -> tuple[pl.DataFrame, list]:
        """`count` holdout studies (2-6 weeks, 10-50 % holdout) on channels drawn by spend,
        always one member of a correlated pair; measured = true lift + the test's noise.

        The test's standard error comes from the day noise it cannot net out (the
        unit-level share; shocks that hit both groups cancel), scaled for the split:
        se = sqrt(share * sum(day sd^2)) / sqrt(h (1 - h)).

        `noise` scales that error (measured and stated alike; the same random draws):
        1 is the harness, 0 a diagnostic with (almost) exact tests, stated at 2 % of the
        lift, that shows what the tests' placement allows apart from their noise."""
        n = len(self.dates)
        spend_share = np.array([self.spend[c].sum() for c in self.channels])
        names = list(self.channels)
        chosen: list[str] = [self.pair[int(rng.integers(0, 2))]] if self.pair else []
        while len(chosen) < count:
            p = spend_share * np.array([c not in chosen for c in names])
            if p.sum() <= 0:
                break
            chosen.append(names[int(rng.choice(len(names), p=p / p.sum()))])
        rows, truth = [], []
        for channel in chosen:
            days = int(rng.choice([14, 21, 28, 35, 42]))
            holdout = float(rng.uniform(0.1, 0.5))
            scope = "total" if rng.random() < 0.6 else "immediate"
            for _ in range(50):  # a window where the channel actually spends
                start = int(rng.integers(60, n - days - 14))
                if self.spend[channel][start : start + days].sum() > 0:
                    break
            row, true = self.measure(rng, channel, start, start + days, holdout, scope, noise)
            rows.append(row)
            truth.append(true)
        return pl.DataFrame(rows), truth


@dataclass(frozen=True)
class Family:
    """How a family draws its worlds (everything else is shared)."""

    description: str
    kernels: tuple[str, ...] = ("geometric", "gamma", "weibull")
    saturations: tuple[str, ...] = ("hill", "exponential")
    channels: tuple[int, int] = (3, 4)
    years: tuple[int, ...] = (2,)
    noise: tuple[float, float] = (0.05, 0.15)
    media_share: tuple[float, float] = (0.12, 0.5)
    q4_ramp: bool = False
    correlated: bool = False
    near_zero: bool = False


FAMILIES: dict[str, Family] = {
    "geometric_hill": Family(
        "geometric carryover, Hill saturation", kernels=("geometric",), saturations=("hill",)
    ),
    "delayed_exponential": Family(
        "delayed-peak (gamma) carryover, exponential saturation",
        kernels=("gamma",),
        saturations=("exponential",),
    ),
    "weibull_long": Family(
        "Weibull carryover with long tails, 3 years, noisier",
        kernels=("weibull",),
        years=(3,),
        noise=(0.1, 0.2),
    ),
    "q4_ramp": Family(
        "spend ramps before Black Friday on top of a strong organic Q4 peak", q4_ramp=True
    ),
    "correlated_pair": Family(
        "two channels whose spend moves together (rho 0.8-0.9)", correlated=True
    ),
    "near_zero": Family("one channel returns almost nothing", near_zero=True),
    "short_noisy": Family("one year, 15-25 % day noise", years=(1,), noise=(0.15, 0.25)),
}

CHANNEL_NAMES = ("search", "social", "video", "display")


def _kernel(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, str]:
    if kind == "geometric":
        decay = float(rng.uniform(0.0, 0.8))
        return geometric_kernel(decay), f"geometric({decay:.2f})"
    if kind == "gamma":
        shape, scale = float(rng.uniform(1.8, 4.0)), float(rng.uniform(1.0, 3.0))
        return gamma_kernel(shape, scale), f"gamma(peak {(shape - 1) * scale:.1f}d)"
    shape, scale = float(rng.uniform(0.8, 2.2)), float(rng.uniform(2.0, 9.0))
    return weibull_kernel(shape, scale), f"weibull({shape:.1f},{scale:.1f})"


def _baseline(rng: np.random.Generator, dates: list[date], q4_strength: float) -> np.ndarray:
    n = len(dates)
    t = np.arange(n) / 365.0
    doy = np.array([d.timetuple().tm_yday for d in dates]) / 365.25
    dow = np.array([d.weekday() for d in dates])
    growth = rng.uniform(-0.1, 0.4)
    # slow drift: a monthly random walk, smoothed
    months = n // 30 + 2
    walk = np.cumsum(rng.normal(0.0, 0.025, months))
    drift = np.interp(np.arange(n) / 30.0, np.arange(months), walk)
    phases = rng.uniform(0, 2 * np.pi, 2)
    yearly = 1 + rng.uniform(0.03, 0.15) * np.sin(2 * np.pi * doy + phases[0])
    yearly += rng.uniform(0.0, 0.06) * np.sin(4 * np.pi * doy + phases[1])
    weekly = 1 + rng.uniform(0.03, 0.12) * np.sin(2 * np.pi * dow / 7 + rng.uniform(0, 6.3))
    event = np.ones(n)
    bf_lift, dip = rng.uniform(0.5, 1.8), rng.uniform(0.05, 0.2)
    for i, d in enumerate(dates):
        bf = black_friday(d.year)
        offset = (d - bf).days
        if 0 <= offset <= 3:
            event[i] += bf_lift
        elif 4 <= offset <= 24:
            event[i] -= dip
        to_xmas = (date(d.year, 12, 24) - d).days
        if 0 <= to_xmas <= 12:
            event[i] += 0.25 * q4_strength
        # organic Q4 peak: a bump centred in early December
        gap = (d - date(d.year, 12, 5)).days
        event[i] += q4_strength * np.exp(-0.5 * (gap / 18.0) ** 2)
    return rng.uniform(5_000, 40_000) * np.exp(growth * t + drift) * yearly * weekly * event


def _q4_ramp(rng: np.random.Generator, dates: list[date]) -> np.ndarray:
    """Spend multiplier: up from 3-6 weeks before Black Friday to Christmas."""
    lead = {y: int(rng.integers(21, 43)) for y in {d.year for d in dates}}
    peak = {y: float(rng.uniform(1.6, 2.6)) for y in lead}
    ramp = np.ones(len(dates))
    for i, d in enumerate(dates):
        bf = black_friday(d.year)
        start = bf - timedelta(days=lead[d.year])
        if start <= d <= bf:
            ramp[i] = 1 + (peak[d.year] - 1) * (d - start).days / lead[d.year]
        elif bf < d <= date(d.year, 12, 22):
            ramp[i] = peak[d.year]
    return ramp


def make_world(family: str, seed: int) -> World:
    spec = FAMILIES[family]
    rng = np.random.default_rng([seed, 14, list(FAMILIES).index(family)])
    years = int(rng.choice(spec.years))
    n = 365 * years
    dates = [WORLD_END - timedelta(days=n - 1 - i) for i in range(n)]
    baseline = _baseline(rng, dates, rng.uniform(0.3, 0.7) if spec.q4_ramp else rng.uniform(0, 0.2))
    n_channels = int(rng.integers(spec.channels[0], spec.channels[1] + 1))
    names = list(CHANNEL_NAMES[:n_channels])
    plans: dict[str, np.ndarray] = {}
    pair = None
    if spec.correlated:
        a, b, rho = correlated_pair(rng, n, float(rng.uniform(0.8, 0.9)))
        plans[names[0]], plans[names[1]] = a, b
        pair = (names[0], names[1])
    styles = ("flighting", "weekly_drift", "steps", "always_on")
    for c in names:
        if c not in plans:
            plans[c] = spend_plan(rng, n, str(rng.choice(styles, p=[0.25, 0.3, 0.35, 0.1])))
    if spec.q4_ramp:
        ramp = _q4_ramp(rng, dates)
        plans = {c: _unit_mean(p * ramp ** rng.uniform(0.6, 1.2)) for c, p in plans.items()}
    roas = {c: float(np.exp(rng.uniform(np.log(0.8), np.log(6.0)))) for c in names}
    zero = names[-1] if spec.near_zero else None
    if zero:
        roas[zero] = float(rng.uniform(0.0, 0.3))
    share = float(rng.uniform(*spec.media_share))
    weights = rng.dirichlet(np.full(n_channels, 3.0))
    media_total = share / (1 - share) * baseline.sum()
    channels, spend = {}, {}
    for c, w in zip(names, weights, strict=True):
        kernel, label = _kernel(rng, str(rng.choice(spec.kernels)))
        revenue = w * media_total
        if c == zero:  # spends like the others, brings (almost) nothing
            total_spend = float(np.mean([weights[i] for i in range(n_channels)])) * media_total / 3
        else:
            total_spend = revenue / roas[c]
        s = plans[c] * total_spend / n
        sat = str(rng.choice(spec.saturations))
        unit = TrueChannel(c, kernel, label, sat, 1.0, float(rng.uniform(0.8, 2.0)))
        adstocked = np.convolve(s, kernel)[:n]
        unit.half_usd = float(rng.uniform(0.8, 2.5) * adstocked[adstocked > 0].mean())
        unit.ceiling_usd = roas[c] * s.sum() / unit.response(s).sum()
        channels[c], spend[c] = unit, s
    noise_sd = float(rng.uniform(*spec.noise))
    phi = float(rng.uniform(0.0, 0.3))
    eps = np.empty(n)
    eps[0] = rng.normal(0.0, noise_sd)
    for i in range(1, n):
        eps[i] = phi * eps[i - 1] + rng.normal(0.0, noise_sd * np.sqrt(1 - phi**2))
    media = sum(ch.response(spend[c]) for c, ch in channels.items())
    revenue = (baseline + media) * np.exp(eps - noise_sd**2 / 2)
    return World(
        family=family,
        seed=seed,
        dates=dates,
        spend=spend,
        channels=channels,
        baseline=baseline,
        revenue=revenue,
        noise_sd=noise_sd,
        unit_noise_share=float(rng.uniform(0.2, 0.5)),
        pair=pair,
        notes={
            "years": years,
            "noise_ar1": phi,
            "correlation": float(np.corrcoef(spend[pair[0]], spend[pair[1]])[0, 1])
            if pair
            else None,
            "kernels": {c: ch.kernel_label for c, ch in channels.items()},
            "saturation": {c: ch.saturation for c, ch in channels.items()},
        },
    )


# --------------------------------------------------------------------------- noise floor


def generic_baseline(dates: list[date]) -> np.ndarray:
    """The harness's own baseline design for the noise floor: trend with quarterly
    knots, day of week, yearly Fourier terms, Black Friday / Christmas windows."""
    n = len(dates)
    t = np.arange(n, dtype=float)
    cols = [np.ones(n), t / 365.0]
    cols += [np.maximum(t - k, 0) / 365.0 for k in range(91, n - 60, 91)]
    dow = np.array([d.weekday() for d in dates])
    cols += [(dow == k).astype(float) for k in range(1, 7)]
    doy = np.array([d.timetuple().tm_yday for d in dates]) / 365.25
    for k in (1, 2, 3):
        cols += [np.sin(2 * np.pi * k * doy), np.cos(2 * np.pi * k * doy)]
    bf_days = np.zeros(n)
    after = np.zeros(n)
    xmas = np.zeros(n)
    for i, d in enumerate(dates):
        offset = (d - black_friday(d.year)).days
        bf_days[i] = 0 <= offset <= 3
        after[i] = 4 <= offset <= 24
        xmas[i] = 0 <= (date(d.year, 12, 24) - d).days <= 12
    cols += [bf_days, after, xmas]
    return np.column_stack(cols)


def oracle_roas(world: World) -> dict[str, float]:
    """OLS of revenue on every channel's TRUE response series plus the generic
    baseline: ROAS = coefficient x true ROAS (only the scale is estimated)."""
    media = world.media()
    names = list(media)
    X = np.column_stack([*(media[c] for c in names), generic_baseline(world.dates)])
    coefs = np.linalg.lstsq(X, world.revenue, rcond=None)[0]
    truth = world.true_roas()
    return {c: float(coefs[i] * truth[c]) for i, c in enumerate(names)}


# --------------------------------------------------------------------------- scoring


def score_world(
    family: str,
    seed: int,
    methods: tuple[str, ...],
    config_overrides: dict | None = None,
    test_noise: float = 1.0,
    tests_mode: str = "random",
) -> dict:
    """Fit the model on one world (with 2-3 lift tests, read both calibrated and not)
    and compare every channel with the truth. tests_mode 'random': the tests fall on
    channels drawn by spend, with random designs (`World.lift_tests`); 'planned': each
    test is the one the model's own lift plan asks for after the tests before it
    (`planned_lift_tests`)."""
    import dataclasses

    from models import ad_roi

    world = make_world(family, seed)
    events = world.events()
    rng = np.random.default_rng([seed, 99, list(FAMILIES).index(family)])
    count = int(rng.integers(2, 4))
    config = ad_roi.AdRoiSettings(n_jobs=1, methods=methods, seed=seed)
    if config_overrides:
        ridge_overrides = config_overrides.get("ridge", {})
        rule_overrides = config_overrides.get("lift_test_rules", {})
        top = {k: v for k, v in config_overrides.items() if k not in ("ridge", "lift_test_rules")}
        config = dataclasses.replace(
            config,
            ridge=dataclasses.replace(config.ridge, **ridge_overrides),
            lift_test_rules=dataclasses.replace(config.lift_test_rules, **rule_overrides),
            **top,
        )
    if tests_mode == "planned":
        tests, tests_truth = planned_lift_tests(world, config, events, count, rng, test_noise)
    else:
        tests, tests_truth = world.lift_tests(rng, count, test_noise)
    started = time.perf_counter()
    model = ad_roi.fit(
        world.daily_revenue, world.daily_spend, config, events=events, lift_tests=tests
    )
    seconds = time.perf_counter() - started
    store = model.stores[STORE]
    truth, oracle = world.true_roas(), oracle_roas(world)
    frames = {}
    for method in methods:
        for calibrated in (False, True):
            roi = ad_roi.channel_roi(
                model,
                world.daily_revenue,
                world.daily_spend,
                events=events,
                method=method,
                calibrated=calibrated,
            ).filter(pl.col("period") == "all")
            frames[(method, calibrated)] = {r["channel"]: r for r in roi.iter_rows(named=True)}
    channels = {}
    for c in world.channels:
        entry = {"true": truth[c], "oracle": oracle[c], "spend": float(world.spend[c].sum())}
        for (method, calibrated), rows in frames.items():
            r = rows[c]
            tag = f"{method}{'_cal' if calibrated else ''}"
            entry[tag] = {
                "est": r["incremental_roas"],
                "p10": r["incremental_roas_p10"],
                "p90": r["incremental_roas_p90"],
                "identified": r["identified"],
                "confounded_with": r["confounded_with"],
            }
        channels[c] = entry
    return {
        "family": family,
        "seed": seed,
        "days": len(world.dates),
        "noise_sd": world.noise_sd,
        "media_share": world.media_share(),
        "pair": list(world.pair) if world.pair else None,
        "fit_seconds": seconds,
        "backtests": store.backtests,
        "beats_none": {m: store.beats_none(m) for m in store.backtests if m != "none"},
        "champion": store.champion,
        "channels": channels,
        "lift_tests": [
            {**t, "measured": r["incremental_revenue_usd"], "se": r["std_error_usd"]}
            for t, r in zip(
                tests_truth, tests.iter_rows(named=True) if tests is not None else [], strict=True
            )
        ],
        "tests_mode": tests_mode,
        "lift_test_status": [t["status"] for t in store.lift_tests],
        "notes": world.notes,
    }


def planned_lift_tests(
    world: World, config, events: pl.DataFrame, count: int, rng: np.random.Generator, noise: float
) -> tuple[pl.DataFrame | None, list]:
    """`count` tests run the way a merchant following marts.lift_plan would: fit (the
    ridge, with the tests so far), take the plan's test (channel, duration, holdout
    share), run it in the world (`World.planned_test`, before the previous test's
    window), and again. What the plan's choice of channel and design is worth to the
    ROAS, next to tests placed at random."""
    import dataclasses

    from models import ad_roi

    planning = dataclasses.replace(config, methods=("ridge",))
    rows, truth, before = [], [], len(world.dates)
    for _ in range(count):
        model = ad_roi.fit(
            world.daily_revenue,
            world.daily_spend,
            planning,
            events=events,
            lift_tests=pl.DataFrame(rows) if rows else None,
        )
        plan = ad_roi.lift_plan(model, world.daily_revenue, world.daily_spend, events=events)
        if plan.is_empty():
            break
        asked = plan.row(0, named=True)
        drawn = world.planned_test(
            rng, asked["channel"], int(asked["duration_days"]), float(asked["holdout_share"]),
            before, noise,
        )  # fmt: skip
        if drawn is None:
            break
        row, true, before = drawn
        rows.append(row)
        truth.append(true)
    return (pl.DataFrame(rows) if rows else None), truth


def _ape(est: float, true: float) -> float:
    return abs(est / true - 1.0)


def summarise(results: list[dict], methods: tuple[str, ...]) -> dict:
    """Per family (and 'all'): the metrics of the module docstring."""
    by_family: dict[str, list[dict]] = {}
    for r in results:
        by_family.setdefault(r["family"], []).append(r)
    by_family["all"] = results
    table = {}
    for family, worlds in by_family.items():
        big = [c for w in worlds for c in w["channels"].values() if c["true"] >= MAPE_MIN_ROAS]
        small = [c for w in worlds for c in w["channels"].values() if c["true"] < MAPE_MIN_ROAS]
        floor = float(np.mean([_ape(c["oracle"], c["true"]) for c in big]))
        row = {"worlds": len(worlds), "channels": len(big) + len(small), "noise_floor": floor}
        media_worlds = [w for w in worlds if w["media_share"] >= 0.2]
        row["worlds_media_20"] = len(media_worlds)
        row["oracle_ranking"] = _ranking(worlds, "oracle", floor)
        for method in methods:
            for cal in ("", "_cal"):
                tag = method + cal
                row[f"{tag}_mape"] = float(np.mean([_ape(c[tag]["est"], c["true"]) for c in big]))
                row[f"{tag}_coverage"] = float(
                    np.mean(
                        [
                            c[tag]["p10"] - 1e-9 <= c["true"] <= c[tag]["p90"] + 1e-9
                            for w in worlds
                            for c in w["channels"].values()
                        ]
                    )
                )
                row[f"{tag}_unidentified"] = float(
                    np.mean(
                        [not c[tag]["identified"] for w in worlds for c in w["channels"].values()]
                    )
                )
            # with the tests: the channels a used test measured, and the others
            for part, keep in (("tested", True), ("untested", False)):
                errors = [
                    _ape(c[f"{method}_cal"]["est"], c["true"])
                    for w in worlds
                    for name, c in w["channels"].items()
                    if c["true"] >= MAPE_MIN_ROAS and (name in _tested(w)) == keep
                ]
                row[f"{method}_cal_mape_{part}"] = float(np.mean(errors)) if errors else None
            # the standard error of the MAPE over channels: how far a family's figure moves
            # with other seeds (the bars are relative to a floor that moves as much)
            errors = [_ape(c[method]["est"], c["true"]) for c in big]
            row[f"{method}_mape_se"] = float(np.std(errors, ddof=1) / np.sqrt(len(errors)))
            if small:
                row[f"{method}_near_zero_abs_error"] = float(
                    np.mean([abs(c[method]["est"] - c["true"]) for c in small])
                )
            row[f"{method}_beats_none_media20"] = (
                float(np.mean([w["beats_none"].get(method, False) for w in media_worlds]))
                if media_worlds
                else None
            )
            row[f"{method}_ranking"] = _ranking(worlds, method, floor)
        row["published_media20"] = (
            float(np.mean([w["champion"] != "none" for w in media_worlds]))
            if media_worlds
            else None
        )
        published = [
            _ape(c[w["champion"]]["est"], c["true"])
            for w in worlds
            if w["champion"] != "none"
            for c in w["channels"].values()
            if c["true"] >= MAPE_MIN_ROAS
        ]
        row["published_mape"] = float(np.mean(published)) if published else None
        pairs = [w for w in worlds if w["pair"]]
        if pairs:
            row["pair_flagged_without_tests"] = float(
                np.mean(
                    [
                        any(not w["channels"][c]["ridge"]["identified"] for c in w["pair"])
                        for w in pairs
                    ]
                )
            )
            row["pair_split_right_with_tests"] = float(
                np.mean([_split_right(w, "ridge_cal") for w in pairs])
            )
            row["pair_split_right_without_tests"] = float(
                np.mean([_split_right(w, "ridge") for w in pairs])
            )
        row["fit_seconds_mean"] = float(np.mean([w["fit_seconds"] for w in worlds]))
        table[family] = row
    return table


def _tested(world: dict) -> set[str]:
    """Channels at least one used lift test measured."""
    return {
        t["channel"]
        for t, status in zip(world["lift_tests"], world["lift_test_status"], strict=True)
        if status == "used"
    }


def _ranking(worlds: list[dict], method: str, floor: float) -> float | None:
    """Share of channel pairs, among those whose true ROAS differ relatively by more
    than the noise floor, that the method (or 'oracle', the floor's own regression)
    orders right."""

    def estimate(channel: dict) -> float:
        return channel["oracle"] if method == "oracle" else channel[method]["est"]

    right = []
    for w in worlds:
        items = list(w["channels"].values())
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                if abs(a["true"] - b["true"]) / ((a["true"] + b["true"]) / 2) <= floor:
                    continue
                right.append((estimate(a) - estimate(b)) * (a["true"] - b["true"]) > 0)
    return float(np.mean(right)) if right else None


def _split_right(world: dict, tag: str, tolerance: float = 0.1) -> bool:
    """The pair's incremental revenue split within `tolerance` (share points) of the truth."""
    a, b = (world["channels"][c] for c in world["pair"])
    true_share = a["true"] * a["spend"] / (a["true"] * a["spend"] + b["true"] * b["spend"])
    est_a, est_b = a[tag]["est"] * a["spend"], b[tag]["est"] * b["spend"]
    if est_a + est_b <= 0:
        return False
    return abs(est_a / (est_a + est_b) - true_share) <= tolerance


COLUMNS = (
    ("noise_floor", "floor", "{:.3f}"),
    ("ridge_mape", "MAPE", "{:.3f}"),
    ("ridge_mape_se", "+-", "{:.3f}"),
    ("ridge_coverage", "cover", "{:.2f}"),
    ("ridge_ranking", "rank", "{:.2f}"),
    ("oracle_ranking", "floor rk", "{:.2f}"),
    ("ridge_beats_none_media20", "beats", "{:.2f}"),
    ("ridge_unidentified", "unid", "{:.2f}"),
    ("ridge_cal_mape", "MAPE+LT", "{:.3f}"),
    ("ridge_cal_coverage", "cov+LT", "{:.2f}"),
    ("ridge_cal_mape_tested", "LT tested", "{:.3f}"),
    ("ridge_cal_mape_untested", "LT untest", "{:.3f}"),
    ("lightgbm_mape", "lgb MAPE", "{:.3f}"),
    ("lightgbm_coverage", "lgb cov", "{:.2f}"),
    ("lightgbm_beats_none_media20", "lgb beats", "{:.2f}"),
    ("lightgbm_cal_mape", "lgb+LT", "{:.3f}"),
    ("published_mape", "publ MAPE", "{:.3f}"),
    ("published_media20", "publ", "{:.2f}"),
    ("pair_flagged_without_tests", "pair flag", "{:.2f}"),
    ("pair_split_right_with_tests", "split+LT", "{:.2f}"),
)


def format_table(table: dict) -> str:
    keys = [k for k in COLUMNS if any(row.get(k[0]) is not None for row in table.values())]
    header = f"{'family':<20}{'n':>4}" + "".join(f"{label:>10}" for _, label, _ in keys)
    lines = [header]
    for family, row in table.items():
        cells = []
        for key, _, fmt in keys:
            value = row.get(key)
            cells.append(f"{fmt.format(value) if value is not None else '-':>10}")
        lines.append(f"{family:<20}{row['worlds']:>4}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per family (full: 6)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument(
        "--methods", default="ridge,lightgbm", help="comma-separated: ridge[,lightgbm]"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worlds fitted side by side")
    parser.add_argument(
        "--test-noise",
        type=float,
        default=1.0,
        help="scale of the lift tests' error (1: the harness; 0: exact tests, a diagnostic)",
    )
    parser.add_argument(
        "--tests",
        choices=("random", "planned"),
        default="random",
        help="where the 2-3 lift tests fall: random channels and designs, or the ones the "
        "model's lift plan asks for, one after another",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="AdRoiSettings override k=json (ridge.<name> and lift_test_rules.<name> too)",
    )
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    overrides: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        if key.startswith("ridge.") or key.startswith("lift_test_rules."):
            group, name = key.split(".", 1)
            overrides.setdefault(group, {})[name] = json.loads(value)
        else:
            overrides[key] = json.loads(value)
    tasks = [(f, s) for f in args.families for s in range(args.seeds)]
    started = time.perf_counter()
    if args.jobs > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=args.jobs, backend="loky")(
            delayed(score_world)(f, s, methods, overrides, args.test_noise, args.tests)
            for f, s in tasks
        )
    else:
        results = []
        for f, s in tasks:
            results.append(score_world(f, s, methods, overrides, args.test_noise, args.tests))
            print(f"{f} seed {s}: {results[-1]['fit_seconds']:.1f} s", flush=True)
    table = summarise(results, methods)
    print(format_table(table))
    print(f"{len(tasks)} worlds in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "worlds": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
