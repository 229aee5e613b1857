"""Ad ROI decisions: the budget plan (same total, moved where the evidence is clear) and
the next lift test worth running (marts.lift_plan). See models.ad_roi for the method."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from models import ad_roi_ridge as ridge
from models import lift_tests as lift
from models.ad_roi import (
    AdRoiModel,
    AdRoiSettings,
    StoreAdRoiModel,
    StorePanel,
    build_panels,
    version_for,
)
from models.ad_roi_outputs import _other, _plan_window, _q, _resolve_method, _Scorer


def budget_plan(
    model: AdRoiModel,
    daily_revenue: pl.DataFrame,
    daily_spend: pl.DataFrame,
    roi: pl.DataFrame,
    events: pl.DataFrame | None = None,
    end: date | None = None,
    version: str | dict[str, str] | None = None,
    method: str | dict[str, str] | None = None,
) -> pl.DataFrame:
    """Move the same total spend of the last `plan_days` across channels, each within
    ±budget_bound of its current spend, to maximise modelled revenue.

    Greedy allocation in 1 % chunks on the mean response curve (near-optimal for
    the monotone, mostly concave curves); a channel whose incremental ROAS cannot
    be told apart from zero may be cut but never scaled up, and a channel whose
    effect cannot be told apart from another's (`identified` false in `roi`) is not
    moved at all. The expected change is then evaluated jointly with every member
    (p10/p90).
    """
    cfg = model.config
    panels = build_panels(daily_revenue, daily_spend, None, events, end)
    grid = np.round(np.arange(1 - cfg.budget_bound, 1 + cfg.budget_bound + 1e-9, 0.05), 4)
    rows = []
    for store, m in model.stores.items():
        if store not in panels:
            continue
        chosen = _resolve_method(model, store, method, only_approved=True)
        scorer = _Scorer(m, panels[store])
        window, rows_slice = _plan_window(len(scorer.panel.dates), cfg.plan_days)
        current = {c: float(scorer.spend[c][window].sum()) for c in m.channels}
        active = [c for c in m.channels if current[c] > 0]
        if not active:
            continue
        overall = roi.filter((pl.col("store_id") == store) & (pl.col("period") == "all"))
        proven, identified = {}, {}
        for r in overall.iter_rows(named=True):
            proven[r["channel"]] = bool(r["effect_distinguishable_from_zero"])
            identified[r["channel"]] = r.get("identified") is not False
        evaluate = chosen if chosen != "none" else m.best_media_method
        other = _other(evaluate, scorer)
        base = scorer.revenue(scorer.spend, rows_slice, evaluate)
        # Cross-fitting against the optimiser's curse: the allocation is chosen on one
        # half of the members and its gain measured on the other half, so the claim is
        # not the maximum of the same noisy curves it was picked on.
        choose, judge = _split_members(base.size)
        curves = {}
        for c in active:
            values = [
                scorer.revenue(scorer.scaled({c: g}, window), rows_slice, evaluate) for g in grid
            ]
            curves[c] = np.array([(v - base)[choose].mean() for v in values])
        frozen = {c for c in active if not identified.get(c, True)}
        upper = {
            c: 1.0
            if c in frozen or not proven.get(c, False)
            else _support_cap(scorer, c, window, cfg, evaluate)
            for c in active
        }
        lower = {c: 1.0 if c in frozen else 1 - cfg.budget_bound for c in active}
        marginal = _marginal_returns(
            scorer, active, window, rows_slice, cfg.marginal_step, evaluate, other
        )
        # Scale a channel up only where both media models agree that its next dollar
        # returns more than that of every channel the plan cuts; re-plan without the
        # contested ones until the two agree on every move.
        while True:
            factors = _greedy_allocation(current, curves, grid, lower, upper)
            contested = _contested_up_channels(factors, marginal)
            if not contested:
                break
            upper.update(dict.fromkeys(contested, 1.0))
        scenario = scorer.scaled(factors, window)
        total_change = (scorer.revenue(scenario, rows_slice, evaluate) - base)[judge]
        other_change = (
            float(
                np.median(
                    scorer.revenue(scenario, rows_slice, other)
                    - scorer.revenue(scorer.spend, rows_slice, other)
                )
            )
            if other
            else None
        )
        # Move money only when the gain is clear: a media model beats the baseline, the
        # held-out members' p10 of the joint gain is a fair share of the expected gain
        # (signal well above the members' spread: across sample seeds, plans whose p10
        # was a small fraction of the claim were the ones the true response did not
        # confirm, or confirmed a fraction of) and the other media model also expects a
        # gain. Otherwise the honest plan is "keep as is".
        keep_reason = None
        if chosen == "none":
            keep_reason = "no media model beats the no-media baseline for this store"
        elif _q(total_change, 0.1) <= cfg.plan_min_p10_share * max(total_change.mean(), 0.0):
            keep_reason = (
                "the gain is not clear (p10 of the members at or below "
                f"{cfg.plan_min_p10_share:.0%} of the expected gain)"
            )
        elif other_change is not None and other_change <= 0:
            keep_reason = f"the {other} second opinion expects no gain"
        if keep_reason is not None:
            factors = dict.fromkeys(active, 1.0)
            total_change = np.zeros(judge.size)
        for c in active:
            if abs(factors[c] - 1.0) > 1e-9:
                one = scorer.revenue(scorer.scaled({c: factors[c]}, window), rows_slice, evaluate)
                member_changes = (one - base)[judge]
            else:
                member_changes = np.zeros(judge.size)
            rows.append(
                {
                    "store_id": store,
                    "channel": c,
                    "method": chosen,
                    "plan_start": scorer.panel.dates[rows_slice.start],
                    "plan_end": scorer.panel.dates[-1],
                    "current_spend_usd": current[c],
                    "recommended_spend_usd": current[c] * factors[c],
                    "spend_multiplier": factors[c],
                    "expected_revenue_change_usd": float(np.mean(member_changes)),
                    "expected_revenue_change_p10": _q(member_changes, 0.1),
                    "expected_revenue_change_p90": _q(member_changes, 0.9),
                    "store_expected_revenue_change_usd": float(total_change.mean()),
                    "store_expected_revenue_change_p10": _q(total_change, 0.1),
                    "store_expected_revenue_change_p90": _q(total_change, 0.9),
                    "ridge_store_expected_revenue_change_usd": (
                        0.0
                        if keep_reason is not None
                        else float(total_change.mean())
                        if evaluate == "ridge"
                        else other_change
                    ),
                    "flag": _plan_flag(keep_reason, proven.get(c, False), c in frozen),
                    "model_version": version_for(version, store),
                }
            )
    return pl.DataFrame(rows, schema=BUDGET_PLAN_SCHEMA)


def _support_cap(scorer: _Scorer, channel: str, window, cfg: AdRoiSettings, method: str) -> float:
    """Highest spend multiplier for a channel: the bound, but no further than the
    spend levels the model has seen on at least one day in ten (its p90 of adstocked
    spend). Above that the curve rests on a handful of days, and neither trees nor a
    fitted saturation curve can say how fast returns fall off there."""
    m = scorer.model
    if method == "lightgbm" and m.trees is not None:
        kernel = m.trees.carryover[channel]
    else:
        kernel = m.regression.best.transforms[m.channels.index(channel)].carryover
    adstocked = kernel.apply(scorer.spend[channel])
    seen = adstocked[adstocked > 0]
    level = float(adstocked[window].mean())
    if seen.size == 0 or level <= 0:
        return 1.0
    ceiling = float(np.quantile(seen, cfg.support_quantile)) / level
    return float(np.clip(ceiling, 1.0, 1.0 + cfg.budget_bound))


def _split_members(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the members that choose the plan and of those that judge it (all of
    them for both when there are too few members to split)."""
    members = np.arange(n)
    if n < 4:
        return members, members
    return members[0::2], members[1::2]


