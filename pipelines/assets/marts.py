"""Marts: business tables built by the SQL files in sql/marts/ (one table per file)."""

from collections.abc import Callable

import dagster as dg
import polars as pl

from pipelines.assets.staging import staging_inputs
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot, table_metadata
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.warehouse import query, read_sql, replace_table, set_as_of

KPI_DAILY = dg.AssetKey(["marts", "kpi_daily"])
KPI_MONTHLY = dg.AssetKey(["marts", "kpi_monthly"])
COHORT_RETENTION = dg.AssetKey(["marts", "cohort_retention"])


def sql_mart(
    key: dg.AssetKey,
    deps: list[dg.AssetKey],
    description: str,
    summary: Callable[..., dict],
    queries: tuple[str, ...] = (),
) -> dg.AssetsDefinition:
    """The asset of marts.<table> (`key`), built from sql/marts/<table>.sql with the data
    before as_of. What `queries` read on the same connection (without queries: the whole
    table) goes to `summary`, whose metadata follows the rows and as_of (plots are drawn
    after the connection is closed)."""
    table = key.path[-1]

    @dg.asset(
        key=key,
        group_name="marts",
        deps=deps,
        kinds={"duckdb", "sql"},
        owners=[OWNER],
        pool="duckdb",
        description=description,
    )
    def build(
        context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
    ) -> dg.MaterializeResult:
        with storepulse.writer() as con:
            as_of = run_settings.as_of_date(con)
            set_as_of(con, as_of)
            rows = replace_table(con, f"marts.{table}", read_sql(f"marts/{table}.sql"))
            frames = [query(con, sql) for sql in queries or (f"select * from marts.{table}",)]
        return dg.MaterializeResult(metadata={**table_metadata(rows, as_of), **summary(*frames)})

    return build


_DAILY_QUERIES = (
    "select store_id, sum(gmv_usd) as gmv_usd, sum(orders) as orders, "
    "sum(ad_spend_usd) as ad_spend_usd, sum(new_customers) as new_customers "
    "from marts.kpi_daily group by store_id order by store_id",
    "select date_trunc('week', date) as week, sum(gmv_usd) as gmv_usd "
    "from marts.kpi_daily group by 1 order by 1",
)


def _daily_metadata(by_store: pl.DataFrame, weekly: pl.DataFrame) -> dict:
    return {
        "totals_by_store": preview(by_store),
        "total_gmv_usd": float(by_store["gmv_usd"].sum() or 0.0),
        "weekly_gmv": _weekly_plot(weekly),
        "stores": metrics({"count": by_store.height}),
    }


def _weekly_plot(weekly):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    if weekly.height:
        ax.plot(weekly["week"].to_list(), weekly["gmv_usd"].to_list(), color="#2563eb")
    ax.set_title("GMV per week, all stores (USD)")
    ax.grid(alpha=0.3)
    return plot(fig)


kpi_daily = sql_mart(
    KPI_DAILY,
    staging_inputs("orders", "ad_spend", "sessions"),
    "Daily KPIs per store x channel: GMV and net revenue (USD), orders, new vs returning "
    "customers, AOV, ad spend, sessions, funnel and conversion rate. Built from "
    "sql/marts/kpi_daily.sql, data strictly before as_of.",
    _daily_metadata,
    _DAILY_QUERIES,
)


def _monthly_metadata(frame: pl.DataFrame) -> dict:
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
    return {
        "latest_complete_month_by_store": preview(latest, rows=50),
        "monthly_revenue": _monthly_plot(frame),
    }


def _monthly_plot(frame: pl.DataFrame):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    for (store,), part in frame.sort("month").group_by("store_id", maintain_order=True):
        ax.plot(part["month"].to_list(), part["net_revenue_usd"].to_list(), label=store)
    ax.set_title("Net revenue per month (USD)")
    ax.grid(alpha=0.3)
    if frame.height:
        ax.legend(fontsize=7, ncols=2)
    return plot(fig)


kpi_monthly = sql_mart(
    KPI_MONTHLY,
    staging_inputs("orders", "ad_spend", "sessions"),
    "Monthly KPIs per store: GMV, net revenue after refunds, orders, AOV, new vs returning "
    "customers, repeat-purchase rate, sessions and funnel conversion (where sessions exist), "
    "ad spend, CAC, blended ROAS and LTV/CAC of the month's acquisition cohort observed to "
    "date. Built from sql/marts/kpi_monthly.sql, data before as_of.",
    _monthly_metadata,
)


def _retention_metadata(frame: pl.DataFrame) -> dict:
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
    return {"retention_by_month_k_all_stores": preview(curve.head(13), rows=13)}


cohort_retention = sql_mart(
    COHORT_RETENTION,
    staging_inputs("orders"),
    "Monthly cohort retention per store: customers by first-order month, the share ordering "
    "again in each later month k, and cumulative net revenue per customer. Built from "
    "sql/marts/cohort_retention.sql, data before as_of.",
    _retention_metadata,
)
