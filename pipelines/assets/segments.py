"""Customer segments (RFM): marts.customer_rfm from models.rfm.

Thin: reads staging through the warehouse resource, calls models.rfm, writes one
table, attaches metadata.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from models import rfm
from pipelines.assets.staging import staging_inputs
from pipelines.config import model_settings, validated_settings
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot, table_metadata
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.inputs import rfm as rfm_inputs
from storepulse.warehouse import replace_table

CUSTOMER_RFM = dg.AssetKey(["marts", "customer_rfm"])


class SegmentRule(dg.Config):
    """One cell range of the R x FM grid: customers with r_score and fm_score in range."""

    segment: str
    r_min: int
    r_max: int
    fm_min: int
    fm_max: int


class RfmConfig(dg.Config):
    """RFM settings (Launchpad-editable). Defaults = models.rfm.RfmSettings."""

    lookback_days: int | None = Field(
        default=None, description="Window for frequency and monetary; empty = whole history."
    )
    f_weight: float = Field(default=1.0, description="Weight of F in the FM score.")
    m_weight: float = Field(default=1.0, description="Weight of M in the FM score.")
    new_within_days: int = Field(
        default=90, description="Lifecycle 'new': first order within this many days."
    )
    churned_after_days: int = Field(
        default=180, description="Lifecycle 'churned': no order for longer than this."
    )
    high_value_usd: float = Field(
        default=500.0, description="Lifecycle 'high_value': net spend above this in the window."
    )
    high_value_window_days: int = Field(
        default=365, description="Window for the high-value spend threshold."
    )
    segment_grid: list[SegmentRule] = Field(
        default_factory=lambda: [
            SegmentRule(segment=s, r_min=r0, r_max=r1, fm_min=f0, fm_max=f1)
            for s, r0, r1, f0, f1 in rfm.DEFAULT_SEGMENT_GRID
        ],
        description="R x FM rules, first match wins; must cover every cell 1..5 x 1..5.",
    )
    segment_actions: dict[str, str] = Field(
        default_factory=lambda: dict(rfm.DEFAULT_SEGMENT_ACTIONS),
        description="Recommended action per segment.",
    )

    def settings(self) -> rfm.RfmSettings:
        return model_settings(
            self,
            rfm.RfmSettings,
            segment_grid=tuple(
                (r.segment, r.r_min, r.r_max, r.fm_min, r.fm_max) for r in self.segment_grid
            ),
            segment_actions=dict(self.segment_actions),
        )


@dg.asset(
    key=CUSTOMER_RFM,
    group_name="segments",
    deps=staging_inputs("orders"),
    kinds={"duckdb", "polars"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            "every_customer_segmented",
            asset=CUSTOMER_RFM,
            description="Every customer with an order before as_of has one segment, stage and action.",
        )
    ],
    description=(
        "One row per customer with an order before as_of: recency, frequency, net monetary "
        "value (USD), per-store quintile scores (r_score 5 = most recent), the 11-segment RFM "
        "map, the 4-tier lifecycle stage (new, active, high_value, churned) and a recommended "
        "action. Thresholds, windows, weights and the segment grid are run config."
    ),
)
def customer_rfm(
    context: dg.AssetExecutionContext,
    config: RfmConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    settings = validated_settings(config, "RFM config")
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        orders = rfm_inputs.load_orders(con, as_of)
        scored = rfm.score_rfm(orders, as_of, settings)
        rows = replace_table(con, "marts.customer_rfm", scored)
        customers_expected = rfm_inputs.customers_with_orders(con, as_of)
    summary = rfm.segment_summary(scored)
    lifecycle = scored.group_by("lifecycle_stage").len().sort("lifecycle_stage")
    incomplete = scored.filter(
        pl.col("segment").is_null()
        | pl.col("lifecycle_stage").is_null()
        | pl.col("action").is_null()
    ).height
    return dg.MaterializeResult(
        metadata={
            **table_metadata(rows, as_of),
            "segments": preview(summary, rows=60),
            "lifecycle_stages": metrics(dict(lifecycle.iter_rows())),
            "segment_sizes": _segment_plot(scored),
            "preview": preview(scored),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_customer_segmented",
                passed=incomplete == 0 and rows == customers_expected,
                metadata={
                    "customers_with_orders": int(customers_expected),
                    "rows": rows,
                    "rows_missing_segment_stage_or_action": incomplete,
                },
            )
        ],
    )


def _segment_plot(scored: pl.DataFrame):
    plt = pyplot()
    sizes = scored.group_by("segment").agg(
        customers=pl.len(), monetary_usd=pl.col("monetary_usd").sum()
    )
    order = [s for s in rfm.SEGMENTS if s in sizes["segment"].to_list()]
    ranks = pl.DataFrame({"segment": order}, schema={"segment": pl.String}).with_row_index("pos")
    sizes = sizes.join(ranks, on="segment")
    sizes = sizes.sort("pos")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    left.barh(sizes["segment"].to_list(), sizes["customers"].to_list(), color="#2563eb")
    left.set_title("Customers per segment")
    right.barh(sizes["segment"].to_list(), sizes["monetary_usd"].to_list(), color="#16a34a")
    right.set_title("Net spend per segment (USD)")
    left.invert_yaxis()
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    return plot(fig)
