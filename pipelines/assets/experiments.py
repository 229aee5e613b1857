"""A/B test readouts (group "experiments"): marts.experiment_readout from models.experiments.

Thin: reads assignments and the assigned customers' valid orders, reads every
experiment once its window has closed (fixed horizon), plans the next test's sample
size per store (marts.experiment_plan), records each store's outcome in
ops.store_status (step "experiments").
"""

import dagster as dg
import polars as pl
from pydantic import Field

from models import experiments as experiment_model
from pipelines.assets.staging import staging_inputs
from pipelines.config import model_settings, validated_settings
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot
from pipelines.resources import RunSettings, StorepulseResource
from pipelines.store_steps import attempt, concat_or_empty, done, skipped, step_metadata, write_step
from storepulse.inputs import experiments as experiment_inputs
from storepulse.publish import store_ids

EXPERIMENT_READOUT = dg.AssetKey(["marts", "experiment_readout"])
STEP = "experiments"
NO_SAMPLE_RATIO_MISMATCH = "no_sample_ratio_mismatch"
NO_ASSIGNMENTS = (
    "no experiment assignments file: export your A/B tool's assignments (experiment_id, "
    "variant, customer, assigned_at) to read tests here"
)
PLAN_SCHEMA = {
    "store_id": pl.String, "metric": pl.String, "baseline": pl.Float64,
    "relative_lift": pl.Float64, "alpha": pl.Float64, "power": pl.Float64,
    "customers_per_variant": pl.Int64, "eligible_customers": pl.Int64, "period_days": pl.Int64,
    "periods_needed": pl.Float64,
}  # fmt: skip


class ExperimentConfig(dg.Config):
    """Readout and planning settings (Launchpad-editable). Defaults =
    models.experiments.ExperimentSettings."""

    alpha: float = Field(default=0.05, description="Significance level (two-sided).")
    power: float = Field(default=0.8, description="Power for minimum detectable effects and plans.")
    window_days: int | None = Field(
        default=None,
        description="Days after assignment each customer is measured; empty = until the "
        "experiment's end_date.",
    )
    default_window_days: int = Field(
        default=28, description="Window of experiments that have no end_date."
    )
    pre_period_days: int = Field(
        default=180, description="Days of spend before assignment used by CUPED."
    )
    srm_alpha: float = Field(
        default=0.001, description="Sample-ratio mismatch when the chi-square p is below this."
    )
    next_test_lift: float = Field(
        default=0.10, description="Relative lift the next test should be able to detect."
    )
    next_test_period_days: int = Field(
        default=28, description="Conversion window of the next test's baseline."
    )

    def settings(self) -> experiment_model.ExperimentSettings:
        return model_settings(self, experiment_model.ExperimentSettings)


