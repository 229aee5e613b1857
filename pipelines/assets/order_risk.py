"""Orders to review (group "order_risk"): scores.order_risk from models.order_risk.

Thin: reads every order (cancelled ones too: COD refusals are cancellations) and the
accounts, scores the last `lookback_days` store by store, writes one row per scored
order with its risk score and reasons, records each store's outcome in
ops.store_status (step "order_risk").
"""

from datetime import timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from models import order_risk as risk_model
from pipelines.assets.staging import staging_inputs
from pipelines.config import model_settings, validated_settings
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot, table_metadata
from pipelines.resources import RunSettings, StorepulseResource
from pipelines.store_steps import (
    attempt,
    concat_or_empty,
    done,
    skipped,
    status_preview,
    write_step,
)
from storepulse.inputs import order_risk as risk_inputs

ORDER_RISK = dg.AssetKey(["scores", "order_risk"])
STEP = "order_risk"
FLAGGED_HAVE_REASONS = "flagged_orders_have_reasons"
DEFAULTS = risk_model.RiskSettings()


class OrderRiskConfig(dg.Config):
    """Rule thresholds and weights (Launchpad-editable). Defaults =
    models.order_risk.RiskSettings; docs/growth.md explains each rule."""

    lookback_days: int = Field(default=DEFAULTS.lookback_days, description="Days of orders scored.")
    review_days: int = Field(
        default=DEFAULTS.review_days, description="orders_to_review.csv: open orders of these days."
    )
    review_lag_hours: int = Field(
        default=DEFAULTS.review_lag_hours, description="What a reviewer knows after an order."
    )
    flag_score: float = Field(default=DEFAULTS.flag_score, description="Risk score that flags.")
    small_basket_quantile: float = Field(
        default=DEFAULTS.small_basket_quantile, description="'Small' orders: below this quantile."
    )
    burst_window_minutes: int = Field(default=DEFAULTS.burst_window_minutes)
    burst_min_orders: int = Field(default=DEFAULTS.burst_min_orders)
    burst_p_value: float = Field(
        default=DEFAULTS.burst_p_value, description="Poisson p below which a cluster is a burst."
    )
    account_burst_orders: int = Field(default=DEFAULTS.account_burst_orders)
    mismatch_basket_ratio: float = Field(default=DEFAULTS.mismatch_basket_ratio)
    big_basket_ratio: float = Field(default=DEFAULTS.big_basket_ratio)
    shared_phone_accounts: int = Field(default=DEFAULTS.shared_phone_accounts)
    unusual_destination_share: float = Field(default=DEFAULTS.unusual_destination_share)
    anomaly_top_share: float = Field(default=DEFAULTS.anomaly_top_share)
    anomaly_points: float = Field(default=DEFAULTS.anomaly_points)
    min_orders_for_anomaly: int = Field(default=DEFAULTS.min_orders_for_anomaly)
    n_estimators: int = Field(default=DEFAULTS.n_estimators)
    seed: int = Field(default=DEFAULTS.seed, description="IsolationForest seed.")

    def settings(self) -> risk_model.RiskSettings:
        return model_settings(self, risk_model.RiskSettings)


