"""Marts: business tables built by the SQL files in sql/marts/."""

import dagster as dg

from pipelines.assets.ingest import PRIVACY_APPLIED, staging_key
from pipelines.metadata import OWNER, metrics, plot, preview
from pipelines.resources import RunSettings, StorepulseResource, set_as_of
from storepulse.warehouse import query, read_sql, replace_table

KPI_DAILY = dg.AssetKey(["marts", "kpi_daily"])


@dg.asset(
    key=KPI_DAILY,
    group_name="marts",
    deps=[*(staging_key(k) for k in ("orders", "ad_spend", "sessions")), PRIVACY_APPLIED],
    kinds={"duckdb", "sql"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Daily KPIs per store x channel: GMV and net revenue (USD), orders, new vs "
        "returning customers, AOV, ad spend, sessions, funnel and conversion rate. "
        "Built from sql/marts/kpi_daily.sql, data strictly before as_of."
    ),
)
def kpi_daily(
    context: dg.AssetExecutionContext, storepulse: StorepulseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        set_as_of(con, as_of)
        rows = replace_table(con, "marts.kpi_daily", read_sql("marts/kpi_daily.sql"))
        by_store = query(
            con,
            "select store_id, sum(gmv_usd) as gmv_usd, sum(orders) as orders, "
            "sum(ad_spend_usd) as ad_spend_usd, sum(new_customers) as new_customers "
            "from marts.kpi_daily group by store_id order by store_id",
        )
        weekly = query(
            con,
            "select date_trunc('week', date) as week, sum(gmv_usd) as gmv_usd "
            "from marts.kpi_daily group by 1 order by 1",
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "as_of": as_of.isoformat(),
            "totals_by_store": preview(by_store),
            "total_gmv_usd": float(by_store["gmv_usd"].sum() or 0.0),
            "weekly_gmv": _weekly_plot(weekly),
            "stores": metrics({"count": by_store.height}),
        }
    )


def _weekly_plot(weekly):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    if weekly.height:
        ax.plot(weekly["week"].to_list(), weekly["gmv_usd"].to_list(), color="#2563eb")
    ax.set_title("GMV per week, all stores (USD)")
    ax.grid(alpha=0.3)
    return plot(fig)
