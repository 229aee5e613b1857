"""Ad ROI (group "ad_roi"): weekly candidates, nightly channel ROI and plans.

models/ad_roi.py does the work; storepulse/lifecycle.py trains, versions, chooses
the champion per store, records and reloads, like every other model.

- models/ad_roi: per store with ad spend, the ridge (adstock + Hill, Bayesian, lift
  tests as exact pseudo-observations), LightGBM (monotone in spend, refits weighted
  by the lift tests) and the no-media baseline, backtested out of time on the same
  days. A store's champion is the first of ridge, LightGBM that beats the no-media
  baseline there (its own backtest decides); otherwise 'none': no incremental ROAS
  is published for it.
- marts/channel_roi, marts/budget_plan, marts/lift_plan, marts/lift_test_results:
  each store from its champion, falling back to platform and last-click ROAS only;
  every store's outcome in ops.store_status (step "ad_roi").
"""

import dataclasses
from datetime import date

import dagster as dg
import polars as pl
from pydantic import Field

from models import ad_roi as ad_roi_model
from models.lift_tests import LIFT_PLAN_SCHEMA, LIFT_TEST_SCHEMA
from pipelines.assets.staging import staging_inputs
from pipelines.config import model_settings
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot
from pipelines.model_assets import (
    no_failure_check,
    of_store,
    score_all,
    train_window,
    training_asset,
)
from pipelines.resources import RunSettings, StorepulseResource
from storepulse import lifecycle
from storepulse import settings as env_settings
from storepulse.inputs.ad_roi import load_inputs as load_media_inputs
from storepulse.publish.data import MODEL_TABLES
from storepulse.warehouse import query, set_as_of, table_exists

MODEL_NAME = ad_roi_model.MODEL_NAME
AD_ROI_MODEL = dg.AssetKey(["models", "ad_roi"])
CHANNEL_ROI = dg.AssetKey(["marts", "channel_roi"])
BUDGET_PLAN = dg.AssetKey(["marts", "budget_plan"])
LIFT_PLAN = dg.AssetKey(["marts", "lift_plan"])
LIFT_TEST_RESULTS = dg.AssetKey(["marts", "lift_test_results"])
CHAMPION_APPROVED = "ad_roi_champion_approved"
STAGING_INPUTS = staging_inputs("orders", "ad_spend", "stores", "lift_tests")


class AdRoiConfig(dg.Config):
    """Ad-ROI settings (Launchpad-editable). Defaults = models.ad_roi.AdRoiSettings.

    How many processes fit stores side by side is the machine's business, not the
    model's: STOREPULSE_AD_ROI_JOBS (it does not change the result, tested)."""

    seed: int = Field(default=0, description="Seed of every random draw (fits are deterministic).")
    n_bootstrap: int = Field(
        default=12, description="LightGBM refits on resampled days (its p10-p90 intervals)."
    )
    plan_days: int = Field(
        default=90, description="The budget plan and response curves cover the last this many days."
    )
    budget_bound: float = Field(
        default=0.30, description="The budget plan moves each channel by at most this share."
    )

    def settings(self) -> ad_roi_model.AdRoiSettings:
        return model_settings(self, ad_roi_model.AdRoiSettings)


# --------------------------------------------------------------------------- spec


def load_inputs(con, as_of: date) -> dict:
    """Daily revenue, spend, last-click revenue, events (storepulse.inputs.ad_roi) and
    the lift tests that ended before as_of. A test without its spend takes the
    channel's spend over the test window; one with neither is listed, not used."""
    inputs = load_media_inputs(con, as_of)
    inputs["lift_tests"], inputs["lift_tests_unusable"] = _lift_tests(con, as_of)
    return inputs