@dg.asset(
    key=ORDER_RISK,
    group_name="order_risk",
    deps=staging_inputs("orders", "customers", "stores"),
    kinds={"duckdb", "polars", "scikitlearn"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            FLAGGED_HAVE_REASONS,
            asset=ORDER_RISK,
            blocking=True,
            description="Every flagged order says why (a merchant cannot act on a bare score).",
        )
    ],
    description=(
        "Risk score (0-100), flag and reasons for every order of the last lookback_days: "
        "bursts of small orders from new accounts, billing/shipping country mismatch on big "
        "first orders, first orders far above the usual basket, cash on delivery from "
        "customers who refused parcels before, one phone across many accounts, plus an "
        "IsolationForest anomaly score per store. Only what a reviewer knew within a day of "
        "the order is used, never its outcome. to_review marks the flagged open orders of "
        "the last review_days: each store's orders_to_review.csv."
    ),
)
def order_risk(
    context: dg.AssetExecutionContext,
    config: OrderRiskConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    settings = validated_settings(config, "order risk config")
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        countries = risk_inputs.load_store_countries(con)
        open_orders = risk_inputs.load_open_orders(
            con, as_of, as_of - timedelta(days=settings.review_days)
        )
        stores = sorted(set(countries) | set(risk_inputs.load_order_stores(con, as_of)))
    frames, outcomes = [], []
    for store in stores:
        # One store's orders and customers at a time (issue #18: every store's orders and
        # customers at once took this step to 6.5 GB on large).
        with storepulse.writer() as con:
            mine = risk_inputs.load_orders(con, as_of, store)
            customers = risk_inputs.load_customers(con, store)
        scored = score_store(
            store, mine, customers, countries, open_orders, as_of, settings, outcomes
        )
        del mine, customers
        if scored is not None:
            frames.append(scored)
    table = concat_or_empty(frames, risk_model.SCORE_SCHEMA)
    written = write_step(storepulse, as_of, STEP, {"scores.order_risk": table}, outcomes)
    flagged = table.filter(pl.col("flagged"))
    without_reasons = flagged.filter(pl.col("flags").is_null() | (pl.col("flags") == "")).height
    return dg.MaterializeResult(
        metadata={
            **table_metadata(written["scores.order_risk"], as_of),
            "model_version": risk_model.MODEL_VERSION,
            "store_status": status_preview(outcomes),
            "flagged": metrics(
                dict(flagged.group_by("store_id").len().sort("store_id").iter_rows())
            ),
            "top_flagged": preview(
                flagged.sort("risk_score", descending=True).select(
                    "store_id", "order_id", "created_at", "total_usd", "risk_score", "flags"
                ),
                rows=25,
            ),
            "reasons": preview(_reason_counts(flagged), rows=20),
            "risk_scores": _score_plot(table, settings.flag_score),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=FLAGGED_HAVE_REASONS,
                passed=without_reasons == 0,
                metadata={"flagged": flagged.height, "without_reasons": without_reasons},
            )
        ],
    )


def score_store(
    store: str,
    orders: pl.DataFrame,
    customers: pl.DataFrame,
    countries: dict[str, str],
    open_orders: pl.DataFrame,
    as_of,
    settings: risk_model.RiskSettings,
    outcomes: list,
) -> pl.DataFrame | None:
    """One store's scored orders (None when it failed or had nothing to score); its
    outcome goes to `outcomes`. The nightly asset and the per-store lake runs share it."""
    scored = attempt(
        outcomes, store, STEP, risk_model.score_orders, orders, customers, countries, as_of,
        settings,
    )  # fmt: skip
    if scored is None:
        return None
    if scored.is_empty():
        why = f"no orders in the {settings.lookback_days} days before {as_of}"
        outcomes.append(skipped(store, STEP, why))
        return None
    scored = risk_model.orders_to_review(scored, open_orders, as_of, settings.review_days)
    review = scored.filter(pl.col("to_review"))
    anomaly = (
        ""
        if scored["anomaly_percentile"].is_not_null().any()
        else (
            f"; too few orders for the anomaly score (under {settings.min_orders_for_anomaly}), "
            "rules only"
        )
    )
    clock = (
        "; the order times carry no time of day (dates only), so the burst rules are off"
        if store in risk_model.stores_without_clock(orders)
        else ""
    )
    summary = (
        f"{scored.height} orders scored, {int(scored['flagged'].sum())} flagged, "
        f"{review.height} open ones of the last {settings.review_days} days to "
        f"review{anomaly}{clock}"
    )
    outcomes.append(done(store, STEP, risk_model.MODEL_VERSION, summary))
    return scored


def _reason_counts(flagged: pl.DataFrame) -> pl.DataFrame:
    """How often each rule fired among the flagged orders."""
    return (
        flagged.filter(pl.col("rules").is_not_null())
        .select(pl.col("rules").str.split(",").alias("rule"))
        .explode("rule")
        .group_by("rule")
        .agg(pl.len().alias("orders"))
        .with_columns(pl.col("rule").replace(risk_model.RULES).alias("meaning"))
        .sort("orders", descending=True)
    )


def _score_plot(table: pl.DataFrame, threshold: float):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    scores = table.filter(pl.col("risk_score") > 0)["risk_score"].to_list()
    if scores:
        ax.hist(scores, bins=list(range(0, 101, 5)), color="#2563eb", edgecolor="white")
    ax.axvline(threshold, color="#dc2626", linestyle="--")
    ax.set_yscale("log")
    ax.set_title("Orders by risk score (score > 0; dashed: flagged from here)")
    ax.grid(axis="y", alpha=0.3)
    return plot(fig)
