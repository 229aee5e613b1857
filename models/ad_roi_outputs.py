"""Ad ROI outputs per store and channel: incremental ROAS (calibrated and not), marginal
ROAS, identification, response curves. See models.ad_roi for the method."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from models import ad_roi_ridge as ridge
from models import ad_roi_trees as trees
from models.ad_roi import (
    METHODS,
    AdRoiModel,
    AdRoiSettings,
    StoreAdRoiModel,
    StorePanel,
    _resample,
    build_panels,
    version_for,
)

# --------------------------------------------------------------------------- scoring


def _resolve_method(
    model: AdRoiModel, store: str, method: str | dict | None, only_approved: bool
) -> str:
    """The method whose numbers a store gets: as asked (a name, or a dict per store from
    the lifecycle), else the recommended champion; with only_approved False, a store
    whose champion is 'none' gets its closest media method (diagnostics)."""
    m = model.stores[store]
    chosen = method.get(store) if isinstance(method, dict) else method
    if chosen is None:
        chosen = m.champion if only_approved else m.best_media_method
    if chosen not in METHODS:
        raise ValueError(f"method {chosen!r} for store {store}: use one of {', '.join(METHODS)}")
    if chosen == "lightgbm" and m.trees is None:
        chosen = "ridge"
    return chosen


class _Scorer:
    """A store's revenue under altered spend, per posterior member of a method."""

    def __init__(self, model: StoreAdRoiModel, panel: StorePanel, calibrated: bool = True):
        self.model, self.panel, self.channels = model, panel, model.channels
        self.use_calibration = calibrated
        n = len(panel.dates)
        self.spend = {c: panel.spend.get(c, np.zeros(n)) for c in self.channels}
        self.trees = trees.TreeScorer(model.trees, panel) if model.trees is not None else None
        self.baseline = ridge.baseline_revenue(model.regression, panel.dates, panel.events)
        self._sums: dict = {}

    def _spec_sums(self, spend, rows: slice, specs: np.ndarray) -> np.ndarray:
        """Per spec index (rows of the result): each channel's effective spend summed over
        rows. Channels whose spend is the actual series come from a cache."""
        fits = self.model.regression.fits
        out = np.zeros((len(fits), len(self.channels)))
        for k in np.unique(specs):
            for j, c in enumerate(self.channels):
                transform = fits[k].transforms[j]
                if spend[c] is self.spend[c]:
                    key = (int(k), c, rows.start, rows.stop)
                    if key not in self._sums:
                        self._sums[key] = transform.effective(self.spend[c])[rows].sum()
                    out[k, j] = self._sums[key]
                else:
                    out[k, j] = transform.effective(spend[c])[rows].sum()
        return out

    def revenue(self, spend, rows: slice, method: str, calibrated: bool = True) -> np.ndarray:
        """Summed revenue (USD) over `rows`, one value per member of `method`."""
        calibrated = calibrated and self.use_calibration
        if method == "lightgbm":
            values = self.trees.revenue(spend, rows)
            return _resample(values, self.model.trees.member_weights) if calibrated else values
        specs, roas = self.model.regression.samples(calibrated)
        sums = self._spec_sums(spend, rows, specs)
        return (roas * sums[specs]).sum(axis=1) + self.baseline[rows].sum()

    def groups(self, method: str, calibrated: bool = True) -> np.ndarray | None:
        """The regression's carryover/saturation choice behind each draw (None for
        LightGBM, whose refits have no such choice)."""
        if method != "ridge":
            return None
        return self.model.regression.samples(calibrated and self.use_calibration)[0]

    def scaled(self, factors: dict[str, float], period: np.ndarray) -> dict[str, np.ndarray]:
        """Spend with each channel's days in `period` scaled; unchanged channels keep
        the very array (the scorer's caches rely on it)."""
        out = {}
        for c in self.channels:
            factor = factors.get(c, 1.0)
            if factor == 1.0:
                out[c] = self.spend[c]
                continue
            s = self.spend[c].copy()
            s[period] *= factor
            out[c] = s
        return out


def _q(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q))


def _point(values: np.ndarray, method: str) -> float:
    """LightGBM: the mean over refits (bagging smooths the trees' steps); ridge: the
    posterior median (robust to the skew that ROAS >= 0 gives the draws)."""
    return float(np.mean(values)) if method == "lightgbm" else float(np.median(values))


def _other(method: str, scorer: _Scorer) -> str | None:
    if method == "ridge":
        return "lightgbm" if scorer.trees is not None else None
    return "ridge"