def _lift_tests(con, as_of: date) -> tuple[pl.DataFrame, dict[str, str]]:
    empty = pl.DataFrame(schema=LIFT_TEST_SCHEMA)
    if not table_exists(con, "staging.lift_tests"):
        return empty, {}
    set_as_of(con, as_of)
    tests = query(
        con,
        "select t.store_id, t.channel, t.start_date, t.end_date,"
        " coalesce(t.test_spend_usd, (select sum(a.spend_usd) from staging.ad_spend a"
        "   where a.store_id = t.store_id and lower(a.platform) = t.channel"
        "   and a.date between t.start_date and t.end_date)) as test_spend_usd,"
        " t.incremental_revenue_usd, t.std_error_usd, t.scope, t.source"
        " from staging.lift_tests t where t.end_date < getvariable('as_of')"
        " order by 1, 2, 3, 4",
    )
    if tests.is_empty():
        return empty, {}
    usable = (pl.col("test_spend_usd") > 0) & (pl.col("std_error_usd") > 0)
    unusable = {
        r["store_id"]: f"lift test {r['channel']} {r['start_date']}..{r['end_date']} not used: "
        "no test spend and no ad spend recorded in its window"
        for r in tests.filter(~usable.fill_null(False)).iter_rows(named=True)
    }
    return tests.filter(usable.fill_null(False)).cast(LIFT_TEST_SCHEMA), unusable


def _fingerprint(inputs: dict) -> str:
    return lifecycle.frame_fingerprint(
        inputs["daily_revenue"], inputs["daily_spend"], inputs["lift_tests"]
    )


def _train(inputs: dict, as_of: date, config: AdRoiConfig) -> lifecycle.Candidates:
    if inputs["daily_revenue"].is_empty():
        raise lifecycle.NothingToTrain(f"no orders before {as_of}")
    # Processes are the machine's setting, not part of the version.
    settings = dataclasses.replace(config.settings(), n_jobs=env_settings.ad_roi_jobs())
    model = ad_roi_model.fit(
        inputs["daily_revenue"], inputs["daily_spend"], settings, events=inputs["events"],
        end=as_of, lift_tests=inputs["lift_tests"] if inputs["lift_tests"].height else None,
    )  # fmt: skip
    backtests = ad_roi_model.backtest_metrics(model)
    per_store: dict[str, dict[str, dict]] = {}
    for row in backtests.iter_rows(named=True):
        per_store.setdefault(row["store_id"], {})[row["method"]] = _candidate(row)
    overall = {}
    for method in SPEC_METHODS:
        rows = backtests.filter(pl.col("method") == method)
        if rows.height:
            overall[method] = {
                **{k: float(rows[k].mean()) for k in ("wape", "mape", "r2", "weekly_mape")},
                "n": int(rows["days"].sum()),
                "stores": rows.height,
                # The global champion (for stores without a backtest of their own)
                # must beat the no-media baseline in most stores that have one.
                "beats_none": bool(rows["beats_none"].mean() > 0.5),
            }
    unavailable = {}
    if not model.stores:
        why = "; ".join(f"{s}: {r}" for s, r in model.skipped.items()) or "no store"
        unavailable = {m: f"no store could be modelled ({why})" for m in ("ridge", "lightgbm")}
        overall["none"] = {"wape": None, "n": 0}
    elif "lightgbm" not in settings.methods:
        unavailable["lightgbm"] = "not among the settings' methods"
    notes = dict(model.skipped)
    for store, note in inputs["lift_tests_unusable"].items():
        notes[store] = f"{notes[store]}; {note}" if store in notes else note
    return lifecycle.Candidates(
        artifact=model,
        overall=overall,
        per_store=per_store,
        train_window=train_window(inputs["daily_revenue"]["date"], as_of),
        unavailable=unavailable,
        backtest_cutoff=None,
        card={
            "features": {s: m.feature_names for s, m in model.stores.items()},
            "carryover": {
                s: {c: k.label() for c, k in m.carryover.items()} for s, m in model.stores.items()
            },
            "lift_tests": {s: m.lift_tests for s, m in model.stores.items()},
        },
        run_metrics={
            "stores_modelled": len(model.stores),
            "stores_beating_baseline": len(model.approved_stores),
        },
        store_notes=notes,
        report={"model": model, "inputs": inputs, "as_of": as_of},
    )


def _candidate(row: dict) -> dict:
    return {
        "wape": row["wape"],
        "mape": row["mape"],
        "r2": row["r2"],
        "weekly_mape": row["weekly_mape"],
        "n": row["days"],
        "beats_none": row["beats_none"],
    }


