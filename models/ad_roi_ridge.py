"""The ad-ROI regression: a Bayesian ridge media-mix model with exact lift-test calibration.

Per store, daily revenue (USD) is

    revenue[t] = baseline[t] + sum_c roas_c * effective_spend_c[t] + noise[t]

- effective_spend_c = saturation(carryover(spend_c)), rescaled so that it sums to the
  channel's spend over the training window: the coefficient IS the channel's
  incremental ROAS over that window, so a prior, a lift test and the output all
  speak the same unit.
- baseline: intercept, a trend that may bend every `trend_knot_days` (hinge terms,
  shrunk toward a straight line; no bend in the last knot interval, so a forecast
  continues the recent slope), day of week, yearly Fourier terms, the market's
  event days (models.events) and retail windows around Black Friday and Christmas.
- weighted least squares with weights 1 / level^2 (day noise grows with the level of
  revenue: Black Friday is noisier in dollars than a Tuesday in March), every
  coefficient with a Gaussian prior (ridge); non-negative ROAS.
- carryover and saturation per channel are chosen from grids by coordinate descent
  on the penalised fit; the uncertainty over that choice is kept: nearby choices
  are refitted and weighted by their likelihood (tempered for autocorrelated noise).
- uncertainty of the coefficients: a Newey-West (HAC) sandwich, so autocorrelated
  residuals (a drifting baseline the trend does not follow) widen the intervals
  instead of hiding. Samples are drawn from the spec mixture and projected onto
  ROAS >= 0 in the posterior's own metric.
- lift tests enter exactly: each test is a Gaussian observation of a linear function
  of the coefficients (the model's counterfactual lift over the test window), so the
  calibrated posterior is the conjugate update of the data posterior (the same as
  adding the test as a pseudo-observation row with weight sigma^2 / se^2); the tests
  also reweight the carryover/saturation choices by how well each predicts them.

Pure numpy; no I/O. models.ad_roi wraps it into the pipeline's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from scipy.optimize import nnls

from models.adstock import REGRESSION_CARRYOVER_GRID, SATURATION_GRID, Carryover, Saturation
from models.events import black_friday

# Spend before the first day and after the last one is zero; a kernel never reaches
# further than this many days, so counterfactual carry-out is computed on padded series.
CARRY_OUT_DAYS = 60


@dataclass(frozen=True)
class RidgeConfig:
    """Knobs of the regression, with the defaults the pipeline uses."""

    carryover_grid: tuple[Carryover, ...] = REGRESSION_CARRYOVER_GRID
    saturation_grid: tuple[Saturation, ...] = SATURATION_GRID
    search_passes: int = 2
    trend_knot_days: int = 91
    # Prior sd of each bend of the trend (change of slope, share of mean revenue per year).
    trend_prior_sd: float = 0.3
    fourier_terms: int = 3
    seasonality_prior_sd: float = 0.1
    weekday_prior_sd: float = 0.3
    event_prior_sd: float = 0.5
    # Prior of a channel's ROAS: N(roas_prior_mean, roas_prior_sd^2).
    roas_prior_mean: float = 0.0
    roas_prior_sd: float = 5.0
    multiplicative_noise: bool = True
    hac_lag_days: int = 14
    n_samples: int = 400
    # Gibbs sweeps over the carryover/saturation grid, and how many of the specs it
    # visits (the most visited) are refitted for the posterior.
    gibbs_sweeps: int = 12
    gibbs_chains: int = 3
    max_specs: int = 60
    # The likelihood is flattened by at least this factor when weighing carryover and
    # saturation choices: the grid never holds the true curve, and a baseline that
    # drifts makes nearby choices fit about equally well. Chosen on the harness of
    # independent worlds (benchmarks/ad_roi_worlds.py): 1 and 2 left the true ROAS
    # outside p10-p90 for a quarter of the channels, 4 and 8 covered 0.8-0.9.
    temper_floor: float = 4.0
    seed: int = 0


# --------------------------------------------------------------------------- baseline


def retail_windows(dates: list[date]) -> dict[str, np.ndarray]:
    """Windows every retail market shares, as 0/1 columns: the week before Black
    Friday, Black Friday to Cyber Monday, the hangover after it, the Christmas run-up
    and the days after Christmas."""
    n = len(dates)
    out = {
        k: np.zeros(n)
        for k in ("pre_black_friday", "bfcm", "after_bfcm", "christmas_run_up", "after_christmas")
    }
    for i, d in enumerate(dates):
        offset = (d - black_friday(d.year)).days
        out["pre_black_friday"][i] = -7 <= offset <= -1
        out["bfcm"][i] = 0 <= offset <= 3
        out["after_bfcm"][i] = 4 <= offset <= 21
        out["christmas_run_up"][i] = 0 <= (date(d.year, 12, 23) - d).days <= 13
        after = (d - date(d.year if d.month == 12 else d.year - 1, 12, 26)).days
        out["after_christmas"][i] = 0 <= after <= 11
    return out


@dataclass(frozen=True)
class BaselineDesign:
    """Columns of the baseline, fixed at fit time so that any later dates (a forecast,
    a counterfactual) get the same columns."""

    history_start: date
    knots: tuple[int, ...]  # day offsets from history_start where the slope may change
    fourier_terms: int
    event_names: tuple[str, ...]

    @classmethod
    def for_window(
        cls, dates: list[date], event_names: list[str], config: RidgeConfig
    ) -> BaselineDesign:
        n = len(dates)
        step = config.trend_knot_days
        # No bend within the last knot interval: the slope a forecast continues is
        # estimated from at least `step` days.
        knots = tuple(range(step, n - step + 1, step))
        terms = config.fourier_terms if n >= 300 else 1
        return cls(dates[0], knots, terms, tuple(event_names))

    def matrix(self, dates: list[date], events: dict[str, np.ndarray]) -> np.ndarray:
        n = len(dates)
        t = np.array([(d - self.history_start).days for d in dates], dtype=float)
        cols = [np.ones(n), t / 365.0]
        cols += [np.maximum(t - k, 0.0) / 365.0 for k in self.knots]
        dow = np.array([d.weekday() for d in dates])
        cols += [(dow == k).astype(float) for k in range(1, 7)]
        doy = np.array([d.timetuple().tm_yday for d in dates], dtype=float) / 365.25
        for k in range(1, self.fourier_terms + 1):
            cols += [np.sin(2 * np.pi * k * doy), np.cos(2 * np.pi * k * doy)]
        windows = retail_windows(dates)
        cols += list(windows.values())
        for name in self.event_names:
            cols.append(np.asarray(events.get(name, np.zeros(n)), dtype=float))
        return np.column_stack(cols)

    def prior_sd(self, config: RidgeConfig) -> np.ndarray:
        sd = [np.inf, np.inf]
        sd += [config.trend_prior_sd] * len(self.knots)
        sd += [config.weekday_prior_sd] * 6
        sd += [config.seasonality_prior_sd] * (2 * self.fourier_terms)
        sd += [config.event_prior_sd] * (5 + len(self.event_names))
        return np.array(sd)


# --------------------------------------------------------------------------- media


@dataclass(frozen=True)
class ChannelTransform:
    """How one channel's spend becomes effective spend (USD): carryover, saturation
    with its half point fixed in USD, and the factor that makes the training window's
    effective spend sum to its spend."""

    carryover: Carryover
    saturation: Saturation
    half_usd: float
    norm: float

    @classmethod
    def fit(cls, carryover: Carryover, saturation: Saturation, spend: np.ndarray):
        adstocked = carryover.apply(spend)
        positive = adstocked[adstocked > 0]
        half_usd = saturation.half * float(positive.mean()) if positive.size else 1.0
        shaped = saturation.apply(adstocked, half_usd)
        norm = float(spend.sum() / shaped.sum()) if shaped.sum() > 0 else 0.0
        return cls(carryover, saturation, half_usd, norm)

    def effective(self, spend: np.ndarray) -> np.ndarray:
        return self.saturation.apply(self.carryover.apply(spend), self.half_usd) * self.norm

    def label(self) -> str:
        return f"{self.carryover.label()} + {self.saturation.label()}"


Spec = tuple[tuple[Carryover, Saturation], ...]  # one (carryover, saturation) per channel


@dataclass
class SpecFit:
    """One carryover/saturation choice for every channel, fitted."""

    spec: Spec
    transforms: list[ChannelTransform]
    coef: np.ndarray  # [baseline..., roas...] (unconstrained posterior mean)
    roas_mean: np.ndarray
    roas_cov: np.ndarray  # HAC sandwich, media block
    objective: float  # penalised weighted RSS (scaled units)
    log_weight: float = 0.0
    calibrated_mean: np.ndarray | None = None
    calibrated_cov: np.ndarray | None = None
    test_log_likelihood: float = 0.0


@dataclass
class RidgeStoreModel:
    """One store's fitted regression: the spec mixture and posterior samples."""

    channels: list[str]
    design: BaselineDesign
    revenue_scale: float
    sigma2: float  # weighted residual variance (scaled units)
    residual_autocorrelation: float
    fits: list[SpecFit]
    sample_spec: np.ndarray  # index into fits, per sample
    sample_roas: np.ndarray  # samples x channels, uncalibrated
    calibrated_spec: np.ndarray | None = None
    calibrated_roas: np.ndarray | None = None
    daily_noise_usd: float = 0.0  # residual sd of daily revenue (USD), at the recent level
    notes: dict = field(default_factory=dict)

    @property
    def best(self) -> SpecFit:
        return self.fits[0]

    def samples(self, calibrated: bool) -> tuple[np.ndarray, np.ndarray]:
        if calibrated and self.calibrated_roas is not None:
            return self.calibrated_spec, self.calibrated_roas
        return self.sample_spec, self.sample_roas


