"""One store's slice of the warehouse, read once for its exports and its report.

Every model table is optional: a table that does not exist yet (model not built)
or has no rows for the store (no ad spend, no order lines) comes back as an empty
frame with its status, so each file and report section can say why it is empty.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date

import duckdb
import polars as pl

from storepulse.publish.growth_tables import GROWTH_TABLES
from storepulse.warehouse import query, table_exists

# DESIGN §4 minimum columns of the tables the publish layer reads.
MODEL_TABLES: dict[str, tuple[str, ...]] = {
    "marts.kpi_daily": (
        "store_id",
        "date",
        "channel",
        "gmv_usd",
        "orders",
        "new_customers",
        "returning_customers",
        "aov_usd",
        "ad_spend_usd",
        "sessions",
        "conversion_rate",
    ),
    "marts.customer_rfm": (
        "store_id",
        "customer_id",
        "recency_days",
        "frequency",
        "monetary_usd",
        "r_score",
        "f_score",
        "m_score",
        "segment",
        "lifecycle_stage",
        "action",
    ),
    "scores.churn": (
        "store_id",
        "customer_id",
        "as_of",
        "churn_probability",
        "risk_score",
        "risk_band",
        "top_reasons",
        "value_at_risk_usd",
        "model_version",
    ),
    "scores.clv": (
        "store_id",
        "customer_id",
        "p_alive",
        "expected_orders_90d",
        "expected_orders_365d",
        "predicted_revenue_365d_usd",
        "expected_next_order_date",
        "model_version",
    ),
    "scores.demand_forecast": ("store_id", "sku", "date", "p10", "p50", "p90", "model_version"),
    "marts.reorder_plan": (
        "store_id",
        "sku",
        "on_hand",
        "days_of_cover",
        "stockout_date",
        "reorder_qty",
        "abc_class",
        "aged_stock_flag",
    ),
    "marts.channel_roi": (
        "store_id",
        "channel",
        "period_start",
        "period_end",
        "spend_usd",
        "platform_roas",
        "last_click_roas",
        "incremental_roas",
        "marginal_roas",
    ),
    "marts.budget_plan": (
        "store_id",
        "channel",
        "current_spend_usd",
        "recommended_spend_usd",
        "expected_revenue_change_usd",
    ),
    # The next experiment and the lift tests behind the calibration (#14).
    "marts.lift_plan": (
        "store_id",
        "channel",
        "reason",
        "holdout_share",
        "duration_days",
        "expected_std_error",
        "expected_value_usd",
    ),
    "marts.lift_test_results": (
        "store_id",
        "channel",
        "start_date",
        "end_date",
        "measured_lift_usd",
        "effective_std_error_usd",
        "model_lift_usd",
        "calibrated_lift_usd",
        "z_score",
        "status",
    ),
    # Growth levers (#17): storepulse/publish/growth.py writes their files and sections.
    **GROWTH_TABLES,
}

# Contact details and consent read from staging.customers (consent flags are booleans).
CUSTOMER_SCHEMA: dict[str, type[pl.DataType]] = {
    "customer_id": pl.String,
    "email": pl.String,
    "phone": pl.String,
    "first_name": pl.String,
    "last_name": pl.String,
    "country": pl.String,
    "accepts_email_marketing": pl.Boolean,
    "ad_personalization_consent": pl.Boolean,
}
CUSTOMER_COLUMNS = tuple(CUSTOMER_SCHEMA)

# Churn band that DESIGN §5 calls high (risk_score > 80).
HIGH_RISK_SCORE = 80


@dataclass
class StoreTable:
    """A table's rows for one store and why it may be empty."""

    name: str
    frame: pl.DataFrame
    status: str  # "ok", "missing" (table not built), "empty" (no rows for the store)
    missing_columns: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return self.status == "ok" and not self.missing_columns


@dataclass
class StoreData:
    store_id: str
    as_of: date
    store_name: str | None
    tables: dict[str, StoreTable] = field(default_factory=dict)
    customers: pl.DataFrame = field(default_factory=pl.DataFrame)
    orders_summary: pl.DataFrame = field(default_factory=pl.DataFrame)
    # ops.store_status of this store and as_of: which method produced each output, and why.
    status: pl.DataFrame = field(default_factory=pl.DataFrame)

    def table(self, name: str) -> StoreTable:
        return self.tables[name]