def _marginal_returns(
    scorer, channels, window, rows_slice, step, method="ridge", other=None
) -> dict[str, tuple]:
    """Per channel: (method, other method) revenue per extra dollar at +step spend in
    the plan window, each the mean over its members (the other's is the method's own
    when there is no other)."""
    other = other or method
    base = {k: scorer.revenue(scorer.spend, rows_slice, k) for k in (method, other)}
    out = {}
    for c in channels:
        spend = float(scorer.spend[c][window].sum())
        up = scorer.scaled({c: 1 + step}, window)
        out[c] = tuple(
            float((scorer.revenue(up, rows_slice, k) - base[k]).mean()) / (step * spend)
            for k in (method, other)
        )
    return out


def _contested_up_channels(factors: dict[str, float], marginal: dict) -> set[str]:
    """Channels the plan scales up although one of the two models expects their next
    dollar to return no more than that of a channel the plan cuts (or nothing)."""
    up = [c for c, f in factors.items() if f > 1 + 1e-9]
    down = [c for c, f in factors.items() if f < 1 - 1e-9]
    return {
        u
        for u in up
        for k in (0, 1)
        if marginal[u][k] <= 0 or any(marginal[u][k] <= marginal[d][k] for d in down)
    }


def _plan_flag(keep_reason: str | None, proven: bool, frozen: bool = False) -> str | None:
    if keep_reason is not None:
        return f"spend kept as is: {keep_reason}"
    if frozen:
        return "effect cannot be told apart from another channel's: not moved"
    if not proven:
        return "effect not distinguishable from zero: not scaled up"
    return None