# --------------------------------------------------------------------------- fitting


def _weighted_normal(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    Xw = X * w[:, None]
    return Xw.T @ X, Xw.T @ y


class RidgeFitter:
    """Data of one store, prepared once; fits any spec on any prefix of the days."""

    def __init__(
        self,
        dates: list[date],
        revenue: np.ndarray,
        spend: dict[str, np.ndarray],
        events: dict[str, np.ndarray],
        config: RidgeConfig,
    ):
        self.dates, self.revenue, self.spend, self.events = dates, revenue, spend, events
        self.config = config
        self.channels = list(spend)
        self.scale = float(max(revenue.mean(), 1e-9))
        self.y = revenue / self.scale

    # -- pieces ------------------------------------------------------------------
    def design(self, n: int) -> tuple[BaselineDesign, np.ndarray]:
        design = BaselineDesign.for_window(self.dates[:n], sorted(self.events), self.config)
        events = {k: v[:n] for k, v in self.events.items()}
        return design, design.matrix(self.dates[:n], events)

    def media(self, spec: Spec, n: int) -> tuple[list[ChannelTransform], np.ndarray]:
        transforms = [
            ChannelTransform.fit(k, s, self.spend[c][:n])
            for c, (k, s) in zip(self.channels, spec, strict=True)
        ]
        Z = np.column_stack(
            [t.effective(self.spend[c][:n]) for c, t in zip(self.channels, transforms, strict=True)]
        )
        return transforms, Z / self.scale

    def penalty(self, design: BaselineDesign, sigma2: float) -> np.ndarray:
        sd = np.concatenate(
            [design.prior_sd(self.config), np.full(len(self.channels), self.config.roas_prior_sd)]
        )
        return np.where(np.isfinite(sd), sigma2 / sd**2, 0.0)

    def prior_mean(self, n_baseline: int, with_media: bool) -> np.ndarray:
        media = np.full(len(self.channels) if with_media else 0, self.config.roas_prior_mean)
        return np.concatenate([np.zeros(n_baseline), media])

    # -- one spec --------------------------------------------------------------
    def solve(self, B, Z, w, penalty) -> tuple[np.ndarray, float]:
        X = np.column_stack([B, Z]) if Z is not None else B
        A, b = _weighted_normal(X, self.y[: X.shape[0]], w)
        k = X.shape[1]
        mean = self.prior_mean(B.shape[1], Z is not None)
        A[np.diag_indices_from(A)] += penalty[:k]
        coef = np.linalg.solve(A, b + penalty[:k] * mean)
        resid = self.y[: X.shape[0]] - X @ coef
        objective = float((w * resid**2).sum() + (penalty[:k] * (coef - mean) ** 2).sum())
        return coef, objective

    def weights(self, fitted: np.ndarray) -> np.ndarray:
        if not self.config.multiplicative_noise:
            return np.ones(fitted.size)
        level = np.maximum(fitted, 0.2 * max(float(np.mean(fitted)), 1e-9))
        w = 1.0 / level**2
        return w / w.mean()


def fit_store(
    dates: list[date],
    revenue: np.ndarray,
    spend: dict[str, np.ndarray],
    events: dict[str, np.ndarray],
    config: RidgeConfig | None = None,
) -> RidgeStoreModel:
    """Fit the regression on every day given; spend keys are the channels modelled."""
    config = config or RidgeConfig()
    f = RidgeFitter(dates, revenue, spend, events, config)
    n = len(dates)
    design, B = f.design(n)
    channels = f.channels
    m = len(channels)
    grid = [(k, s) for k in config.carryover_grid for s in config.saturation_grid]
    start: Spec = tuple(
        (Carryover("geometric", 0.3), Saturation("hill", 1.0, 1.0)) for _ in channels
    )
    # Preliminary fit: the noise level and the weights that every spec is judged with.
    _, Z = f.media(start, n)
    w = np.ones(n)
    sigma2 = float(np.var(f.y)) * 0.1
    for _ in range(2):
        coef, _ = f.solve(B, Z, w, f.penalty(design, sigma2))
        fitted = np.column_stack([B, Z]) @ coef
        w = f.weights(fitted)
        sigma2 = float((w * (f.y - fitted) ** 2).mean())
    penalty = f.penalty(design, sigma2)

    search = _SpecSearch(f, B, w, penalty, grid)
    solve, conditional = search.solve, search.conditional

    best = start
    for _ in range(config.search_passes):
        for c in range(m):
            best = best[:c] + (grid[int(np.argmin(conditional(best, c)))],) + best[c + 1 :]

    # The data rarely single out one carryover/saturation per channel, and the choice
    # moves the ROAS: keep that uncertainty. Gibbs sampling over the grid from the
    # best choice, with the likelihood tempered for autocorrelated residuals (and at
    # least by `temper_floor`, as a model this simple is never exactly right).
    resid = solve(best)[4]
    scaled = np.sqrt(w) * resid
    rho = float(np.clip(np.corrcoef(scaled[1:], scaled[:-1])[0, 1], 0.0, 0.9))
    temper = max((1 + rho) / (1 - rho), config.temper_floor)
    rng = np.random.default_rng(config.seed)
    visits = {best: 1}
    for chain in range(config.gibbs_chains):
        # The first chain starts at the best choice; others at random choices, with
        # their first sweep discarded, so a second mode is found if there is one.
        state = best if chain == 0 else tuple(grid[int(rng.integers(len(grid)))] for _ in range(m))
        for sweep in range(config.gibbs_sweeps):
            for c in range(m):
                logs = -conditional(state, c) / (2 * sigma2 * temper)
                p = np.exp(logs - logs.max())
                pick = grid[int(rng.choice(len(grid), p=p / p.sum()))]
                state = state[:c] + (pick,) + state[c + 1 :]
                if chain == 0 or sweep > 0:
                    visits[state] = visits.get(state, 0) + 1
    # most visited first; ties in the order first visited (a set would order them by
    # string hashes, which differ from process to process)
    ordered = [best] + sorted((s for s in visits if s != best), key=lambda s: -visits[s])
    ordered = ordered[: config.max_specs]
    fits = []
    for spec in ordered:
        coef, objective, A, Z, resid = solve(spec)
        media_rows = np.linalg.solve(A, np.eye(A.shape[0])[:, -m:]).T  # (A^-1)[media, :]
        X = np.column_stack([B, Z])
        cov = _hac(X @ media_rows.T, w * resid, config.hac_lag_days, n, A.shape[0])
        transforms = [
            ChannelTransform.fit(k, s_, spend[c]) for c, (k, s_) in zip(channels, spec, strict=True)
        ]
        fits.append(
            SpecFit(
                spec=spec,
                transforms=transforms,
                coef=coef,
                roas_mean=coef[-m:],
                roas_cov=_psd(cov),
                objective=objective,
                log_weight=float(np.log(visits[spec])),
            )
        )
    spec_idx, roas = _draw(fits, [f.log_weight for f in fits], False, config.n_samples, rng)
    residual = solve(best)[4] * f.scale
    recent = slice(max(n - 90, 0), n)
    return RidgeStoreModel(
        channels=channels,
        design=design,
        revenue_scale=f.scale,
        sigma2=sigma2,
        residual_autocorrelation=rho,
        fits=fits,
        sample_spec=spec_idx,
        sample_roas=roas,
        daily_noise_usd=float(np.sqrt(np.mean(residual[recent] ** 2))),
        notes={"specs": len(fits), "temper": temper, "objectives_evaluated": search.evaluated},
    )


class _SpecSearch:
    """One store's data with the noise weights and penalties held fixed: fits any
    carryover/saturation choice (`solve`), or scores every option of one channel at
    once given the others (`conditional`). Only the media columns change between
    choices, so the baseline blocks are computed once."""

    def __init__(self, f: RidgeFitter, B: np.ndarray, w: np.ndarray, penalty, grid: list):
        self.f, self.B, self.w, self.penalty, self.grid = f, B, w, penalty, grid
        self.m, self.n_base = len(f.channels), B.shape[1]
        self.mean = f.prior_mean(self.n_base, True)
        BtW = (B * w[:, None]).T
        self.BtWB, self.BtWy = BtW @ B, BtW @ f.y
        self._columns: dict[tuple, np.ndarray] = {}
        self.options = [np.column_stack([self.column(c, o) for o in grid]) for c in range(self.m)]
        self.evaluated = 0

    def column(self, c: int, option) -> np.ndarray:
        key = (c, option)
        if key not in self._columns:
            spend = self.f.spend[self.f.channels[c]]
            t = ChannelTransform.fit(option[0], option[1], spend)
            self._columns[key] = t.effective(spend) / self.f.scale
        return self._columns[key]

    def _normal(self, Z: np.ndarray | None):
        if Z is None:
            return self.BtWB.copy(), self.BtWy.copy()
        ZtW = (Z * self.w[:, None]).T
        cross = ZtW @ self.B
        return np.block([[self.BtWB, cross.T], [cross, ZtW @ Z]]), np.concatenate(
            [self.BtWy, ZtW @ self.f.y]
        )

    def solve(self, spec: Spec):
        """(coefficients, penalised objective, A, media columns, residuals)."""
        m, y, w = self.m, self.f.y, self.w
        Z = np.column_stack([self.column(c, o) for c, o in enumerate(spec)])
        A, b = self._normal(Z)
        A[np.diag_indices_from(A)] += self.penalty
        coef = np.linalg.solve(A, b + self.penalty * self.mean)
        resid = y - self.B @ coef[:-m] - Z @ coef[-m:]
        objective = float((w * resid**2).sum() + (self.penalty * (coef - self.mean) ** 2).sum())
        return coef, objective, A, Z, resid

    def conditional(self, state: Spec, c: int) -> np.ndarray:
        """The penalised objective of `state` with channel c's option replaced by each
        grid option in turn, all at once: fit without channel c, then add each
        candidate column by the rank-one (Schur complement) update of the ridge."""
        y, w, n_base = self.f.y, self.w, self.n_base
        others = [j for j in range(self.m) if j != c]
        Zo = np.column_stack([self.column(j, state[j]) for j in others]) if others else None
        X = self.B if Zo is None else np.column_stack([self.B, Zo])
        keep = np.concatenate([np.arange(n_base), n_base + np.array(others, dtype=int)])
        pen, mu = self.penalty[keep], self.mean[keep]
        A, b = self._normal(Zo)
        A[np.diag_indices_from(A)] += pen
        A_inv = np.linalg.inv(A)
        beta = A_inv @ (b + pen * mu)
        e = y - X @ beta
        base = float((w * e**2).sum() + (pen * (beta - mu) ** 2).sum())
        Zc = self.options[c]
        WZc = Zc * w[:, None]
        G = X.T @ WZc
        lam, mu_c = self.penalty[n_base + c], self.mean[n_base + c]
        gain = (WZc.T @ e + lam * mu_c) ** 2
        spread = (Zc * WZc).sum(axis=0) + lam - (G * (A_inv @ G)).sum(axis=0)
        self.evaluated += len(self.grid)
        return base + lam * mu_c**2 - gain / spread


def _hac(projected: np.ndarray, weighted_resid: np.ndarray, lags: int, n: int, k: int):
    """Newey-West (Bartlett) covariance of the media coefficients: `projected` holds,
    per day, the day's design row mapped through (A^-1)[media, :]."""
    g = projected * weighted_resid[:, None]
    meat = g.T @ g
    for lag in range(1, lags + 1):
        gamma = g[lag:].T @ g[:-lag]
        meat += (1 - lag / (lags + 1)) * (gamma + gamma.T)
    return meat * n / max(n - k, 1)


def _psd(cov: np.ndarray) -> np.ndarray:
    cov = (cov + cov.T) / 2
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, 1e-12)) @ vectors.T


