"""Independent marketing-mix worlds (issue 14), the ad-ROI harness's data
(benchmarks/ad_roi_worlds.py scores the model on them).

Every world is written here from scratch with numpy, with none of the sample-data
generator's code or shapes: carryover kernels (geometric, gamma-shaped delayed peak,
Weibull), Hill and exponential saturation, Q4 spend ramps on top of organic peaks,
pairs of channels whose spend moves together (rho 0.8-0.9), channels that return
almost nothing, multiplicative AR(1) day noise of 5-25 %, trends with slow drift,
1 to 3 years of days. Each world hands the model what the pipeline would
(daily_revenue, daily_spend, the market's event days), knows every channel's true
ROAS and the media share of revenue, and can draw lift tests (a holdout study's
measured lift = the true lift over its window + sampling noise of the test's size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from models.events import black_friday

WORLD_END = date(2026, 6, 30)
STORE = "world"

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