def store_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every store seen in staging.stores or staging.orders (sorted)."""
    parts = [
        f"select distinct cast(store_id as varchar) as store_id from staging.{t} "
        "where store_id is not null"
        for t in ("stores", "orders")
        if table_exists(con, f"staging.{t}")
    ]
    if not parts:
        return []
    frame = query(con, " union ".join(parts) + " order by 1")
    return [str(s) for s in frame["store_id"].to_list()]


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    schema, table = name.split(".")
    frame = query(
        con,
        "select column_name from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    )
    return frame["column_name"].to_list() if frame.height else []


def read_store_table(con: duckdb.DuckDBPyConnection, name: str, store_id: str) -> StoreTable:
    """Rows of `name` for one store (exact store_id match, so no other store leaks in)."""
    if not table_exists(con, name):
        return StoreTable(name, pl.DataFrame(), "missing")
    columns = _columns(con, name)
    if "store_id" not in columns:
        return StoreTable(name, pl.DataFrame(), "missing", ("store_id",))
    schema, table = name.split(".")
    frame = query(
        con,
        # order by all: the same rows in the same order every run (ties in a report's
        # sort then always break the same way).
        f'select * from "{schema}"."{table}" where cast(store_id as varchar) = ? order by all',
        [store_id],
    )
    expected = MODEL_TABLES.get(name, ())
    missing = tuple(c for c in expected if c not in columns)
    return StoreTable(name, frame, "ok" if frame.height else "empty", missing)


def load_store_data(con: duckdb.DuckDBPyConnection, store_id: str, as_of: date) -> StoreData:
    """Everything the exports and the report need for one store."""
    store_name = None
    if table_exists(con, "staging.stores"):
        names = query(
            con,
            "select store_name from staging.stores where cast(store_id as varchar) = ? limit 1",
            [store_id],
        )
        if names.height:
            store_name = names["store_name"][0]
    data = StoreData(store_id=store_id, as_of=as_of, store_name=store_name)
    for name in MODEL_TABLES:
        data.tables[name] = read_store_table(con, name, store_id)
    kpi = data.tables["marts.kpi_daily"]
    if kpi.status == "ok" and "date" in kpi.frame.columns:
        kpi.frame = kpi.frame.filter(pl.col("date") < as_of)
        kpi.status = "ok" if kpi.frame.height else "empty"
    churn = data.tables["scores.churn"]
    if churn.usable:
        churn.frame = _latest_churn(churn.frame, as_of)
        churn.status = "ok" if churn.frame.height else "empty"
    data.customers = _customers(con, store_id)
    data.orders_summary = _orders_summary(con, store_id, as_of)
    if table_exists(con, "ops.store_status"):
        data.status = query(
            con,
            "select step, status, method, message from ops.store_status"
            " where store_id = ? and as_of = ? order by step",
            [store_id, as_of],
        )
    _drop_forgotten(con, data)
    return data


def _forgotten(con: duckdb.DuckDBPyConnection, store_id: str) -> tuple[set[str], set[str]]:
    """(customer ids, e-mail hashes) of this store's deletion requests in ops.privacy_log."""
    if not table_exists(con, "ops.privacy_log"):
        return set(), set()
    has_resolved = "resolved_customer_ids" in _columns(con, "ops.privacy_log")
    log = query(
        con,
        "select customer_id, email_sha256, "
        + ("resolved_customer_ids" if has_resolved else "null::varchar as resolved_customer_ids")
        + " from ops.privacy_log where store_id = ?",
        [store_id],
    )
    ids = {c for c in log["customer_id"].to_list() if c}
    for resolved in log["resolved_customer_ids"].to_list():
        ids.update(json.loads(resolved or "[]"))
    return ids, {h for h in log["email_sha256"].to_list() if h}


