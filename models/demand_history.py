"""Demand's input: staging orders, lines and inventory snapshots as one row per
store x SKU x day before `as_of` (models/demand.py explains censoring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

SERIES_KEY = ["store_id", "sku"]


@dataclass
class DemandHistory:
    """Everything the model reads, one row per store x SKU x day before `as_of`."""

    daily: pl.DataFrame  # store_id, sku, date, units, demand, censored, on_hand, ...
    series: (
        pl.DataFrame
    )  # store_id, sku, country, category, list_price_usd, margin_share, launched_at, first_date
    as_of: date
    skipped_stores: dict[str, str]  # store_id -> why it has no forecast
    notes: dict[str, str]  # store_id -> caveat (e.g. no inventory: no censoring)


def prepare_history(
    orders: pl.DataFrame,
    order_lines: pl.DataFrame,
    inventory: pl.DataFrame,
    products: pl.DataFrame,
    stores: pl.DataFrame,
    as_of: date,
) -> DemandHistory:
    """Staging frames (docs/architecture.md columns) -> DemandHistory (data < as_of).

    Stores without order lines are skipped with a reason; stores without
    inventory snapshots are forecast uncensored and noted.
    """
    orders = orders.filter(pl.col("order_date") < as_of)
    inventory = inventory.filter(pl.col("snapshot_date") < as_of)
    known_stores = sorted(
        set(stores["store_id"].to_list() if "store_id" in stores.columns else [])
        | set(orders["store_id"].to_list())
    )
    sales = _daily_sales(orders, order_lines)
    stock = (
        inventory.group_by("store_id", "sku", pl.col("snapshot_date").alias("date"))
        .agg(pl.col("on_hand").sum())
        .sort("store_id", "sku", "date")
    )
    stores_with_sales = set(sales["store_id"].unique().to_list())
    stores_with_stock = set(stock["store_id"].unique().to_list())
    skipped = {
        s: "no order lines before as_of: demand needs order_lines for this store "
        "(add an order_lines / Shopify line-item export to its landing folder)"
        for s in known_stores
        if s not in stores_with_sales
    }
    notes = {
        s: "no inventory snapshots: stock-outs cannot be detected, so demand is not "
        "censored and the reorder plan skips this store"
        for s in sorted(stores_with_sales - stores_with_stock)
    }
    sales = sales.filter(pl.col("store_id").is_in(list(stores_with_sales)))
    stock = stock.filter(pl.col("store_id").is_in(list(stores_with_sales)))
    daily = _daily_grid(sales, stock, as_of)
    series = _series_attributes(daily, products, stores)
    return DemandHistory(
        daily=daily, series=series, as_of=as_of, skipped_stores=skipped, notes=notes
    )


def _daily_sales(orders: pl.DataFrame, order_lines: pl.DataFrame) -> pl.DataFrame:
    kept = orders.filter(~pl.col("is_cancelled").fill_null(False)).select(
        "store_id",
        "order_id",
        pl.col("order_date").alias("date"),
        # Share of the order refunded; the units stay in demand, refunds are their own signal.
        pl.when(pl.col("financial_status").str.to_lowercase() == "refunded")
        .then(1.0)
        .when(pl.col("subtotal") > 0)
        .then((pl.col("refunded_amount").fill_null(0) / pl.col("subtotal")).clip(0.0, 1.0))
        .otherwise(0.0)
        .alias("refund_share"),
    )
    lines = order_lines.filter((pl.col("quantity") > 0) & pl.col("sku").is_not_null()).join(
        kept, on=["store_id", "order_id"], how="inner"
    )
    gross = pl.col("quantity") * pl.col("unit_price_usd").fill_null(0)
    return (
        lines.group_by("store_id", "sku", "date")
        .agg(
            pl.col("quantity").sum().alias("units"),
            (pl.col("quantity") * pl.col("refund_share")).sum().alias("refunded_units"),
            gross.sum().alias("gross_usd"),
            pl.col("line_discount_usd").fill_null(0).sum().alias("discount_usd"),
        )
        .with_columns((pl.col("gross_usd") - pl.col("discount_usd")).alias("revenue_usd"))
    )


def _daily_grid(sales: pl.DataFrame, stock: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Every day of every series from its first sale or snapshot to as_of - 1."""
    last_day = as_of - timedelta(days=1)
    spans = (
        pl.concat([sales.select(*SERIES_KEY, "date"), stock.select(*SERIES_KEY, "date")])
        .group_by(SERIES_KEY)
        .agg(pl.col("date").min().alias("first_date"))
    )
    grid = (
        spans.with_columns(
            pl.date_ranges(pl.col("first_date"), pl.lit(last_day), interval="1d").alias("date")
        )
        .explode("date")
        .drop_nulls("date")
    )
    grid = grid.join(sales, on=[*SERIES_KEY, "date"], how="left").join(
        stock, on=[*SERIES_KEY, "date"], how="left"
    )
    zero_fill = ["units", "refunded_units", "gross_usd", "discount_usd", "revenue_usd"]
    grid = grid.sort(*SERIES_KEY, "date").with_columns(
        *[pl.col(c).fill_null(0.0) for c in zero_fill],
        # Snapshots may skip days; the last one stands until the next.
        pl.col("on_hand").forward_fill().over(SERIES_KEY),
    )
    return grid.with_columns(
        (pl.col("on_hand").is_not_null() & (pl.col("on_hand") <= 0)).alias("censored")
    ).with_columns(
        pl.when(pl.col("censored")).then(None).otherwise(pl.col("units")).alias("demand")
    )