def _beats(challenger: dict, incumbent: dict) -> bool:
    """The ad-ROI rule: a media method wins where it beats the no-media baseline out of
    time, and the ridge (calibrated, with intervals that cover) is preferred to LightGBM
    whenever both do (models.ad_roi.AdRoiSettings.method_preference)."""
    return bool(challenger.get("beats_none"))


# Simplest first; with _beats, the first of ridge, LightGBM that beats none wins.
SPEC_METHODS = ("none", "lightgbm", "ridge")
AD_ROI_SPEC = lifecycle.ModelSpec(
    name=MODEL_NAME,
    methods=SPEC_METHODS,
    primary="wape",
    higher_is_better=False,
    min_gain=0.0,
    min_store_n=1,  # each store has its own model: its own backtest always decides
    code_version="ad_roi-2",
    load=load_inputs,
    train=_train,
    fingerprint=_fingerprint,
    beats=_beats,
    regression_margin=0.25,  # a day's revenue error: a clear drop, not weekly noise
    labels={
        "none": "the no-media baseline (platform and last-click ROAS only)",
        "lightgbm": "LightGBM",
        "ridge": "the calibrated ridge",
    },
)


# --------------------------------------------------------------------------- weekly


def _model_metadata(release: lifecycle.Release) -> dict:
    """The training run's diagnostics for analysts: every modelled store's best media
    method, including the stores whose numbers the marts will not publish."""
    model: ad_roi_model.AdRoiModel = release.artifact
    meta = {"stores_without_model": metrics(release.card.get("store_notes", {}))}
    report = release.report
    if report is None or not model.stores:
        return meta
    inputs, as_of = report["inputs"], report["as_of"]
    args = (inputs["daily_revenue"], inputs["daily_spend"])
    roi = ad_roi_model.channel_roi(
        model, *args, inputs["last_click"], inputs["events"], end=as_of,
        version=release.version, only_approved_stores=False,
    )  # fmt: skip
    curves = ad_roi_model.response_curves(
        model, *args, inputs["events"], end=as_of, only_approved_stores=False
    )
    tests = ad_roi_model.lift_test_report(model, release.version)
    return meta | {
        "backtest_by_store": preview(
            ad_roi_model.backtest_metrics(model).with_columns(pl.col(pl.Float64).round(4)), 60
        ),
        "roas_comparison": roas_comparison_plot(roi),
        "response_curves": response_curve_plot(curves),
        "channel_roi_all_history": preview(
            roi.filter(pl.col("period") == "all").select(_ROI_PREVIEW), rows=50
        ),
        "lift_tests": preview(tests.select(_TEST_PREVIEW), rows=50),
    }


ad_roi_model_asset = training_asset(
    AD_ROI_SPEC, AdRoiConfig, AD_ROI_MODEL, CHAMPION_APPROVED, "ad-ROI", group_name="ad_roi",
    deps=STAGING_INPUTS, kinds=frozenset({"lightgbm", "polars", "duckdb"}), extra=_model_metadata,
    description="Ad-ROI candidates per store with ad spend (storepulse/lifecycle.py): the ridge "
    "(adstock + Hill, Bayesian, calibrated by lift tests), LightGBM monotone in spend (refits "
    "weighted by the lift tests) and the no-media baseline, backtested out of time on the same "
    "days. A store's champion is the first of ridge, LightGBM that beats the baseline there; "
    "otherwise no incremental numbers are published for it. Stores without ad spend or with "
    "under 120 days get no model (listed in metadata). model_store/ad_roi/.",
)  # fmt: skip


# --------------------------------------------------------------------------- nightly