def _drop_forgotten(con: duckdb.DuckDBPyConnection, data: StoreData) -> None:
    """Belt and braces: leave out customers with a deletion request even when the
    tables were built before the request was applied (apply_privacy_requests does
    the real erasure; this keeps them out of exports whatever the run order)."""
    ids, hashes = _forgotten(con, data.store_id)
    if not ids and not hashes:
        return
    if hashes and not data.customers.is_empty():
        # Requests by e-mail not applied yet: their customer ids come from the customers rows.
        matched = data.customers.filter(_sha256(pl.col("email")).is_in(list(hashes)))
        ids |= {c for c in matched["customer_id"].to_list() if c}

    def keep(frame: pl.DataFrame, email_column: str | None = None) -> pl.DataFrame:
        if frame.is_empty() or "customer_id" not in frame.columns:
            return frame
        cid = pl.col("customer_id").cast(pl.String)
        gone = cid.is_in(list(ids)) | _sha256(cid).is_in(list(hashes))
        if email_column and email_column in frame.columns:
            gone = gone | _sha256(pl.col(email_column).cast(pl.String)).is_in(list(hashes))
        return frame.filter(~gone.fill_null(False))

    for table in data.tables.values():
        table.frame = keep(table.frame)
        if table.status == "ok" and table.frame.is_empty():
            table.status = "empty"
    data.customers = keep(data.customers, "email")
    data.orders_summary = keep(data.orders_summary)


def _sha256(expr: pl.Expr) -> pl.Expr:
    # SHA-256 of the trimmed, lower-case text (how e-mails are hashed in the log).
    return (
        expr.str.strip_chars()
        .str.to_lowercase()
        .map_elements(lambda v: hashlib.sha256(v.encode()).hexdigest(), return_dtype=pl.String)
    )