BUDGET_PLAN_SCHEMA = {
    "store_id": pl.String,
    "channel": pl.String,
    "method": pl.String,
    "plan_start": pl.Date,
    "plan_end": pl.Date,
    "current_spend_usd": pl.Float64,
    "recommended_spend_usd": pl.Float64,
    "spend_multiplier": pl.Float64,
    "expected_revenue_change_usd": pl.Float64,
    "expected_revenue_change_p10": pl.Float64,
    "expected_revenue_change_p90": pl.Float64,
    "store_expected_revenue_change_usd": pl.Float64,
    "store_expected_revenue_change_p10": pl.Float64,
    "store_expected_revenue_change_p90": pl.Float64,
    "ridge_store_expected_revenue_change_usd": pl.Float64,
    "flag": pl.String,
    "model_version": pl.String,
}


def _greedy_allocation(
    current: dict[str, float],
    curves: dict[str, np.ndarray],
    grid: np.ndarray,
    lower: dict[str, float] | float,
    upper: dict[str, float],
) -> dict[str, float]:
    """Start every channel at its lower bound, then hand out the freed budget in 1 %
    chunks to the channel with the best revenue per extra dollar."""
    channels = list(current)
    if not isinstance(lower, dict):
        lower = dict.fromkeys(channels, lower)
    total = sum(current.values())
    spend = {c: current[c] * lower[c] for c in channels}
    remaining = total - sum(spend.values())
    chunk = total * 0.01

    def revenue_at(c: str, dollars: float) -> float:
        return float(np.interp(dollars / current[c], grid, curves[c]))

    while remaining > 1e-9:
        step = min(chunk, remaining)
        best, best_gain = None, -np.inf
        for c in channels:
            room = current[c] * upper[c] - spend[c]
            if room <= 1e-9:
                continue
            add = min(step, room)
            gain = (revenue_at(c, spend[c] + add) - revenue_at(c, spend[c])) / add
            if gain > best_gain:
                best, best_gain = c, gain
        if best is None:
            break
        add = min(step, current[best] * upper[best] - spend[best])
        spend[best] += add
        remaining -= add
    return {c: spend[c] / current[c] for c in channels}


# --------------------------------------------------------------------------- next test


