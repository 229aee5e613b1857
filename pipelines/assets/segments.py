"""Customer segments (RFM) and the monthly KPI / cohort marts.

Thin: reads staging through the warehouse resource, calls models.rfm or runs a
file from sql/marts/, writes one table, attaches metadata.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from models import rfm
from pipelines.assets.ingest import PRIVACY_APPLIED, staging_key
from pipelines.metadata import OWNER, metrics, plot, preview
from pipelines.resources import RunSettings, StorepulseResource, set_as_of
from storepulse.warehouse import query, read_sql, replace_table

CUSTOMER_RFM = dg.AssetKey(["marts", "customer_rfm"])
KPI_MONTHLY = dg.AssetKey(["marts", "kpi_monthly"])
COHORT_RETENTION = dg.AssetKey(["marts", "cohort_retention"])

ORDER_COLUMNS = (
    "store_id, order_id, customer_id, order_date, created_at, total_usd, "
    "refunded_amount_usd, is_cancelled"
)


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
        return rfm.RfmSettings(
            lookback_days=self.lookback_days,
            f_weight=self.f_weight,
            m_weight=self.m_weight,
            new_within_days=self.new_within_days,
            churned_after_days=self.churned_after_days,
            high_value_usd=self.high_value_usd,
            high_value_window_days=self.high_value_window_days,
            segment_grid=tuple(
                (r.segment, r.r_min, r.r_max, r.fm_min, r.fm_max) for r in self.segment_grid
            ),
            segment_actions=dict(self.segment_actions),
        )


@dg.asset(
    key=CUSTOMER_RFM,
    group_name="segments",
    deps=[staging_key("orders"), PRIVACY_APPLIED],
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
    settings = config.settings()
    try:
        settings.validate()
    except ValueError as exc:
        raise dg.Failure(f"RFM config: {exc}") from exc
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        orders = query(
            con,
            f"select {ORDER_COLUMNS} from staging.orders where order_date < ?",
            [as_of],
        )
        scored = rfm.score_rfm(orders, as_of, settings)
        rows = replace_table(con, "marts.customer_rfm", scored)
        customers_expected = query(
            con,
            "select count(*) as n from (select distinct store_id, customer_id from staging.orders "
            "where order_date < ? and not coalesce(is_cancelled, false))",
            [as_of],
        )["n"][0]
    summary = rfm.segment_summary(scored)
    lifecycle = scored.group_by("lifecycle_stage").len().sort("lifecycle_stage")
    incomplete = scored.filter(
        pl.col("segment").is_null()
        | pl.col("lifecycle_stage").is_null()
        | pl.col("action").is_null()
    ).height
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = scored.group_by("segment").agg(
        customers=pl.len(), monetary_usd=pl.col("monetary_usd").sum()
    )
    order = [s for s in rfm.SEGMENTS if s in sizes["segment"].to_list()]
    sizes = sizes.join(pl.DataFrame({"segment": order}).with_row_index("pos"), on="segment")
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


def _build_mart(storepulse: StorepulseResource, run_settings: RunSettings, table: str):
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        set_as_of(con, as_of)
        rows = replace_table(con, f"marts.{table}", read_sql(f"marts/{table}.sql"))
        frame = query(con, f"select * from marts.{table}")
    return as_of, rows, frame


@dg.asset(
    key=KPI_MONTHLY,
    group_name="marts",
    deps=[*(staging_key(k) for k in ("orders", "ad_spend", "sessions")), PRIVACY_APPLIED],
    kinds={"duckdb", "sql"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Monthly KPIs per store: GMV, net revenue after refunds, orders, AOV, new vs "
        "returning customers, repeat-purchase rate, sessions and funnel conversion (where "
        "sessions exist), ad spend, CAC, blended ROAS and LTV/CAC of the month's acquisition "
        "cohort observed to date. Built from sql/marts/kpi_monthly.sql, data before as_of."
    ),
)
def kpi_monthly(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    as_of, rows, frame = _build_mart(storepulse, run_settings, "kpi_monthly")
    latest = (
        frame.filter(pl.col("is_complete_month"))
        .sort("month")
        .group_by("store_id", maintain_order=True)
        .last()
        .select(
            "store_id",
            "month",
            "gmv_usd",
            "net_revenue_usd",
            "orders",
            "new_customers",
            "repeat_purchase_rate",
            "cac_usd",
            "blended_roas",
        )
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
            "latest_complete_month_by_store": preview(latest, rows=50),
            "monthly_revenue": _monthly_plot(frame),
        }
    )


def _monthly_plot(frame: pl.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    for (store,), part in frame.sort("month").group_by("store_id", maintain_order=True):
        ax.plot(part["month"].to_list(), part["net_revenue_usd"].to_list(), label=store)
    ax.set_title("Net revenue per month (USD)")
    ax.grid(alpha=0.3)
    if frame.height:
        ax.legend(fontsize=7, ncols=2)
    return plot(fig)


@dg.asset(
    key=COHORT_RETENTION,
    group_name="marts",
    deps=[staging_key("orders"), PRIVACY_APPLIED],
    kinds={"duckdb", "sql"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Monthly cohort retention per store: customers by first-order month, the share "
        "ordering again in each later month k, and cumulative net revenue per customer. "
        "Built from sql/marts/cohort_retention.sql, data before as_of."
    ),
)
def cohort_retention(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    as_of, rows, frame = _build_mart(storepulse, run_settings, "cohort_retention")
    curve = (
        frame.filter(pl.col("is_complete_month"))
        .group_by("months_since_first_order")
        .agg(
            retention_rate=(
                pl.col("customers_ordering_again").sum() / pl.col("cohort_size").sum()
            ).round(4),
            cohorts=pl.len(),
        )
        .sort("months_since_first_order")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
            "retention_by_month_k_all_stores": preview(curve.head(13), rows=13),
        }
    )