def _series_attributes(
    daily: pl.DataFrame, products: pl.DataFrame, stores: pl.DataFrame
) -> pl.DataFrame:
    series = daily.group_by(SERIES_KEY).agg(pl.col("first_date").first()).sort(SERIES_KEY)
    if products.height:
        attrs = products.select(
            "store_id",
            "sku",
            pl.col("category").cast(pl.String),
            pl.col("price_usd").cast(pl.Float64).alias("list_price_usd"),
            pl.when(pl.col("price_usd") > 0)
            .then(1 - pl.col("unit_cost_usd") / pl.col("price_usd"))
            .alias("margin_share"),
            pl.col("launched_at").cast(pl.Date),
        ).unique(SERIES_KEY, keep="last")
        series = series.join(attrs, on=SERIES_KEY, how="left")
    else:
        series = series.with_columns(
            pl.lit(None, pl.String).alias("category"),
            pl.lit(None, pl.Float64).alias("list_price_usd"),
            pl.lit(None, pl.Float64).alias("margin_share"),
            pl.lit(None, pl.Date).alias("launched_at"),
        )
    countries = (
        stores.select("store_id", pl.col("country").cast(pl.String)).unique("store_id")
        if stores.height and "country" in stores.columns
        else pl.DataFrame(schema={"store_id": pl.String, "country": pl.String})
    )
    return series.join(countries, on="store_id", how="left").with_columns(
        pl.col("country").fill_null("??"),
        # Lifecycle starts at launch when known, else at the first sale or snapshot.
        pl.min_horizontal("launched_at", "first_date").alias("lifecycle_start"),
    )


def concat_histories(parts: list[DemandHistory], as_of: date) -> DemandHistory:
    """Histories of different stores (in store order, at least one) as one."""
    daily = [p.daily for p in parts if p.daily.height] or [parts[0].daily]
    series = [p.series for p in parts if p.series.height] or [parts[0].series]
    return DemandHistory(
        daily=pl.concat(daily),
        series=pl.concat(series),
        as_of=as_of,
        skipped_stores={k: v for p in parts for k, v in p.skipped_stores.items()},
        notes={k: v for p in parts for k, v in p.notes.items()},
    )