_ROI_PREVIEW = [
    "store_id",
    "channel",
    "method",
    "spend_usd",
    "platform_roas",
    "last_click_roas",
    "incremental_roas",
    "incremental_roas_p10",
    "incremental_roas_p90",
    "uncalibrated_roas",
    "marginal_roas",
    "identified",
    "models_disagree",
]
# A lift test's columns a person reads: the ones the merchant's export set has.
_TEST_PREVIEW = list(MODEL_TABLES["marts.lift_test_results"])
EMPTY = {
    "marts.channel_roi": pl.DataFrame(schema=ad_roi_model.CHANNEL_ROI_SCHEMA),
    "marts.budget_plan": pl.DataFrame(schema=ad_roi_model.BUDGET_PLAN_SCHEMA),
    "marts.lift_plan": pl.DataFrame(schema=LIFT_PLAN_SCHEMA),
    "marts.lift_test_results": pl.DataFrame(schema=ad_roi_model.LIFT_TEST_REPORT_SCHEMA),
}


def score_store(
    release: lifecycle.Release, inputs: dict, as_of: date, store: str, method: str
) -> dict[str, pl.DataFrame]:
    """One store's rows of the four marts, with `method` (lifecycle.score_stores walks
    the fallback chain: CannotScore sends it to the next, simpler method)."""
    model: ad_roi_model.AdRoiModel = release.artifact
    mine = of_store(inputs, store)
    revenue, spend = mine["daily_revenue"], mine["daily_spend"]
    if spend.is_empty() or not (spend["spend_usd"].sum() or 0) > 0:
        raise lifecycle.CannotScore("no ad spend in the data: nothing to measure")
    fitted = model.stores.get(store)
    if method != "none" and fitted is None:
        raise lifecycle.CannotScore(model.skipped.get(store, "no model was fitted for this store"))
    if method == "lightgbm" and fitted.trees is None:
        raise lifecycle.CannotScore("LightGBM was not fitted for this store")
    if method != "none" and not fitted.beats_none(method):
        raise lifecycle.CannotScore(
            f"{AD_ROI_SPEC.label(method)} does not beat the no-media baseline"
        )
    version = release.model_version(method)
    events = mine["events"]
    roi = ad_roi_model.channel_roi(
        model, revenue, spend, mine["last_click"], events, end=as_of, version=version,
        method={store: method},
    )  # fmt: skip
    out = {name: frame.clear() for name, frame in EMPTY.items()}
    out["marts.channel_roi"] = roi
    if fitted is None:
        return out
    out["marts.budget_plan"] = ad_roi_model.budget_plan(
        model, revenue, spend, roi, events, end=as_of, version=version, method={store: method}
    )
    # The next test is most useful where no media model is trusted yet: it is planned
    # from the closest media method's identification flags.
    flags = roi if method != "none" else ad_roi_model.channel_roi(
        model, revenue, spend, mine["last_click"], events, end=as_of,
        only_approved_stores=False,
    )  # fmt: skip
    out["marts.lift_plan"] = ad_roi_model.lift_plan(
        model, revenue, spend, events, end=as_of, version=version, roi=flags
    )
    tests = ad_roi_model.lift_test_report(model, version)
    out["marts.lift_test_results"] = tests.filter(pl.col("store_id") == store)
    return out


def _mart_spec(key: dg.AssetKey, deps: list, description: str) -> dg.AssetSpec:
    """One of the four marts ad_roi_marts writes in one pass."""
    return dg.AssetSpec(
        key,
        group_name="ad_roi",
        deps=deps,
        kinds={"duckdb", "polars"},
        owners=[OWNER],
        description=description,
    )