@dg.asset(
    key=EXPERIMENT_READOUT,
    group_name="experiments",
    deps=staging_inputs("orders", "experiment_assignments", "stores"),
    kinds={"duckdb", "polars", "scipy"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            NO_SAMPLE_RATIO_MISMATCH,
            asset=EXPERIMENT_READOUT,
            description="No experiment's variants got customers out of the planned split "
            "(chi-square p below srm_alpha): such a test is broken, not read.",
        )
    ],
    description=(
        "A/B test readouts per store, experiment, metric (conversion, revenue per customer) "
        "and variant over each customer's window (assignment to end_date): value, lift "
        "against the control with a 95% interval and p-value after CUPED (pre-period spend; "
        "variance reduction stated), raw figures beside them, sample-ratio-mismatch check, "
        "minimum detectable effect, and a fixed-horizon decision (read once, after the end "
        "date; 'running' before). marts.experiment_plan: customers per variant the next "
        "conversion test needs. Data before as_of."
    ),
)
def experiment_readout(
    context: dg.AssetExecutionContext,
    config: ExperimentConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    settings = validated_settings(config, "experiment config")
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        stores = store_ids(con)
        assignments = experiment_inputs.load_assignments(con, as_of)
        orders = experiment_inputs.load_orders(con, as_of)
        recent = experiment_inputs.load_recent_conversion(con, as_of, config.next_test_period_days)
    frames, plans, outcomes = [], [], []
    for store in stores:
        mine = assignments.filter(pl.col("store_id") == store)
        plan = experiment_model.plan_next_test(
            recent.filter(pl.col("store_id") == store),
            eligible_customers=recent.filter(pl.col("store_id") == store).height,
            period_days=config.next_test_period_days,
            relative_lift=config.next_test_lift,
            alpha=config.alpha,
            power=config.power,
        )
        if plan is not None:
            plans.append({"store_id": store, **_plan_row(plan)})
        if mine.is_empty():
            outcomes.append(skipped(store, STEP, NO_ASSIGNMENTS))
            continue
        frame = attempt(
            outcomes, store, STEP, experiment_model.readout,
            mine, orders.filter(pl.col("store_id") == store), as_of, settings,
        )  # fmt: skip
        if frame is None:
            continue
        frames.append(frame)
        decided = frame.select("experiment_id", "experiment_decision").unique()
        counts = dict(decided.group_by("experiment_decision").len().iter_rows())
        summary = ", ".join(f"{n} {d.replace('_', ' ')}" for d, n in sorted(counts.items()))
        read = f"{decided.height} experiment{'' if decided.height == 1 else 's'} read ({summary})"
        outcomes.append(done(store, STEP, "fixed_horizon_cuped", read))
    table = concat_or_empty(frames, experiment_model.READOUT_SCHEMA)
    plan_table = pl.DataFrame(plans, schema=PLAN_SCHEMA)
    tables = {"marts.experiment_readout": table, "marts.experiment_plan": plan_table}
    rows = write_step(storepulse, as_of, STEP, tables, outcomes)["marts.experiment_readout"]
    primary = table.filter(pl.col("is_primary") & ~pl.col("is_control"))
    srm = (
        table.filter(pl.col("experiment_decision") == "srm")
        .select("store_id", "experiment_id", "srm_p_value")
        .unique()
    )
    return dg.MaterializeResult(
        metadata={
            **step_metadata(rows, as_of, outcomes),
            "primary_metric_readout": preview(
                primary.select(
                    "store_id",
                    "experiment_id",
                    "metric",
                    "variant",
                    "customers",
                    "lift",
                    "ci_low",
                    "ci_high",
                    "p_value",
                    "variance_reduction",
                    "decision",
                ),
                rows=40,
            ),
            "decisions": metrics(
                dict(
                    table.select("store_id", "experiment_id", "experiment_decision")
                    .unique()
                    .group_by("experiment_decision")
                    .len()
                    .iter_rows()
                )
            ),
            "next_test_plan": preview(plan_table, rows=50),
            "lifts": _lift_plot(primary),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_SAMPLE_RATIO_MISMATCH,
                passed=srm.is_empty(),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"experiments": preview(srm)},
            )
        ],
    )


def _plan_row(plan: experiment_model.TestPlan) -> dict:
    return {
        "metric": plan.metric,
        "baseline": plan.baseline,
        "relative_lift": plan.relative_lift,
        "alpha": plan.alpha,
        "power": plan.power,
        "customers_per_variant": plan.customers_per_variant,
        "eligible_customers": plan.eligible_customers,
        "period_days": plan.period_days,
        "periods_needed": plan.periods_needed,
    }


def _lift_plot(primary: pl.DataFrame):
    plt = pyplot()
    shown = primary.filter(pl.col("lift").is_not_null()).with_columns(
        (pl.col("store_id") + " · " + pl.col("experiment_id") + " · " + pl.col("variant")).alias(
            "label"
        )
    )
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * shown.height + 1)))
    if shown.height:
        lift = shown["lift"].to_numpy()
        ax.errorbar(
            lift,
            range(shown.height),
            xerr=[lift - shown["ci_low"].to_numpy(), shown["ci_high"].to_numpy() - lift],
            fmt="o",
            color="#2563eb",
            ecolor="#94a3b8",
            capsize=3,
        )
        ax.set_yticks(range(shown.height), shown["label"].to_list())
    ax.axvline(0, color="#dc2626", linewidth=0.8, linestyle="--")
    ax.set_title("Lift on the primary metric with 95% intervals (CUPED)")
    ax.grid(axis="x", alpha=0.3)
    return plot(fig)