def _latest_churn(frame: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """One score per customer: the newest scoring day not after the run's as_of."""
    if frame["as_of"].dtype in (pl.Date, pl.Datetime):
        frame = frame.filter(pl.col("as_of").cast(pl.Date) <= as_of)
    return frame.sort("as_of", descending=True, nulls_last=True).unique(
        "customer_id", keep="first", maintain_order=True
    )


def _customers(con: duckdb.DuckDBPyConnection, store_id: str) -> pl.DataFrame:
    if not table_exists(con, "staging.customers"):
        return pl.DataFrame(schema=CUSTOMER_SCHEMA)
    present = _columns(con, "staging.customers")
    casts = []
    for column, dtype in CUSTOMER_SCHEMA.items():
        source = f'"{column}"' if column in present else "null"
        sql_type = "boolean" if dtype == pl.Boolean else "varchar"
        casts.append(f'cast({source} as {sql_type}) as "{column}"')
    select = ", ".join(casts)
    return query(
        con,
        f"select {select} from staging.customers where cast(store_id as varchar) = ?",
        [store_id],
    ).unique("customer_id", keep="first", maintain_order=True)


def _orders_summary(con: duckdb.DuckDBPyConnection, store_id: str, as_of: date) -> pl.DataFrame:
    """Per customer: valid orders before as_of, last order day and usual gap between orders."""
    schema = {
        "customer_id": pl.String,
        "orders": pl.Int64,
        "last_order_date": pl.Date,
        "usual_gap_days": pl.Float64,
    }
    if not table_exists(con, "staging.valid_orders"):
        return pl.DataFrame(schema=schema)
    frame = query(
        con,
        """
        with days as (
            select distinct cast(customer_id as varchar) as customer_id, order_date
            from staging.valid_orders
            where cast(store_id as varchar) = ? and order_date < ?
        )
        select customer_id,
               count(*)::bigint as orders,
               max(order_date) as last_order_date,
               case when count(*) > 1
                    then date_diff('day', min(order_date), max(order_date)) / (count(*) - 1)
               end::double as usual_gap_days
        from days group by customer_id
        """,
        [store_id, as_of],
    )
    return frame if frame.height else pl.DataFrame(schema=schema)


def audience(data: StoreData) -> pl.DataFrame:
    """One row per scored or segmented customer with contact details and consent.

    Customers come from marts.customer_rfm and scores.churn; contact details and
    consent from staging.customers, matched on customer_id (or on e-mail when the
    orders had no customer id and the e-mail became the id). No customers row means
    no consent. predicted_clv_usd and expected_next_order_date come from scores.clv
    (the predicted net revenue of the next 365 days, models/clv.py).
    """
    base = _cast_columns(
        data.table("marts.customer_rfm"),
        {
            "customer_id": pl.String,
            "segment": pl.String,
            "lifecycle_stage": pl.String,
            "monetary_usd": pl.Float64,
            "m_score": pl.Float64,
        },
    )
    churn_frame = _cast_columns(
        data.table("scores.churn"),
        {
            "customer_id": pl.String,
            "churn_probability": pl.Float64,
            "risk_score": pl.Float64,
            "risk_band": pl.String,
            "value_at_risk_usd": pl.Float64,
        },
    )
    joined = base.join(churn_frame, on="customer_id", how="full", coalesce=True)
    value_frame = _cast_columns(
        data.table("scores.clv"),
        {
            "customer_id": pl.String,
            "predicted_revenue_365d_usd": pl.Float64,
            "expected_next_order_date": pl.Date,
        },
    ).rename({"predicted_revenue_365d_usd": "predicted_clv_usd"})
    joined = joined.join(value_frame, on="customer_id", how="left")
    customers = data.customers
    by_id = joined.join(customers, on="customer_id", how="left", maintain_order="left")
    # Orders without a customer id use the normalised e-mail as the id: match those on e-mail.
    by_email = (
        customers.drop("customer_id")
        .filter(pl.col("email").is_not_null())
        .unique("email", keep="first", maintain_order=True)
        .with_columns(pl.col("email").alias("customer_id"))
    )
    fallback = joined.select("customer_id").join(
        by_email, on="customer_id", how="left", maintain_order="left"
    )
    contact = [c for c in CUSTOMER_COLUMNS if c != "customer_id"]
    out = by_id.with_columns(pl.col(c).fill_null(fallback[c]) for c in contact)
    return out.with_columns(pl.lit(data.store_id).alias("store_id")).sort("customer_id")


def _cast_columns(table: StoreTable, schema: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    """The table's `schema` columns cast to their types, or no rows of that schema when
    the table is not usable (not built, empty, or missing a column)."""
    if not table.usable:
        return pl.DataFrame(schema=schema)
    return table.frame.select([pl.col(c).cast(dtype) for c, dtype in schema.items()])


def win_back_list(audience_frame: pl.DataFrame) -> pl.DataFrame:
    """At-risk high-value customers: high churn risk (score > 80) and high value.

    High value = lifecycle_stage 'high_value' or the top spend quintile (m_score 5);
    without RFM, the top fifth of value at risk.
    """
    high_risk = (pl.col("risk_score") > HIGH_RISK_SCORE) | (
        pl.col("risk_band").str.to_lowercase() == "high"
    )
    has_rfm = audience_frame["segment"].is_not_null().any()
    if has_rfm:
        high_value = (pl.col("lifecycle_stage") == "high_value") | (pl.col("m_score") >= 5)
    else:
        cutoff = audience_frame["value_at_risk_usd"].quantile(0.8)
        high_value = pl.col("value_at_risk_usd") >= (cutoff if cutoff is not None else 0.0)
    return audience_frame.filter(high_risk.fill_null(False) & high_value.fill_null(False))


def repurchase_due_list(audience_frame: pl.DataFrame, data: StoreData) -> pl.DataFrame:
    """Repeat customers whose usual gap between orders has passed, but not twice over
    (past twice their cycle they are lapsing: the win-back list's job)."""
    summary = data.orders_summary.filter(pl.col("usual_gap_days") > 0).with_columns(
        (pl.lit(data.as_of) - pl.col("last_order_date")).dt.total_days().alias("days_since_last")
    )
    due = summary.filter(
        (pl.col("days_since_last") >= pl.col("usual_gap_days"))
        & (pl.col("days_since_last") <= 2 * pl.col("usual_gap_days"))
    ).select("customer_id", "usual_gap_days", "days_since_last")
    return audience_frame.join(due, on="customer_id", how="inner").sort("customer_id")
