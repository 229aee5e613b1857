"""The ad-ROI LightGBM response model (the 'lightgbm' candidate of models.ad_roi).

Boosted stumps on the detrended revenue: an additive model with one monotone
increasing curve per channel (adstocked spend, carryover chosen per channel from a
grid by held-out error) plus calendar effects, so saturation is learnt from the data
instead of assumed. Uncertainty: moving-block bootstrap refits (or refits that
reweight 3-week blocks). A placebo (the channel's spend moved to other days) sets
the floor an effect must clear to count as "distinguishable from zero".

Pure numpy / LightGBM; models.ad_roi wraps it into the pipeline's outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np

from models.adstock import Carryover
from models.events import black_friday, prime_days

if TYPE_CHECKING:
    from models.ad_roi import AdRoiSettings, StorePanel


# --------------------------------------------------------------------------- calendar


def calendar_features(dates: list[date], history_start: date) -> dict[str, np.ndarray]:
    """Calendar columns for the tree model (NaN = 'not near this event').

    Coarse on purpose: a month-level trend and month-of-year cannot carve out a
    two-week spend burst, so media effects are not absorbed by time features.
    """
    n = len(dates)
    dow = np.array([d.weekday() for d in dates], dtype=float)
    month = np.array([d.month for d in dates], dtype=float)
    trend = np.array(
        [(d.year - history_start.year) * 12 + d.month - history_start.month for d in dates],
        dtype=float,
    )
    bfcm = np.full(n, np.nan)
    after_cm = np.full(n, np.nan)
    christmas = np.full(n, np.nan)
    retail_event = np.zeros(n)
    years = sorted({d.year for d in dates})
    prime_day_set = {day for year in years for day in prime_days(year)}
    for i, d in enumerate(dates):
        for year in (d.year - 1, d.year):
            bf = black_friday(year)
            offset = (d - bf).days
            if -14 <= offset <= 4:
                bfcm[i] = offset
            elif 4 < offset <= 46:
                after_cm[i] = offset - 4
            xmas = (d - date(year, 12, 25)).days
            if -10 <= xmas <= 7:
                christmas[i] = xmas
        if (d.month, d.day) in ((11, 11), (2, 14)) or d in prime_day_set:
            retail_event[i] = 1.0
    return {
        "day_of_week": dow,
        "month": month,
        "trend_month": trend,
        "black_friday_offset": bfcm,
        "days_after_cyber_monday": after_cm,
        "christmas_offset": christmas,
        "retail_event": retail_event,
    }


def _calendar_matrix(cal: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.column_stack([cal[n] for n in names])


def _media_matrix(
    spend: dict[str, np.ndarray], channels: list[str], carry: dict[str, Carryover]
) -> np.ndarray:
    return np.column_stack([carry[c].apply(spend[c]) for c in channels])


# --------------------------------------------------------------------------- fitting


def _lgb_params(config: AdRoiSettings, monotone: list[int], seed: int) -> dict:
    n_media = sum(monotone)
    contribution = [1.0] * n_media + [config.calendar_gain_weight] * (len(monotone) - n_media)
    return {
        "feature_contri": contribution,
        "objective": "regression",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": 2,
        "min_data_in_leaf": config.min_data_in_leaf,
        "min_data_in_bin": 1,
        "lambda_l2": 1.0,
        "monotone_constraints": monotone,
        "monotone_constraints_method": "advanced",
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }


def _fit_booster(X, y, n_media, config, seed, rounds=None, weight=None) -> lgb.Booster:
    monotone = [1] * n_media + [0] * (X.shape[1] - n_media)
    data = lgb.Dataset(
        X, y, weight=weight, params={"max_bin": 63, "verbose": -1}, free_raw_data=True
    )
    return lgb.train(
        _lgb_params(config, monotone, seed), data, num_boost_round=rounds or config.rounds
    )


def _block_folds(n: int, k: int) -> list[np.ndarray]:
    edges = np.linspace(0, n, k + 1).astype(int)
    return [np.arange(edges[i], edges[i + 1]) for i in range(k)]


def _bootstrap_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap: n days drawn as blocks of consecutive days."""
    starts = rng.integers(0, max(n - block, 1), size=math.ceil(n / block))
    return np.concatenate([np.arange(s, min(s + block, n)) for s in starts])[:n]