def _within(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Draws minus their group's mean: for the regression, the spread of the
    coefficients given each carryover/saturation choice, without the spread between
    choices (which moves channels together and would hide their trade-off)."""
    if groups is None:
        return values
    out = values.astype(float).copy()
    for g in np.unique(groups):
        rows = groups == g
        out[rows] -= out[rows].mean()
    return out


def _identification(
    inc: dict[str, np.ndarray],
    spend: dict[str, float],
    method: str,
    cfg: AdRoiSettings,
    groups: np.ndarray | None = None,
) -> dict[str, dict]:
    """Per channel: can the data tell its effect apart from the others'?

    Not when its ROAS interval is wide (p10-p90 wider than identified_max_width x
    max(ROAS, 1)) because it trades off against another channel: their incremental
    revenue draws correlate below confounded_correlation and their sum is known much
    better than either part (relative width of the pair's ROAS under 70 % of the
    channel's own). Then the pair's ROAS interval is what the data know. A wide
    interval without such a partner is plain uncertainty, and stays 'identified'.
    The correlation is taken within `groups` (the regression's carryover/saturation
    choice of each draw) when given."""
    centred = {c: _within(v, groups) for c, v in inc.items()}
    out = {}
    for c, values in inc.items():
        roas = values / spend[c]
        point = _point(roas, method)
        width = (_q(roas, 0.9) - _q(roas, 0.1)) / max(point, 1.0)
        entry = {"identified": True, "confounded_with": None, "group": None}
        if width > cfg.identified_max_width and np.std(centred[c]) > 0:
            corr = {
                d: float(np.corrcoef(centred[c], other)[0, 1])
                for d, other in centred.items()
                if d != c and np.std(other) > 0
            }
            partner = min(corr, key=corr.get) if corr else None
            if partner is not None and corr[partner] <= cfg.confounded_correlation:
                total = (values + inc[partner]) / (spend[c] + spend[partner])
                group = (_point(total, method), _q(total, 0.1), _q(total, 0.9))
                group_width = (group[2] - group[1]) / max(group[0], 1.0)
                if group_width < 0.7 * width:
                    entry.update(identified=False, confounded_with=partner, group=group)
        out[c] = entry
    return out


def channel_roi(
    model: AdRoiModel,
    daily_revenue: pl.DataFrame,
    daily_spend: pl.DataFrame,
    last_click: pl.DataFrame | None = None,
    events: pl.DataFrame | None = None,
    end: date | None = None,
    version: str | dict[str, str] | None = None,
    only_approved_stores: bool = True,
    method: str | dict[str, str] | None = None,
    calibrated: bool = True,
) -> pl.DataFrame:
    """One row per store x channel x period ('all' history, then each calendar quarter).

    incremental_roas = (revenue with actual spend - with the channel at zero in the
    period, carryover included) / spend, from the store's method (`method`: a name, or
    one per store; default the recommended champion), calibrated by the lift tests the
    model was fitted with (uncalibrated_roas: without them); p10/p90 over the method's
    posterior draws or refits. A store with spend but no media model (none fitted, too
    little history, or method 'none') still gets its platform and last-click ROAS; the
    model columns stay empty. calibrated=False: every column as if there were no lift
    tests (what the data alone say).
    """
    panels = build_panels(daily_revenue, daily_spend, last_click, events, end)
    cfg = model.config
    rows = []
    for store, panel in panels.items():
        m = model.stores.get(store)
        chosen = _resolve_method(model, store, method, only_approved_stores) if m else "none"
        scorer = _Scorer(m, panel, calibrated) if chosen != "none" else None
        all_rows = slice(0, len(panel.dates))
        if scorer is not None:
            other = _other(chosen, scorer)
            bases = _Bases(
                chosen=chosen,
                other=other,
                calibrated=scorer.revenue(scorer.spend, all_rows, chosen),
                uncalibrated=scorer.revenue(scorer.spend, all_rows, chosen, calibrated=False),
                ridge=scorer.revenue(scorer.spend, all_rows, "ridge"),
                other_values=scorer.revenue(scorer.spend, all_rows, other) if other else None,
            )
            base = bases.calibrated
            tests_used = {}
            for t in m.lift_tests:
                if t["status"] == "used":
                    tests_used[t["channel"]] = tests_used.get(t["channel"], 0) + 1
        for period_label, start, stop in _periods(panel.dates):
            period = np.zeros(len(panel.dates), dtype=bool)
            period[start:stop] = True
            spends = {c: float(panel.spend[c][period].sum()) for c in panel.channels}
            modelled = [c for c in panel.channels if scorer and c in m.channels and spends[c] > 0]
            inc, zeroed = {}, {}
            for c in modelled:
                zeroed[c] = scorer.scaled({c: 0.0}, period)
                inc[c] = base - scorer.revenue(zeroed[c], all_rows, chosen)
            groups = scorer.groups(chosen) if scorer is not None else None
            ident = _identification(inc, spends, chosen, cfg, groups) if inc else {}
            for c in panel.channels:
                spend = spends[c]
                if spend <= 0:
                    continue
                value = panel.platform_value[c][period]
                clicks = panel.last_click_revenue.get(c)
                row = dict.fromkeys(CHANNEL_ROI_SCHEMA)
                row.update(
                    {
                        "store_id": store,
                        "channel": c,
                        "period": period_label,
                        "period_start": panel.dates[start],
                        "period_end": panel.dates[stop - 1],
                        "spend_usd": spend,
                        "platform_roas": (
                            float(np.nansum(value)) / spend if np.isfinite(value).any() else None
                        ),
                        "last_click_roas": (
                            float(clicks[period].sum()) / spend if clicks is not None else None
                        ),
                        "method": chosen if m is not None else None,
                        "model_beats_baseline": m.beats_baseline if m is not None else None,
                    }
                )
                if c in inc:
                    row.update(
                        _model_columns(
                            scorer, m, c, period, spend, inc[c], zeroed[c], ident[c], bases, cfg
                        )
                    )
                    row["lift_tests_used"] = tests_used.get(c, 0)
                    row["model_version"] = version_for(version, store)
                rows.append(row)
    return pl.DataFrame(rows, schema=CHANNEL_ROI_SCHEMA)


@dataclass
class _Bases:
    """Revenue with the actual spend over all days, per method (per member)."""

    chosen: str
    other: str | None
    calibrated: np.ndarray
    uncalibrated: np.ndarray
    ridge: np.ndarray
    other_values: np.ndarray | None


def _model_columns(
    scorer: _Scorer,
    m: StoreAdRoiModel,
    c: str,
    period: np.ndarray,
    spend: float,
    inc: np.ndarray,
    zeroed: dict,
    ident: dict,
    bases: _Bases,
    cfg: AdRoiSettings,
) -> dict:
    chosen, other, every = bases.chosen, bases.other, slice(0, len(scorer.panel.dates))
    step = cfg.marginal_step
    up = scorer.scaled({c: 1.0 + step}, period)
    roas = inc / spend
    marg = (scorer.revenue(up, every, chosen) - bases.calibrated) / (step * spend)
    raw = (bases.uncalibrated - scorer.revenue(zeroed, every, chosen, calibrated=False)) / spend
    ridge_inc = (bases.ridge - scorer.revenue(zeroed, every, "ridge")) / spend
    ridge_marg = (scorer.revenue(up, every, "ridge") - bases.ridge) / (step * spend)
    point, p10, p90 = _point(roas, chosen), _q(roas, 0.1), _q(roas, 0.9)
    out = {
        "incremental_roas": point,
        "incremental_roas_p10": p10,
        "incremental_roas_p90": p90,
        "uncalibrated_roas": _point(raw, chosen),
        "uncalibrated_roas_p10": _q(raw, 0.1),
        "uncalibrated_roas_p90": _q(raw, 0.9),
        "marginal_roas": _point(marg, chosen),
        "marginal_roas_p10": _q(marg, 0.1),
        "marginal_roas_p90": _q(marg, 0.9),
        "incremental_revenue_usd": point * spend,
        "identified": ident["identified"],
        "confounded_with": ident["confounded_with"],
        "ridge_incremental_roas": _point(ridge_inc, "ridge"),
        "ridge_incremental_roas_p10": _q(ridge_inc, 0.1),
        "ridge_incremental_roas_p90": _q(ridge_inc, 0.9),
        "ridge_marginal_roas": float(np.median(ridge_marg)),
        "effect_distinguishable_from_zero": bool(
            p10
            >= max(
                cfg.min_meaningful_roas,
                m.trees.placebo_roas.get(c, 0.0) if chosen == "lightgbm" else 0.0,
            )
        ),
        "carryover": m.carryover[c].label()
        if chosen == "lightgbm"
        else m.regression.best.transforms[m.channels.index(c)].label(),
    }
    if ident["group"] is not None:
        out["group_roas"], out["group_roas_p10"], out["group_roas_p90"] = ident["group"]
    if other is not None:
        other_inc = (bases.other_values - scorer.revenue(zeroed, every, other)) / spend
        other_point = _point(other_inc, other)
        out["lightgbm_incremental_roas"] = (
            other_point if other == "lightgbm" else _point(roas, chosen)
        )
        # "Badly" = far apart relative to the size of the effect AND the other model's
        # answer outside this one's p10-p90 band.
        gap = abs(point - other_point) / max(abs(point), abs(other_point), 0.5)
        out["models_disagree"] = bool(
            gap > cfg.disagreement_tolerance and not (p10 <= other_point <= p90)
        )
    return out


CHANNEL_ROI_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "period": pl.String,
    "period_start": pl.Date,
    "period_end": pl.Date,
    "spend_usd": pl.Float64,
    "platform_roas": pl.Float64,
    "last_click_roas": pl.Float64,
    "method": pl.String,
    "incremental_roas": pl.Float64,
    "incremental_roas_p10": pl.Float64,
    "incremental_roas_p90": pl.Float64,
    "uncalibrated_roas": pl.Float64,
    "uncalibrated_roas_p10": pl.Float64,
    "uncalibrated_roas_p90": pl.Float64,
    "marginal_roas": pl.Float64,
    "marginal_roas_p10": pl.Float64,
    "marginal_roas_p90": pl.Float64,
    "incremental_revenue_usd": pl.Float64,
    "identified": pl.Boolean,
    "confounded_with": pl.String,
    "group_roas": pl.Float64,
    "group_roas_p10": pl.Float64,
    "group_roas_p90": pl.Float64,
    "lift_tests_used": pl.Int64,
    "ridge_incremental_roas": pl.Float64,
    "ridge_incremental_roas_p10": pl.Float64,
    "ridge_incremental_roas_p90": pl.Float64,
    "ridge_marginal_roas": pl.Float64,
    "lightgbm_incremental_roas": pl.Float64,
    "models_disagree": pl.Boolean,
    "effect_distinguishable_from_zero": pl.Boolean,
    "carryover": pl.String,
    "model_beats_baseline": pl.Boolean,
    "model_version": pl.String,
}


def _periods(dates: list[date]) -> list[tuple[str, int, int]]:
    """('all', whole window) then each calendar quarter with at least 28 days."""
    out = [("all", 0, len(dates))]
    start = 0
    for i in range(1, len(dates) + 1):
        if i == len(dates) or (dates[i].month - 1) // 3 != (dates[start].month - 1) // 3:
            if i - start >= 28:
                d = dates[start]
                out.append((f"{d.year}-Q{(d.month - 1) // 3 + 1}", start, i))
            start = i
    return out


def response_curves(
    model: AdRoiModel,
    daily_revenue: pl.DataFrame,
    daily_spend: pl.DataFrame,
    events: pl.DataFrame | None = None,
    end: date | None = None,
    multipliers: np.ndarray | None = None,
    only_approved_stores: bool = True,
    method: str | dict[str, str] | None = None,
) -> pl.DataFrame:
    """Modelled revenue change over the last `plan_days` when a channel's spend in that
    window is scaled by each multiplier (0..2x), with p10/p90 over the method's members."""
    multipliers = np.round(np.linspace(0.0, 2.0, 21), 3) if multipliers is None else multipliers
    panels = build_panels(daily_revenue, daily_spend, None, events, end)
    rows = []
    for store, m in model.stores.items():
        if store not in panels:
            continue
        chosen = _resolve_method(model, store, method, only_approved_stores)
        if chosen == "none":
            continue
        scorer = _Scorer(m, panels[store])
        window, rows_slice = _plan_window(len(scorer.panel.dates), model.config.plan_days)
        base = scorer.revenue(scorer.spend, rows_slice, chosen)
        base_ridge = scorer.revenue(scorer.spend, rows_slice, "ridge")
        for c in m.channels:
            current = float(scorer.spend[c][window].sum())
            for mult in multipliers:
                scenario = scorer.scaled({c: mult}, window)
                change = scorer.revenue(scenario, rows_slice, chosen) - base
                ridge_change = scorer.revenue(scenario, rows_slice, "ridge") - base_ridge
                rows.append(
                    {
                        "store_id": store,
                        "channel": c,
                        "method": chosen,
                        "spend_multiplier": float(mult),
                        "spend_usd": current * float(mult),
                        "revenue_change_usd": _point(change, chosen),
                        "revenue_change_p10": _q(change, 0.1),
                        "revenue_change_p90": _q(change, 0.9),
                        "ridge_revenue_change_usd": float(np.median(ridge_change)),
                    }
                )
    return pl.DataFrame(rows, schema=RESPONSE_CURVE_SCHEMA)


RESPONSE_CURVE_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "method": pl.String,
    "spend_multiplier": pl.Float64,
    "spend_usd": pl.Float64,
    "revenue_change_usd": pl.Float64,
    "revenue_change_p10": pl.Float64,
    "revenue_change_p90": pl.Float64,
    "ridge_revenue_change_usd": pl.Float64,
}


def _plan_window(n: int, plan_days: int) -> tuple[np.ndarray, slice]:
    start = max(n - plan_days, 0)
    window = np.zeros(n, dtype=bool)
    window[start:] = True
    return window, slice(start, n)