def lift_plan(
    model: AdRoiModel,
    daily_revenue: pl.DataFrame,
    daily_spend: pl.DataFrame,
    events: pl.DataFrame | None = None,
    end: date | None = None,
    version: str | dict[str, str] | None = None,
    roi: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per modelled store, the lift test worth running next (marts.lift_plan).

    The budget decision: reallocations of the last `plan_days` of spend (each channel
    at -bound, -bound/2, 0, +bound/2, +bound, about the same total), valued under every
    draw of the regression's (calibrated) posterior. For each channel and design
    (holdout share x duration), the expected value of the information the test would
    bring to that decision (models.lift_tests.expected_value_of_test), its standard
    error from the store's daily revenue noise (holdout_std_error), and its cost (the
    lift forgone in the holdout). The row is the design with the highest value net of
    cost; `reason` is a sentence a merchant can act on."""
    cfg = model.config
    panels = build_panels(daily_revenue, daily_spend, None, events, end)
    rows = []
    for store, m in model.stores.items():
        if store not in panels:
            continue
        panel = panels[store]
        best = _plan_next_test(m, panel, cfg, roi)
        if best is not None:
            rows.append({**best, "store_id": store, "model_version": version_for(version, store)})
    return pl.DataFrame(rows, schema=lift.LIFT_PLAN_SCHEMA)


def _plan_next_test(m: StoreAdRoiModel, panel: StorePanel, cfg: AdRoiSettings, roi) -> dict | None:
    reg = m.regression
    n = len(panel.dates)
    spend = {c: panel.spend[c] for c in m.channels}
    window, rows = _plan_window(n, cfg.plan_days)
    current = np.array([spend[c][window].sum() for c in m.channels])
    active = [j for j, c in enumerate(m.channels) if current[j] > 0]
    if not active:
        return None
    specs, roas = reg.samples(calibrated=True)
    rng = np.random.default_rng([cfg.seed, 5])
    keep = rng.choice(specs.size, size=min(200, specs.size), replace=False)
    specs, roas = specs[keep], roas[keep]
    # Revenue change per channel and spend level, per spec (effective spend x ROAS).
    b = cfg.budget_bound
    levels = np.array([1 - b, 1 - b / 2, 1.0, 1 + b / 2, 1 + b])
    unique = np.unique(specs)
    delta = np.zeros((reg.fits.__len__(), len(m.channels), levels.size))
    for k in unique:
        for j in active:
            t = reg.fits[k].transforms[j]
            base = t.effective(spend[m.channels[j]])[rows].sum()
            for i, level in enumerate(levels):
                scaled = spend[m.channels[j]].copy()
                scaled[window] *= level
                delta[k, j, i] = t.effective(scaled)[rows].sum() - base
    choices = [
        combo
        for combo in np.array(np.meshgrid(*[range(levels.size)] * len(active))).T.reshape(
            -1, len(active)
        )
        if abs(((levels[combo] - 1) * current[active]).sum()) <= 0.05 * current[active].sum()
    ]
    choices = np.array(choices)
    keep = int(np.flatnonzero((levels[choices] == 1.0).all(axis=1))[0])
    # value[s, a] = sum_c roas[s, c] * delta[spec_s, c, level of c in a]
    value = np.zeros((specs.size, len(choices)))
    for pos, j in enumerate(active):
        value += roas[:, [j]] * delta[specs][:, j, :][:, choices[:, pos]]
    noise = max(reg.daily_noise_usd, 1e-9)
    identity = _roi_flags(roi, m.store_id)
    candidates = []
    for j in active:
        c = m.channels[j]
        daily = current[j] / window.sum()
        perfect = None
        for days in cfg.lift_plan_durations:
            # The test runs at the channel's usual spend: the model's lift per dollar over
            # the latest d days that had it, times d days of the plan window's average.
            stop = _latest_spending_window(spend[c], days, 0.5 * daily * days)
            if stop is None:
                continue
            test = ridge.LiftObservation(c, stop - days, stop, stop + ridge.CARRY_OUT_DAYS, 0, 1)
            per_dollar = daily * days / spend[c][stop - days : stop].sum()
            loads = {int(k): ridge.lift_loadings(reg, spend, test, reg.fits[k])[j] for k in unique}
            lift_draws = roas[:, j] * np.array([loads[int(k)] for k in specs]) * per_dollar
            if perfect is None:
                # What knowing this channel's return exactly would be worth (EVPPI): how
                # much its uncertainty matters to the budget decision.
                tiny = 1e-6 * max(float(np.mean(np.abs(lift_draws))), 1.0)
                perfect, _ = lift.expected_value_of_test(
                    value, lift_draws, tiny, rng, keep, cfg.plan_min_p10_share
                )
            for share in cfg.lift_plan_holdout_shares:
                se = lift.holdout_std_error(noise, days, share)
                evsi, _ = lift.expected_value_of_test(
                    value, lift_draws, se, rng, keep, cfg.plan_min_p10_share
                )
                expected_lift = float(np.mean(lift_draws))
                candidates.append(
                    {
                        "channel": c,
                        "holdout_share": share,
                        "duration_days": days,
                        "expected_std_error": se,
                        "expected_value_usd": evsi,
                        "expected_lift_usd": expected_lift,
                        "expected_cost_usd": share * max(expected_lift, 0.0),
                        "value_of_perfect_information_usd": perfect,
                        "_z": abs(expected_lift) / se,
                    }
                )
    if not candidates:
        return None
    worth = [k for k in candidates if k["expected_value_usd"] > k["expected_cost_usd"]]
    if worth:
        best = max(worth, key=lambda k: k["expected_value_usd"] - k["expected_cost_usd"])
    else:
        # No test pays for itself yet: name the channel whose uncertainty matters most
        # for the decision and its most decisive design, and say it is not worth it yet.
        top = max(candidates, key=lambda k: (k["value_of_perfect_information_usd"], k["_z"]))[
            "channel"
        ]
        best = max(
            (k for k in candidates if k["channel"] == top),
            key=lambda k: (k["expected_value_usd"], k["_z"]),
        )
    best = {k: v for k, v in best.items() if k != "_z"}
    if best is None:
        return None
    c = best["channel"]
    j = m.channels.index(c)
    p10, p90 = _q(roas[:, j], 0.1), _q(roas[:, j], 0.9)
    partner = identity.get(c)
    why = f"{c} returns between {p10:.1f} and {p90:.1f} per dollar (p10-p90)"
    if partner:
        why += f" and its spend moves together with {partner}'s, so only their sum is measured"
    worth = best["expected_value_usd"] > best["expected_cost_usd"]
    design = (
        f"A {best['duration_days']}-day test holding out {best['holdout_share']:.0%} of the {c} "
        f"audience would measure its lift to about ±${best['expected_std_error']:,.0f} "
        f"(expected lift ${best['expected_lift_usd']:,.0f})"
    )
    if worth:
        best["reason"] = (
            f"{why}. {design}; it is worth about ${best['expected_value_usd']:,.0f} to the next "
            f"{cfg.plan_days} days' budget plan against ${best['expected_cost_usd']:,.0f} of "
            "sales forgone in the holdout: worth running."
        )
    else:
        best["reason"] = (
            f"{why}. {design}. Even knowing {c}'s return exactly would be worth about "
            f"${best['value_of_perfect_information_usd']:,.0f} to the next {cfg.plan_days} days' "
            f"budget plan and this test about ${best['expected_value_usd']:,.0f}, less than the "
            f"${best['expected_cost_usd']:,.0f} of sales it would forgo: not worth running yet."
        )
    return best


def _latest_spending_window(spend: np.ndarray, days: int, enough: float) -> int | None:
    """End (exclusive) of the latest `days`-day window, stepping back a week at a time,
    whose spend reaches `enough`."""
    for stop in range(spend.size, days - 1, -7):
        if spend[stop - days : stop].sum() >= enough:
            return stop
    return None


def _roi_flags(roi: pl.DataFrame | None, store: str) -> dict[str, str]:
    if roi is None or roi.is_empty() or "confounded_with" not in roi.columns:
        return {}
    mine = roi.filter(
        (pl.col("store_id") == store)
        & (pl.col("period") == "all")
        & pl.col("confounded_with").is_not_null()
    )
    return dict(zip(mine["channel"], mine["confounded_with"], strict=True))
