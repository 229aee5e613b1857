"""Ad ROI: the response model (weekly) and the channel ROI / budget plan marts (nightly).

models/ad_roi: fit per store with ad spend, rolling-origin backtest against a
no-media baseline, save to the model store, record in ops.model_runs; approved
only if it beats the baseline out of time (blocking check).
marts/channel_roi + marts/budget_plan: scored from the latest approved version
(trained first when none exists, as DESIGN §7 asks of nightly_scoring).
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from models import ad_roi as ad_roi_model
from pipelines.assets.staging import PRIVACY_APPLIED, staging_key
from pipelines.metadata import OWNER, metrics, plot, preview
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.inputs.ad_roi import load_inputs
from storepulse.model_store import (
    fingerprint,
    latest_approved,
    load_model,
    make_version,
    record_run,
    save_model,
)
from storepulse.warehouse import query, replace_table

MODEL_NAME = ad_roi_model.MODEL_NAME
AD_ROI_MODEL = dg.AssetKey(["models", "ad_roi"])
CHANNEL_ROI = dg.AssetKey(["marts", "channel_roi"])
BUDGET_PLAN = dg.AssetKey(["marts", "budget_plan"])
BEATS_BASELINE_CHECK = "beats_no_media_baseline"
STAGING_INPUTS = [*(staging_key(k) for k in ("orders", "ad_spend", "stores")), PRIVACY_APPLIED]


class AdRoiConfig(dg.Config):
    """Training settings (Launchpad-editable); defaults match models.ad_roi.AdRoiConfig."""

    seed: int = 0
    n_bootstrap: int = 12
    plan_days: int = 90
    budget_bound: float = 0.30

    def as_ad_roi_config(self) -> ad_roi_model.AdRoiConfig:
        return ad_roi_model.AdRoiConfig(
            seed=self.seed,
            n_bootstrap=self.n_bootstrap,
            plan_days=self.plan_days,
            budget_bound=self.budget_bound,
        )


# --------------------------------------------------------------------------- training


def train_ad_roi(storepulse: StorepulseResource, as_of: date, config: ad_roi_model.AdRoiConfig):
    """Fit + backtest + save + record. Returns (version, model, inputs, card)."""
    with storepulse.writer() as con:
        inputs = load_inputs(con, as_of)
    # Fit outside the connection: training takes a while and needs no database.
    model = ad_roi_model.fit(
        inputs["daily_revenue"],
        inputs["daily_spend"],
        config,
        events=inputs["events"],
        end=as_of,
    )
    data_print = fingerprint(
        inputs["daily_revenue"].vstack(
            inputs["daily_spend"].select(
                "store_id", "date", pl.col("spend_usd").alias("revenue_usd")
            )
        )
    )
    version = make_version(MODEL_NAME, as_of, data_print)
    start = (
        inputs["daily_revenue"]["date"].min() if not inputs["daily_revenue"].is_empty() else as_of
    )
    window = f"{start}..{as_of - timedelta(days=1)}"
    per_store = {
        s: {
            "metrics": m.metrics,
            "baseline_metrics": m.baseline_metrics,
            "beats_baseline": m.beats_baseline,
            "carryover": {c: k.label() for c, k in m.carryover.items()},
        }
        for s, m in model.stores.items()
    }
    card = {
        "train_window": window,
        "as_of": as_of,
        "features": {s: m.feature_names for s, m in model.stores.items()},
        "params": config.__dict__ | {"carryover_grid": [k.label() for k in config.carryover_grid]},
        "metrics": model.metrics,
        "baseline_metrics": model.baseline_metrics,
        "stores": per_store,
        "skipped_stores": model.skipped,
        "data_fingerprint": data_print,
    }
    reason = _approval_reason(model)
    save_model(storepulse.paths().model_store, MODEL_NAME, version, model, card)
    with storepulse.writer() as con:
        record_run(
            con,
            model=MODEL_NAME,
            version=version,
            trained_at=datetime.now(UTC).replace(tzinfo=None),
            train_window=window,
            metrics={**model.metrics, "stores": per_store, "skipped_stores": model.skipped},
            baseline_metrics=model.baseline_metrics,
            approved=model.approved,
            reason=reason,
        )
    return version, model, inputs, card


def _approval_reason(model: ad_roi_model.AdRoiModel) -> str:
    if not model.stores:
        return "no store has ad spend to model: " + "; ".join(
            f"{s}: {why}" for s, why in model.skipped.items()
        )
    verdicts = [
        f"{s}: MAPE {m.metrics['mape']:.3f} vs no-media {m.baseline_metrics['no_media_mape']:.3f}"
        f" ({'published' if m.beats_baseline else 'not published'})"
        for s, m in model.stores.items()
    ]
    head = (
        f"{len(model.approved_stores)} of {len(model.stores)} stores beat the no-media "
        "baseline out of time"
    )
    return head + "; " + "; ".join(verdicts)


@dg.asset(
    key=AD_ROI_MODEL,
    group_name="ad_roi",
    deps=STAGING_INPUTS,
    kinds={"lightgbm", "polars", "duckdb"},
    owners=[OWNER],
    pool="duckdb",
    description=(
        "Ad ROI response model per store: daily revenue on adstocked spend per channel "
        "(carryover chosen per channel), calendar and events; LightGBM with spend monotone "
        "increasing, ridge with adstock + Hill as a second opinion, bootstrap refits for "
        "intervals. Rolling-origin backtest vs a no-media baseline; saved to "
        "model_store/ad_roi/<version>/ and recorded in ops.model_runs. Stores without ad "
        "spend get no model (listed in metadata)."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_BASELINE_CHECK,
            asset=AD_ROI_MODEL,
            blocking=True,
            description=(
                "Out-of-time revenue MAPE below the no-media baseline's, judged per store "
                "(each store has its own model); fails when no store's model beats it. "
                "Stores whose model does not beat it get no incremental numbers."
            ),
        )
    ],
)
def ad_roi_model_asset(
    context: dg.AssetExecutionContext,
    config: AdRoiConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
    version, model, inputs, card = train_ad_roi(storepulse, as_of, config.as_ad_roi_config())
    context.log.info(_approval_reason(model))
    roi = ad_roi_model.channel_roi(
        model,
        inputs["daily_revenue"],
        inputs["daily_spend"],
        inputs["last_click"],
        inputs["events"],
        end=as_of,
        version=version,
        only_approved_stores=False,
    )
    # The model's own page shows every store (diagnostics for analysts), including
    # those whose answers the marts will not publish.
    curves = ad_roi_model.response_curves(
        model,
        inputs["daily_revenue"],
        inputs["daily_spend"],
        inputs["events"],
        end=as_of,
        only_approved_stores=False,
    )
    backtest = pl.DataFrame(
        [
            {
                "store_id": s,
                "mape": m.metrics["mape"],
                "no_media_mape": m.baseline_metrics["no_media_mape"],
                "r2": m.metrics["r2"],
                "no_media_r2": m.baseline_metrics["no_media_r2"],
                "ridge_mape": m.metrics["ridge_mape"],
                "beats_baseline": m.beats_baseline,
            }
            for s, m in model.stores.items()
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "as_of": as_of.isoformat(),
            "train_window": card["train_window"],
            "approved": model.approved,
            "metrics": metrics(model.metrics),
            "baseline_metrics": metrics(model.baseline_metrics),
            "backtest_by_store": preview(backtest, rows=50),
            "stores_without_model": metrics(model.skipped),
            "roas_comparison": roas_comparison_plot(roi),
            "response_curves": response_curve_plot(curves),
            "channel_roi_all_history": preview(
                roi.filter(pl.col("period") == "all").select(_ROI_PREVIEW), rows=50
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=BEATS_BASELINE_CHECK,
                passed=model.approved,
                metadata={
                    "stores_published": ", ".join(model.approved_stores) or "none",
                    "mean_mape": model.metrics.get("mape"),
                    "mean_no_media_mape": model.baseline_metrics.get("no_media_mape"),
                    "reason": _approval_reason(model),
                },
            )
        ],
    )


# --------------------------------------------------------------------------- marts

_ROI_PREVIEW = [
    "store_id",
    "channel",
    "spend_usd",
    "platform_roas",
    "last_click_roas",
    "incremental_roas",
    "incremental_roas_p10",
    "incremental_roas_p90",
    "marginal_roas",
    "ridge_incremental_roas",
    "models_disagree",
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CHANNEL_ROI,
            group_name="ad_roi",
            deps=[AD_ROI_MODEL, *STAGING_INPUTS],
            kinds={"duckdb", "polars"},
            owners=[OWNER],
            description=(
                "Per store x channel x period ('all' history, then calendar quarters): spend, "
                "platform-reported ROAS, last-click ROAS (UTM), incremental ROAS with p10/p90 "
                "from bootstrap refits, marginal ROAS (+10 % spend), the ridge second opinion "
                "and a disagreement flag. Scored with the latest approved ad_roi model; "
                "without one, only platform and last-click ROAS are filled."
            ),
        ),
        dg.AssetSpec(
            BUDGET_PLAN,
            group_name="ad_roi",
            deps=[AD_ROI_MODEL, CHANNEL_ROI],
            kinds={"duckdb", "polars"},
            owners=[OWNER],
            description=(
                "Per store x channel: the last plan_days' spend moved across channels (same "
                "total, each within ±30 %) to maximise modelled revenue, with the expected "
                "revenue change and its p10/p90. Channels whose effect cannot be told apart "
                "from zero are flagged and never scaled up. Money moves only when the gain is "
                "clear on refits the plan was not chosen on, the ridge agrees on which "
                "channels earn more at the margin, and scaled-up spend stays within the range "
                "the history covers; otherwise spend is kept as is, with the reason."
            ),
        ),
    ],
    pool="duckdb",
    can_subset=False,
)
def ad_roi_marts(
    context: dg.AssetExecutionContext,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
):
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        version = latest_approved(con, MODEL_NAME, as_of)
        inputs = load_inputs(con, as_of)
        # A model trained on exactly this data and rejected is not retrained here.
        rejected = query(
            con,
            "select reason from ops.model_runs where model = ? and not approved "
            "and train_window like ? order by trained_at desc limit 1",
            [MODEL_NAME, f"%..{as_of - timedelta(days=1)}"],
        )
    already_rejected = rejected.height > 0
    why_not = rejected["reason"][0] if already_rejected else None
    model = None
    if version is None and not already_rejected:
        context.log.info("No approved ad_roi model for %s: training one first.", as_of)
        version, model, inputs, _ = train_ad_roi(
            storepulse, as_of, AdRoiConfig().as_ad_roi_config()
        )
        if not model.approved:
            why_not = (
                "no store could be modelled: "
                + "; ".join(f"{s}: {r}" for s, r in model.skipped.items())
                if not model.stores
                else "no store's model beat its no-media baseline out of time"
            )
            model, version = None, None
    elif version is not None:
        model, _card = load_model(storepulse.paths().model_store, MODEL_NAME, version)
    if model is None:
        context.log.warning(
            f"No approved ad_roi model ({why_not or 'none trained yet'}): "
            "channel_roi carries platform and last-click ROAS only; budget_plan is empty."
        )
        model = ad_roi_model.AdRoiModel({}, {}, ad_roi_model.AdRoiConfig(), {}, {})
    roi = ad_roi_model.channel_roi(
        model,
        inputs["daily_revenue"],
        inputs["daily_spend"],
        inputs["last_click"],
        inputs["events"],
        end=as_of,
        version=version,
    )
    plan = ad_roi_model.budget_plan(
        model,
        inputs["daily_revenue"],
        inputs["daily_spend"],
        roi,
        inputs["events"],
        end=as_of,
        version=version,
    )
    curves = ad_roi_model.response_curves(
        model, inputs["daily_revenue"], inputs["daily_spend"], inputs["events"], end=as_of
    )
    stores_with_revenue = set(inputs["daily_revenue"]["store_id"].unique().to_list())
    without_spend = sorted(
        stores_with_revenue - set(inputs["daily_spend"]["store_id"].unique().to_list())
    )
    with storepulse.writer() as con:
        roi_rows = replace_table(con, "marts.channel_roi", roi)
        plan_rows = replace_table(con, "marts.budget_plan", plan)
    notes = {s: "no ad spend: no ad-ROI model, no rows" for s in without_spend}
    yield dg.MaterializeResult(
        asset_key=CHANNEL_ROI,
        metadata={
            "dagster/row_count": roi_rows,
            "as_of": as_of.isoformat(),
            "model_version": version or "none approved",
            "stores_without_ad_spend": metrics(notes),
            "roas_comparison": roas_comparison_plot(roi),
            "response_curves": response_curve_plot(curves),
            "preview": preview(roi.filter(pl.col("period") == "all").select(_ROI_PREVIEW), 50),
            "channels_where_models_disagree": int(roi["models_disagree"].fill_null(False).sum()),
        },
    )
    yield dg.MaterializeResult(
        asset_key=BUDGET_PLAN,
        metadata={
            "dagster/row_count": plan_rows,
            "model_version": version or "none approved",
            "preview": preview(
                plan.select(
                    "store_id",
                    "channel",
                    "current_spend_usd",
                    "recommended_spend_usd",
                    "expected_revenue_change_usd",
                    "store_expected_revenue_change_usd",
                    "flag",
                ),
                50,
            ),
            "budget_plan": budget_plot(plan),
        },
    )


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roas_comparison_plot(roi: pl.DataFrame) -> dg.MetadataValue:
    """Per store: platform vs last-click vs incremental (with p10-p90) vs ridge ROAS."""
    plt = _pyplot()
    overall = roi.filter(pl.col("period") == "all").sort("store_id", "channel")
    stores = overall["store_id"].unique(maintain_order=True).to_list() or ["(no stores)"]
    fig, axes = plt.subplots(len(stores), 1, figsize=(8, 2.6 * len(stores)), squeeze=False)
    for ax, store in zip(axes[:, 0], stores, strict=True):
        rows = overall.filter(pl.col("store_id") == store)
        x = list(range(rows.height))
        width = 0.2
        series = [
            ("platform", "platform_roas", "#9ca3af"),
            ("last click", "last_click_roas", "#f59e0b"),
            ("incremental", "incremental_roas", "#2563eb"),
            ("ridge", "ridge_incremental_roas", "#10b981"),
        ]
        for i, (label, col, color) in enumerate(series):
            values = [v if v is not None else 0.0 for v in rows[col].to_list()]
            offsets = [p + (i - 1.5) * width for p in x]
            if col == "incremental_roas" and rows.height:
                low = [
                    max(v - (lo if lo is not None else v), 0)
                    for v, lo in zip(values, rows["incremental_roas_p10"].to_list(), strict=True)
                ]
                high = [
                    max((hi if hi is not None else v) - v, 0)
                    for v, hi in zip(values, rows["incremental_roas_p90"].to_list(), strict=True)
                ]
                ax.bar(offsets, values, width, label=label, color=color, yerr=[low, high])
            else:
                ax.bar(offsets, values, width, label=label, color=color)
        ax.set_xticks(x, rows["channel"].to_list())
        ax.set_ylabel("ROAS")
        ax.set_title(f"{store}: platform vs last-click vs incremental ROAS (all history)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, ncol=4)
    return plot(fig)


def response_curve_plot(curves: pl.DataFrame) -> dg.MetadataValue:
    """Per store: modelled revenue change vs spend multiplier, p10-p90 band per channel."""
    plt = _pyplot()
    stores = curves["store_id"].unique(maintain_order=True).to_list() if curves.height else []
    fig, axes = plt.subplots(
        max(len(stores), 1), 1, figsize=(8, 2.6 * max(len(stores), 1)), squeeze=False
    )
    for ax, store in zip(axes[:, 0], stores, strict=False):
        of_store = curves.filter(pl.col("store_id") == store)
        for channel in of_store["channel"].unique(maintain_order=True).to_list():
            c = of_store.filter(pl.col("channel") == channel).sort("spend_multiplier")
            x = c["spend_multiplier"].to_list()
            ax.plot(x, c["revenue_change_usd"].to_list(), label=channel)
            ax.fill_between(
                x, c["revenue_change_p10"].to_list(), c["revenue_change_p90"].to_list(), alpha=0.2
            )
        ax.axvline(1.0, color="black", lw=0.8, ls=":")
        ax.set_title(f"{store}: response curves, last plan window (x current spend)")
        ax.set_xlabel("spend multiplier")
        ax.set_ylabel("revenue change (USD)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return plot(fig)


def budget_plot(plan: pl.DataFrame) -> dg.MetadataValue:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    if plan.height:
        labels = [f"{s}\n{c}" for s, c in zip(plan["store_id"], plan["channel"], strict=True)]
        x = list(range(plan.height))
        ax.bar([p - 0.2 for p in x], plan["current_spend_usd"].to_list(), 0.4, label="current")
        ax.bar(
            [p + 0.2 for p in x], plan["recommended_spend_usd"].to_list(), 0.4, label="recommended"
        )
        ax.set_xticks(x, labels, fontsize=6, rotation=90)
        ax.legend()
    ax.set_title("Budget plan: current vs recommended spend (USD, plan window)")
    ax.grid(alpha=0.3, axis="y")
    return plot(fig)
