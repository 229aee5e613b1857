"""A/B test readouts and sample-size planning.

Pure: assignments and valid orders in (polars), one row per experiment x metric x
variant out. No I/O.

Definitions (docs/growth.md states them for merchants):

- **Window.** A customer counts from their `assigned_at` to the end of the
  experiment's `end_date` (or `window_days` after assignment when the settings fix
  a window, or when the experiment has no end date: `default_window_days`), never
  past the day before `as_of`.
- **Metrics** per customer over the window: `conversion` (placed at least one
  valid order, 0/1) and `revenue_per_customer` (net revenue in USD: order totals
  minus refunds).
- **Lift** of a variant against the control: the difference of the means relative
  to the control's mean, with a confidence interval (the difference's interval over
  the control mean, so interval and p-value always agree) and a two-sided p-value
  of the difference (Welch z-test; large samples).
- **CUPED** (Deng et al. 2013): each customer's metric is adjusted by their
  pre-period spend (`pre_period_days` of net revenue before assignment),
  y - theta * (x - mean x), theta = cov(y, x) / var(x) over the experiment.
  Randomisation makes the adjustment unbiased; it removes the part of the
  variance that pre-period behaviour explains (the reported
  `variance_reduction` = 1 - var(adjusted) / var(raw); `ci_width_reduction` = how
  much narrower the interval of the difference got). Lift, interval and p-value are
  the CUPED ones; the raw ones are kept beside them.
- **Sample-ratio mismatch**: a chi-square test of the variant counts against the
  planned split (equal unless given). p < `srm_alpha` (0.001) means the assignment
  is broken and the test is not read.
- **Decision: fixed horizon, no peeking.** A test is read once, when its window
  has closed (`as_of` after its end date); before that the decision is
  `running`, whatever the interim numbers say. Then, per variant against the
  control on the primary metric: `better` or `worse` when the p-value is below
  alpha (Bonferroni-divided by the number of comparisons), else
  `no_difference`. The experiment's decision: `ship_variant` (the best variant
  that is better), `keep_control` (every variant worse or no better),
  `no_difference`, `srm` or `running`.
- **Sample size** for the next test: the customers per variant a two-sided test at
  `alpha` needs to detect a relative lift with the given power (normal
  approximation; two proportions, or two means with a known spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
from scipy import stats

METRICS = ("conversion", "revenue_per_customer")
CONTROL_NAMES = ("control", "a", "baseline", "holdout", "original")
DECISIONS = ("running", "srm", "ship_variant", "keep_control", "no_difference")

READOUT_SCHEMA = {
    "store_id": pl.String, "experiment_id": pl.String, "experiment_name": pl.String,
    "metric": pl.String, "is_primary": pl.Boolean, "variant": pl.String,
    "is_control": pl.Boolean, "customers": pl.Int64, "value": pl.Float64,
    "value_cuped": pl.Float64, "difference": pl.Float64, "lift": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
    "raw_lift": pl.Float64, "raw_ci_low": pl.Float64, "raw_ci_high": pl.Float64,
    "raw_p_value": pl.Float64, "variance_reduction": pl.Float64,
    "ci_width_reduction": pl.Float64, "mde": pl.Float64, "srm_p_value": pl.Float64,
    "status": pl.String, "window_start": pl.Date, "window_end": pl.Date,
    "decision": pl.String, "experiment_decision": pl.String, "decision_text": pl.String,
}  # fmt: skip


@dataclass(frozen=True)
class ExperimentSettings:
    """Readout settings (the Dagster asset exposes the same fields as run config)."""

    alpha: float = 0.05
    power: float = 0.8
    window_days: int | None = None  # None: until each experiment's end_date
    default_window_days: int = 28  # experiments without an end_date
    pre_period_days: int = 180
    srm_alpha: float = 0.001
    control_names: tuple[str, ...] = CONTROL_NAMES
    # Planned share of each variant; empty = equal split.
    expected_shares: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha {self.alpha} must be between 0 and 0.5")
        if not 0.5 <= self.power < 1:
            raise ValueError(f"power {self.power} must be in [0.5, 1)")
        if self.window_days is not None and self.window_days < 1:
            raise ValueError("window_days must be at least 1 (or empty)")
        if self.pre_period_days < 1:
            raise ValueError("pre_period_days must be at least 1")


# ---------------------------------------------------------------- power and sample size


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def sample_size_proportion(
    baseline_rate: float, relative_lift: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Customers per variant to detect a relative lift of a conversion rate (two-sided
    two-proportion z-test)."""
    if not 0 < baseline_rate < 1:
        raise ValueError(f"baseline rate {baseline_rate} must be between 0 and 1")
    p1, p2 = baseline_rate, baseline_rate * (1 + relative_lift)
    if not 0 < p2 < 1 or p1 == p2:
        raise ValueError(f"a lift of {relative_lift:+.1%} from {p1:.2%} is not a valid rate")
    z_a, z_b = _z(alpha, power)
    mean = (p1 + p2) / 2
    n = (
        z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    return int(math.ceil(n))


def sample_size_mean(
    baseline_mean: float,
    baseline_sd: float,
    relative_lift: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Customers per variant to detect a relative lift of a mean (revenue per customer)."""
    delta = abs(baseline_mean * relative_lift)
    if delta == 0 or baseline_sd <= 0:
        raise ValueError("need a non-zero baseline mean, lift and standard deviation")
    z_a, z_b = _z(alpha, power)
    return int(math.ceil(2 * (z_a + z_b) ** 2 * baseline_sd**2 / delta**2))


def mde_proportion(
    baseline_rate: float, customers_per_variant: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest absolute rise of a conversion rate a test of this size detects with
    the given power (inverse of sample_size_proportion)."""
    if customers_per_variant <= 0 or not 0 < baseline_rate < 1:
        return float("nan")
    z_a, z_b = _z(alpha, power)
    low, high = 1e-9, 1 - baseline_rate - 1e-9
    for _ in range(80):
        mid = (low + high) / 2
        p1, p2 = baseline_rate, baseline_rate + mid
        mean = (p1 + p2) / 2
        need = (
            z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
        ) ** 2 / mid**2
        low, high = (mid, high) if need > customers_per_variant else (low, mid)
    return high


def mde_mean(
    baseline_sd: float, customers_per_variant: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest absolute rise of a mean a test of this size detects with the given power."""
    if customers_per_variant <= 0:
        return float("nan")
    z_a, z_b = _z(alpha, power)
    return (z_a + z_b) * baseline_sd * math.sqrt(2 / customers_per_variant)


def power_proportion(
    baseline_rate: float, absolute_lift: float, customers_per_variant: float, alpha: float = 0.05
) -> float:
    """Power of the two-proportion test for a true absolute lift."""
    p1, p2 = baseline_rate, baseline_rate + absolute_lift
    se = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / customers_per_variant)
    z_a = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf(abs(absolute_lift) / se - z_a))


@dataclass(frozen=True)
class TestPlan:
    """The next test: what it needs to detect a lift with the given power."""

    metric: str
    baseline: float  # rate, or mean revenue per customer
    baseline_sd: float | None
    relative_lift: float
    alpha: float
    power: float
    customers_per_variant: int
    eligible_customers: int  # customers a test could reach per period
    period_days: int

    @property
    def periods_needed(self) -> float:
        need = 2 * self.customers_per_variant
        return need / self.eligible_customers if self.eligible_customers else float("inf")


def plan_next_test(
    outcomes: pl.DataFrame,
    eligible_customers: int,
    period_days: int,
    relative_lift: float = 0.10,
    alpha: float = 0.05,
    power: float = 0.8,
) -> TestPlan | None:
    """Sample size for a conversion test from the store's recent behaviour.

    `outcomes`: one row per customer active before a recent period, `converted`
    (0/1: ordered in the period that followed). None when nobody converted.
    """
    if outcomes.is_empty():
        return None
    rate = float(outcomes["converted"].mean())
    if not 0 < rate < 1:
        return None
    lift = relative_lift
    if rate * (1 + lift) >= 1:
        return None
    n = sample_size_proportion(rate, lift, alpha, power)
    return TestPlan(
        "conversion", rate, None, lift, alpha, power, n, eligible_customers, period_days
    )


# ---------------------------------------------------------------- readout


def _control(variants: list[str], names: tuple[str, ...]) -> str:
    lower = {v.lower(): v for v in variants}
    for name in names:
        if name in lower:
            return lower[name]
    return sorted(variants)[0]


def customer_outcomes(
    assignments: pl.DataFrame,
    orders: pl.DataFrame,
    as_of: date,
    settings: ExperimentSettings = ExperimentSettings(),
) -> pl.DataFrame:
    """Per assigned customer: window, conversion, revenue in the window and
    pre-period spend.

    assignments: store_id, experiment_id, variant, customer_id, assigned_at
    (datetime), end_date (date or null). orders: store_id, customer_id, created_at
    (datetime), net_usd (valid orders only).
    """
    data_end = datetime.combine(as_of, datetime.min.time())
    a = assignments.with_columns(pl.col("assigned_at").cast(pl.Datetime("us")))
    if settings.window_days is not None:
        end = pl.col("assigned_at") + timedelta(days=settings.window_days)
    else:
        end = pl.coalesce(
            (pl.col("end_date").cast(pl.Date) + timedelta(days=1)).cast(pl.Datetime("us")),
            pl.col("assigned_at") + timedelta(days=settings.default_window_days),
        )
    a = a.with_columns(
        end.alias("planned_end"),
        pl.min_horizontal(end, pl.lit(data_end, dtype=pl.Datetime("us"))).alias("window_end"),
        (pl.col("assigned_at") - timedelta(days=settings.pre_period_days)).alias("pre_start"),
    ).with_row_index("_row")
    o = orders.select(
        "store_id",
        "customer_id",
        pl.col("created_at").cast(pl.Datetime("us")),
        pl.col("net_usd").cast(pl.Float64),
    )
    joined = a.select(
        "_row", "store_id", "customer_id", "assigned_at", "window_end", "pre_start"
    ).join(o, on=["store_id", "customer_id"], how="inner")
    in_window = (pl.col("created_at") >= pl.col("assigned_at")) & (
        pl.col("created_at") < pl.col("window_end")
    )
    in_pre = (pl.col("created_at") >= pl.col("pre_start")) & (
        pl.col("created_at") < pl.col("assigned_at")
    )
    sums = joined.group_by("_row").agg(
        in_window.sum().alias("window_orders"),
        pl.col("net_usd").filter(in_window).sum().alias("revenue"),
        pl.col("net_usd").filter(in_pre).sum().alias("pre_spend"),
    )
    return (
        a.join(sums, on="_row", how="left")
        .with_columns(
            (pl.col("window_orders").fill_null(0) > 0).cast(pl.Float64).alias("conversion"),
            pl.col("revenue").fill_null(0.0).alias("revenue_per_customer"),
            pl.col("pre_spend").fill_null(0.0),
        )
        .drop("_row", "window_orders", "revenue")
    )


@dataclass
class Comparison:
    difference: float
    lift: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float


def _compare(y_t: np.ndarray, y_c: np.ndarray, alpha: float) -> Comparison:
    n_t, n_c = y_t.size, y_c.size
    m_t, m_c = float(y_t.mean()), float(y_c.mean())
    v_t = float(y_t.var(ddof=1)) if n_t > 1 else 0.0
    v_c = float(y_c.var(ddof=1)) if n_c > 1 else 0.0
    diff = m_t - m_c
    se = math.sqrt(v_t / n_t + v_c / n_c) if n_t and n_c else float("nan")
    z = float(stats.norm.ppf(1 - alpha / 2))
    # No spread at all (every customer the same): equal means are no difference.
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    if m_c != 0:
        # The interval of the difference, relative to the control's mean: it agrees with
        # the p-value (the control mean is taken as known, fine at these sample sizes).
        lift = diff / m_c
        low, high = (diff - z * se) / m_c, (diff + z * se) / m_c
        if m_c < 0:
            low, high = high, low
    else:
        lift = low = high = float("nan")
    return Comparison(diff, lift, low, high, p, se)


def _srm_p_value(counts: dict[str, int], shares: dict[str, float]) -> float:
    variants = sorted(counts)
    observed = np.array([counts[v] for v in variants], dtype=float)
    if observed.size < 2 or observed.sum() == 0:
        return float("nan")
    expected_share = np.array([shares.get(v, 1.0) for v in variants], dtype=float)
    expected = observed.sum() * expected_share / expected_share.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def readout(
    assignments: pl.DataFrame,
    orders: pl.DataFrame,
    as_of: date,
    settings: ExperimentSettings = ExperimentSettings(),
) -> pl.DataFrame:
    """One row per store x experiment x metric x variant (READOUT_SCHEMA)."""
    settings.validate()
    if assignments.is_empty():
        return pl.DataFrame(schema=READOUT_SCHEMA)
    per_customer = customer_outcomes(assignments, orders, as_of, settings)
    rows: list[dict] = []
    for (store, experiment), group in per_customer.group_by(
        ["store_id", "experiment_id"], maintain_order=True
    ):
        rows.extend(_read_experiment(store, experiment, group, as_of, settings))
    frame = pl.DataFrame(rows, schema=READOUT_SCHEMA, orient="row")
    return frame.sort("store_id", "experiment_id", "metric", "is_control", "variant",
                      descending=[False, False, False, True, False])  # fmt: skip


def _read_experiment(
    store: str, experiment: str, group: pl.DataFrame, as_of: date, settings: ExperimentSettings
) -> list[dict]:
    variants = sorted(group["variant"].unique().to_list())
    control = _control(variants, settings.control_names)
    treatments = [v for v in variants if v != control]
    name = (
        next((n for n in group.get_column("experiment_name").to_list() if n), None)
        if ("experiment_name" in group.columns)
        else None
    )
    primary = "conversion"
    if "primary_metric" in group.columns:
        given = [m for m in group["primary_metric"].drop_nulls().to_list() if m in METRICS]
        primary = given[0] if given else primary
    counts = dict(group.group_by("variant").len().iter_rows())
    srm_p = _srm_p_value(counts, settings.expected_shares)
    planned_end = group["planned_end"].max()
    running = planned_end is not None and planned_end > datetime.combine(as_of, datetime.min.time())
    window_start = group["assigned_at"].min().date()
    window_end = (group["window_end"].max() - timedelta(microseconds=1)).date()
    comparisons = max(1, len(treatments))
    alpha = settings.alpha / comparisons
    x_all = group["pre_spend"].to_numpy()
    results: dict[str, dict[str, dict]] = {}
    for metric in METRICS:
        y_all = group[metric].to_numpy()
        var_x = float(x_all.var(ddof=1)) if x_all.size > 1 else 0.0
        theta = float(np.cov(y_all, x_all, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
        adjusted = y_all - theta * (x_all - x_all.mean())
        var_y = float(y_all.var(ddof=1)) if y_all.size > 1 else 0.0
        reduction = 1 - float(adjusted.var(ddof=1)) / var_y if var_y > 0 else 0.0
        by_variant = {v: (group["variant"] == v).to_numpy() for v in variants}
        y_c, a_c = y_all[by_variant[control]], adjusted[by_variant[control]]
        results[metric] = {}
        for variant in variants:
            mask = by_variant[variant]
            row = {
                "store_id": store, "experiment_id": experiment, "experiment_name": name,
                "metric": metric, "is_primary": metric == primary, "variant": variant,
                "is_control": variant == control, "customers": int(mask.sum()),
                "value": float(y_all[mask].mean()), "value_cuped": float(adjusted[mask].mean()),
                "difference": None, "lift": None, "ci_low": None, "ci_high": None,
                "p_value": None, "raw_lift": None, "raw_ci_low": None, "raw_ci_high": None,
                "raw_p_value": None, "variance_reduction": reduction,
                "ci_width_reduction": None, "mde": None, "srm_p_value": srm_p,
                "status": "running" if running else "complete",
                "window_start": window_start, "window_end": window_end,
            }  # fmt: skip
            if variant != control:
                cuped = _compare(adjusted[mask], a_c, alpha)
                raw = _compare(y_all[mask], y_c, alpha)
                base = float(y_c.mean())
                n = min(int(mask.sum()), int(by_variant[control].sum()))
                if metric == "conversion":
                    mde_abs = (
                        mde_proportion(base, n, alpha, settings.power) if 0 < base < 1 else None
                    )
                else:
                    sd = math.sqrt(max(float(a_c.var(ddof=1)) if a_c.size > 1 else 0.0, 0.0))
                    mde_abs = mde_mean(sd, n, alpha, settings.power) if sd > 0 else None
                row.update(
                    difference=cuped.difference, lift=cuped.lift, ci_low=cuped.ci_low,
                    ci_high=cuped.ci_high, p_value=cuped.p_value, raw_lift=raw.lift,
                    raw_ci_low=raw.ci_low, raw_ci_high=raw.ci_high, raw_p_value=raw.p_value,
                    ci_width_reduction=1 - cuped.se / raw.se if raw.se > 0 else None,
                    mde=(mde_abs / base if mde_abs is not None and base else None),
                )  # fmt: skip
            results[metric][variant] = row
    decisions = _decide(results[primary], control, running, srm_p, alpha, settings)
    out = []
    for metric in METRICS:
        for variant, row in results[metric].items():
            verdict = _verdict(row, alpha) if variant != control else "control"
            if running:
                verdict = "running"
            elif srm_p == srm_p and srm_p < settings.srm_alpha:
                verdict = "srm"
            out.append({**row, "decision": verdict, **decisions})
    return out


def _verdict(row: dict, alpha: float) -> str:
    p = row["p_value"]
    if p is None or p != p or p >= alpha:
        return "no_difference"
    return "better" if row["difference"] > 0 else "worse"


def _decide(
    primary: dict[str, dict],
    control: str,
    running: bool,
    srm_p: float,
    alpha: float,
    settings: ExperimentSettings,
) -> dict[str, str]:
    metric = next(iter(primary.values()))["metric"]
    words = "conversion" if metric == "conversion" else "revenue per customer"
    if running:
        end = next(iter(primary.values()))["window_end"]
        return {
            "experiment_decision": "running",
            "decision_text": f"Still running until {end}: no decision before the planned end "
            "(a fixed-horizon test is read once, at the end).",
        }
    if srm_p == srm_p and srm_p < settings.srm_alpha:
        counts = ", ".join(f"{v} {r['customers']:,}" for v, r in primary.items())
        return {
            "experiment_decision": "srm",
            "decision_text": f"Do not trust this test: the variants got unequal numbers of "
            f"customers ({counts}; sample-ratio mismatch, p = {srm_p:.1g}). Check how customers "
            "were assigned.",
        }
    verdicts = {v: _verdict(r, alpha) for v, r in primary.items() if v != control}
    better = [v for v, d in verdicts.items() if d == "better"]
    if better:
        best = max(better, key=lambda v: primary[v]["lift"] or 0.0)
        row = primary[best]
        return {
            "experiment_decision": "ship_variant",
            "decision_text": f"Ship '{best}': {words} {row['lift']:+.1%} against '{control}' "
            f"(95% interval {row['ci_low']:+.1%} to {row['ci_high']:+.1%}, p = "
            f"{row['p_value']:.2g}).",
        }
    if verdicts and all(d == "worse" for d in verdicts.values()):
        return {
            "experiment_decision": "keep_control",
            "decision_text": f"Keep '{control}': every variant did worse on {words}.",
        }
    if any(d == "worse" for d in verdicts.values()):
        return {
            "experiment_decision": "keep_control",
            "decision_text": f"Keep '{control}': no variant did better on {words}, and "
            "some did worse.",
        }
    mdes = [r["mde"] for v, r in primary.items() if v != control and r["mde"] is not None]
    bound = f" larger than {max(mdes):.0%}" if mdes else ""
    return {
        "experiment_decision": "no_difference",
        "decision_text": f"No difference{bound} in {words} between the variants: keep "
        f"'{control}' or decide on other grounds.",
    }