@dg.multi_asset(
    specs=[
        _mart_spec(
            CHANNEL_ROI,
            deps=[AD_ROI_MODEL, *STAGING_INPUTS],
            description=(
                "Per store x channel x period ('all' history, then calendar quarters): spend, "
                "platform-reported ROAS, last-click ROAS (UTM), and from the store's champion "
                "(method, model_version): incremental ROAS calibrated by the lift tests with "
                "p10/p90, the uncalibrated ROAS beside it, marginal ROAS (+10 % spend), "
                "whether the channel is identified (else the channel it cannot be told apart "
                "from and their joint ROAS), the other media model's opinion. A store whose "
                "media models do not beat the no-media baseline gets platform and last-click "
                "ROAS only."
            ),
        ),
        _mart_spec(
            BUDGET_PLAN,
            deps=[AD_ROI_MODEL, CHANNEL_ROI],
            description=(
                "Per store x channel: the last plan_days' spend moved across channels (same "
                "total, each within ±budget_bound) to maximise modelled revenue, with the "
                "expected revenue change and its p10/p90. Channels whose effect cannot be told "
                "apart from zero are never scaled up; unidentified channels are not moved. "
                "Money moves only when the gain is clear on refits the plan was not chosen on "
                "and the other media model agrees; otherwise spend is kept, with the reason."
            ),
        ),
        _mart_spec(
            LIFT_PLAN,
            deps=[AD_ROI_MODEL, CHANNEL_ROI],
            description=(
                "Per modelled store, the lift test worth running next: the channel whose "
                "uncertainty most affects the budget decision, holdout share, duration, the "
                "expected standard error (a power calculation from the store's daily revenue "
                "noise), its cost, and the expected value of the information in USD, with a "
                "sentence a merchant can act on."
            ),
        ),
        _mart_spec(
            LIFT_TEST_RESULTS,
            deps=[AD_ROI_MODEL, *STAGING_INPUTS],
            description=(
                "Every lift test of a modelled store: measured lift and its widened standard "
                "error, the model's lift over the same window before and after calibration, "
                "z-scores, and whether it was used (or why not: too old, significantly "
                "negative, outside the history)."
            ),
        ),
    ],
    pool="duckdb",
    can_subset=False,
    check_specs=[no_failure_check(CHANNEL_ROI, "ad_roi")],
)
def ad_roi_marts(
    context: dg.AssetExecutionContext,
    config: AdRoiConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
):
    run = score_all(
        context, AD_ROI_SPEC, config, storepulse, run_settings,
        step="ad_roi", tables=EMPTY, score_one=score_store,
    )  # fmt: skip
    roi, plan = run.tables["marts.channel_roi"], run.tables["marts.budget_plan"]
    lift_plan, tests = run.tables["marts.lift_plan"], run.tables["marts.lift_test_results"]
    curves = pl.DataFrame()
    if run.release is not None and run.release.artifact.stores:
        model = run.release.artifact
        published = {s: m for s, m in (run.release.decision.by_store.items()) if m != "none"}
        curves = ad_roi_model.response_curves(
            model, run.inputs["daily_revenue"].filter(pl.col("store_id").is_in(list(published))),
            run.inputs["daily_spend"], run.inputs["events"], end=run.as_of, method=published,
        )  # fmt: skip
    yield run.result(
        {
            "dagster/row_count": roi.height,
            "roas_comparison": roas_comparison_plot(roi),
            "response_curves": response_curve_plot(curves),
            "preview": preview(roi.filter(pl.col("period") == "all").select(_ROI_PREVIEW), 50),
            "channels_where_models_disagree": int(roi["models_disagree"].fill_null(False).sum()),
            "channels_not_identified": int((roi["identified"] == False).sum()),  # noqa: E712
        },
        asset_key=CHANNEL_ROI,
    )
    yield dg.MaterializeResult(
        asset_key=BUDGET_PLAN,
        metadata={
            "dagster/row_count": plan.height,
            "preview": preview(
                plan.select(
                    "store_id",
                    "channel",
                    "method",
                    "current_spend_usd",
                    "recommended_spend_usd",
                    "expected_revenue_change_usd",
                    "store_expected_revenue_change_usd",
                    "flag",
                ),
                50,
            ),  # fmt: skip
            "budget_plan": budget_plot(plan),
        },
    )
    yield dg.MaterializeResult(
        asset_key=LIFT_PLAN,
        metadata={"dagster/row_count": lift_plan.height, "preview": preview(lift_plan, 50)},
    )
    yield dg.MaterializeResult(
        asset_key=LIFT_TEST_RESULTS,
        metadata={
            "dagster/row_count": tests.height,
            "preview": preview(tests.select(_TEST_PREVIEW), 50),
        },
    )


# --------------------------------------------------------------------------- plots


def roas_comparison_plot(roi: pl.DataFrame) -> dg.MetadataValue:
    """Per store: platform vs last-click vs incremental (with p10-p90) vs ridge ROAS."""
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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