def _project_nonnegative(x: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """argmin_{b >= 0} (b - x)' cov^-1 (b - x): the closest non-negative ROAS in the
    posterior's metric (a correlated pair keeps its sum when one side hits zero)."""
    if (x >= 0).all():
        return x
    chol = np.linalg.cholesky(cov)
    A = np.linalg.solve(chol, np.eye(cov.shape[0]))
    solution, _ = nnls(A, A @ x)
    return solution


def _draw(fits, log_weights, calibrated: bool, n_samples: int, rng):
    lw = np.array(log_weights)
    p = np.exp(lw - lw.max())
    p /= p.sum()
    spec_idx = np.sort(rng.choice(len(fits), size=n_samples, p=p))
    m = fits[0].roas_mean.size
    roas = np.empty((n_samples, m))
    for k in np.unique(spec_idx):
        fit = fits[k]
        mean = fit.calibrated_mean if calibrated else fit.roas_mean
        cov = fit.calibrated_cov if calibrated else fit.roas_cov
        rows = np.flatnonzero(spec_idx == k)
        draws = rng.multivariate_normal(mean, cov, size=rows.size, method="cholesky")
        roas[rows] = [_project_nonnegative(d, cov) for d in draws]
    return spec_idx, roas


# --------------------------------------------------------------------------- scoring


def effective_sums(
    model: RidgeStoreModel,
    spend: dict[str, np.ndarray],
    rows: slice | np.ndarray,
    specs: np.ndarray,
) -> dict[int, np.ndarray]:
    """Per spec index: the sum over `rows` of each channel's effective spend (USD)."""
    out = {}
    for k in np.unique(specs):
        fit = model.fits[k]
        out[int(k)] = np.array(
            [
                t.effective(spend[c])[rows].sum()
                for c, t in zip(model.channels, fit.transforms, strict=True)
            ]
        )
    return out


def media_revenue(
    model: RidgeStoreModel,
    spend: dict[str, np.ndarray],
    rows: slice | np.ndarray,
    calibrated: bool = False,
) -> np.ndarray:
    """Per posterior sample: the media part of revenue summed over `rows` (USD). The
    baseline does not depend on spend, so differences of this are revenue changes."""
    specs, roas = model.samples(calibrated)
    sums = effective_sums(model, spend, rows, specs)
    stacked = np.array([sums[int(k)] for k in specs])
    return (roas * stacked).sum(axis=1)


def baseline_revenue(
    model: RidgeStoreModel, dates: list[date], events: dict[str, np.ndarray]
) -> np.ndarray:
    """Daily revenue (USD) without media: the best spec's baseline coefficients."""
    B = model.design.matrix(dates, events)
    return B @ model.best.coef[: B.shape[1]] * model.revenue_scale


def predict(model: RidgeStoreModel, dates, spend, events, fit_index: int = 0) -> np.ndarray:
    """Daily revenue (USD) from one spec's posterior mean (the best spec by default)."""
    fit = model.fits[fit_index]
    B = model.design.matrix(dates, events)
    Z = np.column_stack(
        [t.effective(spend[c]) for c, t in zip(model.channels, fit.transforms, strict=True)]
    )
    return (np.column_stack([B, Z / model.revenue_scale]) @ fit.coef) * model.revenue_scale


# --------------------------------------------------------------------------- backtest


def backtest(
    dates: list[date],
    revenue: np.ndarray,
    spend: dict[str, np.ndarray],
    events: dict[str, np.ndarray],
    spec: Spec,
    folds: list[tuple[int, int]],
    config: RidgeConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rolling origin: for each (cutoff, stop), fit strictly before the cutoff (the
    spec given, its transforms and every coefficient refitted on the past only) and
    predict the days up to `stop` with their actual spend. Returns the predictions
    with media and those of the same baseline without media, concatenated."""
    config = config or RidgeConfig()
    f = RidgeFitter(dates, revenue, spend, events, config)
    with_media, without = [], []
    for cut, stop in folds:
        design, B = f.design(cut)
        B_test = design.matrix(dates[cut:stop], {k: v[cut:stop] for k, v in events.items()})
        preds = []
        for use_media in (True, False):
            w = np.ones(cut)
            sigma2 = float(np.var(f.y[:cut])) * 0.1
            if use_media:
                transforms, Z = f.media(spec, cut)
                Z_test = (
                    np.column_stack(
                        [
                            t.effective(spend[c][:stop])[cut:stop]
                            for c, t in zip(f.channels, transforms, strict=True)
                        ]
                    )
                    / f.scale
                )
            else:
                Z, Z_test = None, None
            for _ in range(2):
                penalty = f.penalty(design, sigma2)
                if not use_media:
                    penalty = penalty[: B.shape[1]]
                coef, _ = f.solve(B, Z, w, penalty)
                X = np.column_stack([B, Z]) if use_media else B
                fitted = X @ coef
                w = f.weights(fitted)
                sigma2 = float((w * (f.y[:cut] - fitted) ** 2).mean())
            X_test = np.column_stack([B_test, Z_test]) if use_media else B_test
            preds.append(X_test @ coef * f.scale)
        with_media.append(preds[0])
        without.append(preds[1])
    return np.concatenate(with_media), np.concatenate(without)


# --------------------------------------------------------------------------- lift tests


@dataclass(frozen=True)
class LiftObservation:
    """A lift test as the regression sees it: which channel, the days whose spend was
    held out ([start, stop) in the panel's day index), over which days its effect was
    counted (to `count_stop`, beyond the panel when carry-out runs past its end), the
    measured lift (USD) and its effective standard error (USD), and the factor that
    scales the model's lift for the whole window spend to the tested spend."""

    channel: str
    start: int
    stop: int
    count_stop: int
    measured_usd: float
    std_error_usd: float
    spend_ratio: float = 1.0


def lift_loadings(
    model: RidgeStoreModel, spend: dict[str, np.ndarray], test: LiftObservation, fit: SpecFit
) -> np.ndarray:
    """The model's lift for this test = loadings . roas (USD): effective spend lost when
    the channel's spend on the test days is set to zero, over the counted days."""
    c = model.channels.index(test.channel)
    series = np.concatenate([spend[test.channel], np.zeros(CARRY_OUT_DAYS)])
    held = series.copy()
    held[test.start : test.stop] = 0.0
    t = fit.transforms[c]
    lost = (t.effective(series) - t.effective(held))[test.start : test.count_stop].sum()
    loadings = np.zeros(len(model.channels))
    loadings[c] = lost * test.spend_ratio
    return loadings


def calibrate(
    model: RidgeStoreModel,
    spend: dict[str, np.ndarray],
    tests: list[LiftObservation],
    seed: int = 0,
    n_samples: int | None = None,
) -> RidgeStoreModel:
    """Condition every spec's posterior on the lift tests (exact Gaussian update) and
    reweight the specs by how well each predicted them; draws calibrated samples."""
    if not tests:
        model.calibrated_spec, model.calibrated_roas = None, None
        return model
    for fit in model.fits:
        A = np.array([lift_loadings(model, spend, t, fit) for t in tests])
        noise = np.diag([t.std_error_usd**2 for t in tests])
        measured = np.array([t.measured_usd for t in tests])
        prior_cov, prior_mean = fit.roas_cov, fit.roas_mean
        predictive = A @ prior_cov @ A.T + noise
        gain = prior_cov @ A.T @ np.linalg.inv(predictive)
        fit.calibrated_mean = prior_mean + gain @ (measured - A @ prior_mean)
        fit.calibrated_cov = _psd(prior_cov - gain @ A @ prior_cov)
        resid = measured - A @ prior_mean
        sign, logdet = np.linalg.slogdet(predictive)
        fit.test_log_likelihood = float(
            -0.5 * (resid @ np.linalg.solve(predictive, resid) + logdet)
        )
    rng = np.random.default_rng([seed, 1])
    log_weights = [f.log_weight + f.test_log_likelihood for f in model.fits]
    model.calibrated_spec, model.calibrated_roas = _draw(
        model.fits, log_weights, True, n_samples or model.sample_roas.shape[0], rng
    )
    return model


def model_lift_samples(
    model: RidgeStoreModel,
    spend: dict[str, np.ndarray],
    test: LiftObservation,
    calibrated: bool,
) -> np.ndarray:
    """The model's lift for the test, per posterior sample (USD)."""
    specs, roas = model.samples(calibrated)
    loads = {int(k): lift_loadings(model, spend, test, model.fits[k]) for k in np.unique(specs)}
    return np.array([roas[i] @ loads[int(k)] for i, k in enumerate(specs)])


def horizon_dates(dates: list[date], extra: int) -> list[date]:
    return dates + [dates[-1] + timedelta(days=i + 1) for i in range(extra)]