def _bootstrap_weights(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Bayesian block bootstrap: one exponential(1) weight per block of days, at a
    random phase. Unlike resampling days, no day is duplicated, so the trees cannot
    fit the same noise twice (monotone curves turn fitted noise into extra credit)."""
    phase = int(rng.integers(0, block))
    block_of_day = (np.arange(n) + phase) // block
    return rng.exponential(1.0, block_of_day[-1] + 1)[block_of_day]


def _cv_error_and_rounds(X, y, n_media, config, folds) -> tuple[float, int]:
    """Held-out-block squared error at the best number of rounds, and that number."""
    monotone = [1] * n_media + [0] * (X.shape[1] - n_media)
    result = lgb.cv(
        _lgb_params(config, monotone, config.seed),
        lgb.Dataset(X, y, params={"max_bin": 63, "verbose": -1}),
        num_boost_round=config.rounds,
        folds=folds,
        stratified=False,
        shuffle=False,
        metrics="l2",
    )
    curve = np.asarray(result["valid l2-mean"])
    best_round = int(np.argmin(curve)) + 1
    return float(curve[best_round - 1]), best_round


@dataclass
class TreeStoreModel:
    """One store's LightGBM fit: the full-data booster and its bootstrap refits."""

    channels: list[str]
    history_start: date
    carryover: dict[str, Carryover]
    feature_names: list[str]
    boosters: list[lgb.Booster]  # [full-data fit, bootstrap refits...]
    revenue_scale: float
    trend: np.ndarray  # straight line in days since history_start (scaled revenue)
    event_names: list[str] = field(default_factory=list)
    # What the same model credits to the channel when its spend is moved to unrelated
    # days (a placebo): the floor a real effect has to clear.
    placebo_roas: dict[str, float] = field(default_factory=dict)
    # Calibration by lift tests: a weight per member (None = all alike).
    member_weights: np.ndarray | None = None


class TreeFitter:
    """One store's data for LightGBM; `lgb_error` judges carryover candidates and
    `finish` fits the final boosters once the carryover per channel is decided."""

    def __init__(
        self,
        panel: StorePanel,
        channels: list[str],
        config: AdRoiSettings,
        start_carryover: dict[str, Carryover],
    ):
        n = len(panel.dates)
        scale = float(max(panel.revenue.mean(), 1e-9))
        ys = panel.revenue / scale
        cal = calendar_features(panel.dates, panel.dates[0])
        cal.update(panel.events)
        # Trees cannot extrapolate a trend: a straight line takes it out first and the
        # trees model what is left (calendar and media), so forecasts do not go flat.
        cal_names = [k for k in cal if k != "trend_month"]
        days = np.arange(n, dtype=float)
        self.panel, self.config, self.channels, self.n = panel, config, channels, n
        self.scale, self.ys, self.cal_names = scale, ys, cal_names
        self.C = _calendar_matrix(cal, cal_names)
        self.trend = np.polyfit(days, ys, 1)
        self.yd = ys - np.polyval(self.trend, days)
        self.start_carryover = start_carryover
        self.folds = [
            (np.setdiff1d(np.arange(n), test), test)
            for test in _block_folds(n, config.selection_folds)
        ]
        self._errors: dict[tuple, float] = {}

    def lgb_error(self, candidate: dict[str, Carryover]) -> float:
        """Held-out-block error of LightGBM with these kernels (at its best rounds)."""
        key = tuple(candidate[c] for c in self.channels)
        if key not in self._errors:
            media = _media_matrix(self.panel.spend, self.channels, candidate)
            X = np.column_stack([media, self.C])
            self._errors[key] = _cv_error_and_rounds(
                X, self.yd, len(self.channels), self.config, self.folds
            )[0]
        return self._errors[key]

    def finish(self, carry: dict[str, Carryover]) -> TreeStoreModel:
        """LightGBM on all days, bootstrap refits and the placebo floor."""
        panel, config, channels, n = self.panel, self.config, self.channels, self.n
        yd, C, rounds = self.yd, self.C, config.rounds
        X = np.column_stack([_media_matrix(panel.spend, channels, carry), C])
        rng = np.random.default_rng(config.seed)
        boosters = [_fit_booster(X, yd, len(channels), config, config.seed, rounds)]
        placebo = _placebo_roas(panel, channels, carry, C, yd, self.scale, config, rounds)
        for b in range(config.n_bootstrap):
            seed = config.seed + b + 1
            if config.bootstrap == "reweight":
                weight = _bootstrap_weights(n, config.bootstrap_block_days, rng)
                boosters.append(_fit_booster(X, yd, len(channels), config, seed, rounds, weight))
                continue
            idx = _bootstrap_indices(n, config.bootstrap_block_days, rng)
            boosters.append(_fit_booster(X[idx], yd[idx], len(channels), config, seed, rounds))
        return TreeStoreModel(
            channels=channels,
            history_start=panel.dates[0],
            carryover=carry,
            feature_names=[f"adstocked_{c}" for c in channels] + self.cal_names,
            boosters=boosters,
            revenue_scale=self.scale,
            trend=self.trend,
            event_names=[k for k in self.cal_names if k.startswith("event_")],
            placebo_roas=placebo,
        )

    def backtest(
        self, carry: dict[str, Carryover], folds: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rolling origin: train strictly before each cutoff (the trend line too),
        predict to `stop`. Returns predictions (USD) with media and of the same
        LightGBM on calendar features only, at its own best number of rounds."""
        config, channels, ys, C = self.config, self.channels, self.ys, self.C
        X = np.column_stack([_media_matrix(self.panel.spend, channels, carry), C])
        _, base_rounds = _cv_error_and_rounds(C, self.yd, 0, config, self.folds)
        base_rounds = max(base_rounds, config.min_baseline_rounds)
        days = np.arange(self.n, dtype=float)
        media_pred, base_pred = [], []
        for cut, stop in folds:
            train, test = np.arange(cut), np.arange(cut, stop)
            line = np.polyfit(days[train], ys[train], 1)
            target = ys[train] - np.polyval(line, days[train])
            media_model = _fit_booster(X[train], target, len(channels), config, config.seed)
            base_model = _fit_booster(C[train], target, 0, config, config.seed, base_rounds)
            ahead = np.polyval(line, days[test])
            media_pred.append(media_model.predict(X[test], num_threads=1) + ahead)
            base_pred.append(base_model.predict(C[test], num_threads=1) + ahead)
        return np.concatenate(media_pred) * self.scale, np.concatenate(base_pred) * self.scale


def nearest_kernel(target: Carryover, grid: tuple[Carryover, ...]) -> Carryover:
    """The grid kernel whose mean lag is closest to `target`'s."""
    return min(grid, key=lambda k: abs(k.mean_lag_days - target.mean_lag_days))


def select_carryover(fits: dict[str, TreeFitter], config: AdRoiSettings) -> dict[str, dict]:
    """Carryover per channel by held-out error, coordinate descent from each store's
    starting kernels (the regression's choice, mapped onto the LightGBM grid).

    With `pool_carryover`, a channel run by several stores gets one kernel for all of
    them: the one with the lowest held-out error summed over those stores (each store's
    error relative to its starting point, so every store counts the same); curves,
    levels and saturation stay per store. Without it, each store chooses on its own."""
    carry = {s: dict(f.start_carryover) for s, f in fits.items()}
    start = {s: f.lgb_error(carry[s]) for s, f in fits.items()}
    channels = sorted({c for f in fits.values() for c in f.channels})
    for c in channels:
        having = [s for s, f in fits.items() if c in f.channels]
        groups = [having] if config.pool_carryover else [[s] for s in having]
        for group in groups:
            scores = {}
            for kernel in config.carryover_grid:
                scores[kernel] = sum(
                    fits[s].lgb_error({**carry[s], c: kernel}) / start[s] for s in group
                )
            current = sum(fits[s].lgb_error(carry[s]) / start[s] for s in group)
            best = min(scores, key=scores.get)
            if len(group) == 1 and scores[best] >= current - 1e-12:
                continue
            for s in group:
                carry[s][c] = best
    return carry


def _placebo_roas(panel, channels, carry, C, ys, scale, config, rounds) -> dict[str, float]:
    """Per channel, the mean ROAS the model finds when that channel's spend series is
    rotated by a third and by two thirds of the history (same spend, wrong days).

    Monotone trees give any spend series a non-negative effect, so "p10 above zero"
    is no test; the effect must beat what the model invents for a placebo."""
    n = len(ys)
    out = {}
    for c in channels:
        found = []
        for shift in (n // 3, 2 * n // 3):
            spend = {**panel.spend, c: np.roll(panel.spend[c], shift)}
            media = _media_matrix(spend, channels, carry)
            X = np.column_stack([media, C])
            booster = _fit_booster(X, ys, len(channels), config, config.seed, rounds)
            zeroed = X.copy()
            zeroed[:, channels.index(c)] = 0.0
            lift = (
                booster.predict(X, num_threads=1).sum()
                - booster.predict(zeroed, num_threads=1).sum()
            )
            found.append(lift * scale / max(spend[c].sum(), 1e-9))
        out[c] = float(np.mean(found))
    return out


# --------------------------------------------------------------------------- scoring


class _AdditiveStumps:
    """A booster of stumps (one split per tree) as a sum of per-feature step functions.

    Exactly LightGBM's prediction: tree k adds `left` where x[f] <= threshold and
    `right` otherwise; NaN follows the split's default direction (missing type NaN)
    or counts as 0 (missing type None), as in LightGBM. Evaluated with one searchsorted per
    feature instead of a pass over every tree for every row, which is what the
    counterfactual scoring (hundreds of spend scenarios x refits) spends its time on.
    """

    def __init__(self, booster: lgb.Booster):
        stumps: dict[int, list[tuple[float, float, float]]] = {}
        self.constant = 0.0
        for tree in booster.dump_model()["tree_info"]:
            node = tree["tree_structure"]
            if "leaf_value" in node:
                self.constant += node["leaf_value"]
                continue
            left, right = node["left_child"], node["right_child"]
            if (
                "leaf_value" not in left
                or "leaf_value" not in right
                or node["decision_type"] != "<="
                or node.get("missing_type", "None") == "Zero"
            ):
                raise ValueError("not a booster of numeric stumps")
            threshold = float(node["threshold"])
            if node.get("missing_type", "None") == "NaN":
                nan_goes_left = bool(node.get("default_left", True))
            else:  # missing type None: LightGBM reads NaN as 0
                nan_goes_left = 0.0 <= threshold
            nan_value = left["leaf_value"] if nan_goes_left else right["leaf_value"]
            stumps.setdefault(node["split_feature"], []).append(
                (threshold, left["leaf_value"], right["leaf_value"], nan_value)
            )
        self.features: list[tuple[int, np.ndarray, np.ndarray, float]] = []
        for feature, items in sorted(stumps.items()):
            thresholds = np.array(sorted({item[0] for item in items}))
            # value[b] for the bin b = number of thresholds strictly below x:
            # every stump adds `right`, plus (left - right) where b <= its threshold's index.
            diff = np.zeros(thresholds.size)
            base = 0.0
            for threshold, left_value, right_value, _ in items:
                base += right_value
                diff[np.searchsorted(thresholds, threshold)] += left_value - right_value
            suffix = np.concatenate([np.cumsum(diff[::-1])[::-1], [0.0]])
            nan_total = float(sum(item[3] for item in items))
            self.features.append((feature, thresholds, base + suffix, nan_total))

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.full(X.shape[0], self.constant)
        for feature, thresholds, values, nan_total in self.features:
            column = X[:, feature]
            part = values[np.searchsorted(thresholds, column, side="left")]
            missing = np.isnan(column)
            if missing.any():
                part[missing] = nan_total
            out += part
        return out


def _fast_predictor(booster: lgb.Booster):
    """booster.predict, through _AdditiveStumps when the booster is made of stumps."""
    try:
        return _AdditiveStumps(booster).predict
    except ValueError:
        return lambda X: booster.predict(X, num_threads=1)


class TreeScorer:
    """Revenue of a store under altered spend, per LightGBM member."""

    def __init__(self, model: TreeStoreModel, panel: StorePanel):
        self.model = model
        self.predictors = [_fast_predictor(b) for b in model.boosters]
        cal = calendar_features(panel.dates, model.history_start)
        for name in model.event_names:
            cal[name] = panel.events.get(name, np.zeros(len(panel.dates)))
        names = [f for f in model.feature_names if not f.startswith("adstocked_")]
        self.C = _calendar_matrix(cal, names)
        self.days = np.array([(d - model.history_start).days for d in panel.dates], dtype=float)

    def revenue(self, spend: dict[str, np.ndarray], rows) -> np.ndarray:
        """Summed revenue (USD) over `rows`, one value per member."""
        m = self.model
        X = np.column_stack([_media_matrix(spend, m.channels, m.carryover), self.C])[rows]
        level = np.polyval(m.trend, self.days[rows]).sum()
        return np.array([predict(X).sum() + level for predict in self.predictors]) * (
            m.revenue_scale
        )
