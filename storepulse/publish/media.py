"""Ad ROI in the merchant's report: channel ROI (calibrated and uncalibrated, with the
lift tests behind them), the budget plan and the next experiment (marts.lift_plan).

Every column beyond DESIGN §4's minimum is optional: a table built by older code
still renders, with fewer details."""

from __future__ import annotations

import polars as pl

from storepulse.publish.data import StoreData
from storepulse.publish.report import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    Section,
    _float,
    esc,
    figure,
    label,
    money,
    pct,
    ratio,
    svg,
    table_html,
    unavailable,
)

CHANNEL_TITLE = "Channel ROI"
BUDGET_TITLE = "Budget plan"
LIFT_PLAN_TITLE = "Next experiment"


def _optional(frame: pl.DataFrame, column: str, dtype=pl.Float64) -> pl.Expr:
    if column in frame.columns:
        return pl.col(column).cast(dtype)
    return pl.lit(None, dtype=dtype)


def _latest_window(frame: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """The longest window that ends last (the table also holds quarters)."""
    if frame["period_end"].null_count() == frame.height:
        return frame, ""
    frame = frame.filter(pl.col("period_end") == pl.col("period_end").max())
    if frame["period_start"].null_count() < frame.height:
        frame = frame.filter(pl.col("period_start") == pl.col("period_start").min())
    return frame, f"{frame['period_start'][0]} to {frame['period_end'][0]}"


def _interval(low: float | None, high: float | None) -> str | None:
    if low is None or high is None:
        return None
    return f"{ratio(low)} to {ratio(high)}"


def channel_section(data: StoreData) -> Section:
    table = data.table("marts.channel_roi")
    reason = unavailable(
        table,
        "This store has no ad spend in the data, so there is no channel return on ad spend "
        "to compare. Add the ad platforms' daily exports to the landing folder to see it.",
        "Channel ROI (marts.channel_roi) has not been built yet; it needs ad spend and the "
        "nightly job.",
    )
    if reason:
        return Section(CHANNEL_TITLE, "", unavailable=reason)
    frame, period = _latest_window(table.frame)
    roi = (
        frame.select(
            pl.col("channel").cast(pl.String),
            _float("spend_usd").alias("spend"),
            _float("platform_roas").alias("platform"),
            _float("last_click_roas").alias("last_click"),
            _float("incremental_roas").alias("incremental"),
            _optional(frame, "incremental_roas_p10").alias("p10"),
            _optional(frame, "incremental_roas_p90").alias("p90"),
            _optional(frame, "uncalibrated_roas").alias("uncalibrated"),
            _float("marginal_roas").alias("marginal"),
            _optional(frame, "lift_tests_used", pl.Int64).alias("tests"),
            _optional(frame, "identified", pl.Boolean).alias("identified"),
            _optional(frame, "confounded_with", pl.String).alias("confounded_with"),
            _optional(frame, "group_roas").alias("group_roas"),
            _optional(frame, "group_roas_p10").alias("group_p10"),
            _optional(frame, "group_roas_p90").alias("group_p90"),
        )
        .unique("channel", keep="first", maintain_order=True)
        .sort("spend", descending=True, maintain_order=True)
    )
    roi = roi.with_columns(
        pl.struct("p10", "p90")
        .map_elements(lambda r: _interval(r["p10"], r["p90"]), return_dtype=pl.String)
        .alias("range")
    )
    calibrated = bool((roi["tests"].fill_null(0) > 0).any())
    columns = {
        "channel": ("Channel", None),
        "spend": ("Spend", money),
        "platform": ("Platform ROAS", ratio),
        "last_click": ("Last-click ROAS", ratio),
        "incremental": (
            "Incremental ROAS (calibrated by lift tests)" if calibrated else "Incremental ROAS",
            ratio,
        ),
        "range": ("Likely range (p10-p90)", None),
    }
    if calibrated:
        columns["uncalibrated"] = ("Without the lift tests", ratio)
    columns["marginal"] = ("Next dollar (marginal)", ratio)
    body = (f"<p>Ad spend and return, {esc(period)}.</p>" if period else "") + table_html(
        roi, columns
    )
    body += _lift_tests_html(data)
    fig, ax = figure()
    names = [label(c, 14) for c in roi["channel"].to_list()]
    positions = list(range(len(names)))
    width = 0.27
    for offset, (col, colour, text) in enumerate(
        (
            ("platform", GREY, "platform-reported"),
            ("last_click", ORANGE, "last click (UTM)"),
            ("incremental", BLUE, "incremental (model)"),
        )
    ):
        values = [v if v is not None else 0.0 for v in roi[col].to_list()]
        ax.bar(
            [p + (offset - 1) * width for p in positions], values, width, color=colour, label=text
        )
    ax.axhline(1.0, color=RED, linewidth=0.8, linestyle="--")
    ax.set_xticks(positions, names)
    ax.set_title("Revenue per ad dollar by channel (dashed: break-even)")
    ax.legend(frameon=False, fontsize=8)
    return Section(CHANNEL_TITLE, body, svg(fig), esc(_channel_advice(roi, data)))


def _channel_advice(roi: pl.DataFrame, data: StoreData) -> str:
    ranked = roi.filter(pl.col("incremental").is_not_null()).sort(
        "incremental", descending=True, maintain_order=True
    )
    if not ranked.height:
        why = ""
        status = data.status.filter(pl.col("step") == "ad_roi") if data.status.height else None
        if status is not None and status.height and status["method"][0] == "none":
            if status["status"][0] == "ok":
                why = (
                    " The media models did not forecast this store's sales better than a "
                    "forecast without ads, so they are not trusted to say what each channel caused."
                )
            elif " because " in (status["message"][0] or ""):
                reason = status["message"][0].split(" because ", 1)[1]
                why = f" No media model could be fitted for this store yet ({reason})."
        return (
            "Incremental ROAS is not available yet; compare platform and last-click ROAS with "
            f"care.{why} A lift test (see the next experiment) measures it directly."
        )
    best, worst = ranked.row(0, named=True), ranked.row(-1, named=True)
    advice = (
        f"{best['channel']} returns the most per extra dollar actually caused by ads "
        f"({ratio(best['incremental'])} incremental)"
    )
    if ranked.height > 1:
        advice += f"; {worst['channel']} the least ({ratio(worst['incremental'])})"
    overstated = roi.filter(
        pl.col("platform").is_not_null()
        & pl.col("incremental").is_not_null()
        & (pl.col("platform") > 1.5 * pl.col("incremental"))
    )
    if overstated.height:
        names_text = ", ".join(overstated["channel"].to_list())
        advice += (
            f". The platform dashboards overstate {names_text}: judge them by incremental ROAS"
        )
    tangled = roi.filter((pl.col("identified") == False) & pl.col("confounded_with").is_not_null())  # noqa: E712
    done: set[str] = set()
    for row in tangled.iter_rows(named=True):
        pair = frozenset((row["channel"], row["confounded_with"]))
        if pair in done:
            continue
        done.add(pair)
        together = ""
        if row["group_roas"] is not None:
            together = f": together they return {ratio(row['group_roas'])}"
            if row["group_p10"] is not None and row["group_p90"] is not None:
                together += f" (likely {_interval(row['group_p10'], row['group_p90'])})"
        advice += (
            f". {row['channel']} and {row['confounded_with']} rose and fell together, so the "
            f"data cannot split their effect{together}; the budget plan does not move money "
            "between them"
        )
    return advice + ". The budget plan below shifts spend accordingly."


def _lift_tests_html(data: StoreData) -> str:
    """The store's lift tests: what each measured, what the model said before it saw the
    test (z-score), and whether it was used."""
    table = data.tables.get("marts.lift_test_results")
    if table is None or table.status != "ok":
        return ""
    tests = table.frame.select(
        pl.col("channel").cast(pl.String),
        pl.format("{} to {}", "start_date", "end_date").alias("window"),
        _float("measured_lift_usd").alias("measured"),
        _float("effective_std_error_usd").alias("se"),
        _float("model_lift_usd").alias("model"),
        _float("calibrated_lift_usd").alias("calibrated"),
        _float("z_score").alias("z"),
        pl.col("status").cast(pl.String),
    )
    intro = (
        "<p>Lift tests the model was calibrated with. z: how many standard errors the measured "
        "lift lies from what the model said before seeing the test (beyond ±2 the test "
        "corrected the model markedly).</p>"
    )
    return intro + table_html(
        tests,
        {
            "channel": ("Channel", None),
            "window": ("Test window", None),
            "measured": ("Measured lift", money),
            "se": ("± (std. error)", money),
            "model": ("Model before", money),
            "calibrated": ("Model after", money),
            "z": ("z", lambda v: f"{v:+.1f}"),
            "status": ("Used", None),
        },
    )


def budget_section(data: StoreData) -> Section:
    table = data.table("marts.budget_plan")
    reason = unavailable(
        table,
        "This store has no modelled ad spend, so there is no budget to plan.",
        "The budget plan (marts.budget_plan) has not been built yet; it needs ad spend and "
        "the nightly job.",
    )
    if reason:
        return Section(BUDGET_TITLE, "", unavailable=reason)
    frame = table.frame
    plan = frame.select(
        pl.col("channel").cast(pl.String),
        _float("current_spend_usd").alias("current"),
        _float("recommended_spend_usd").alias("recommended"),
        _float("expected_revenue_change_usd").alias("revenue_change"),
        _optional(frame, "flag", pl.String).alias("flag"),
    ).with_columns((pl.col("recommended") - pl.col("current")).alias("change"))
    body = table_html(
        plan,
        {
            "channel": ("Channel", None),
            "current": ("Current spend", money),
            "recommended": ("Recommended", money),
            "change": ("Change", money),
            "revenue_change": ("Expected revenue change", money),
            "flag": ("Note", None),
        },
    )
    fig, ax = figure()
    names = [label(c, 14) for c in plan["channel"].to_list()]
    positions = list(range(len(names)))
    for shift, col, colour, text in ((-0.2, "current", GREY, "current"),
                                     (0.2, "recommended", GREEN, "recommended")):  # fmt: skip
        values = plan[col].fill_null(0).to_list()
        ax.bar([p + shift for p in positions], values, 0.4, color=colour, label=text)
    ax.set_xticks(positions, names)
    ax.set_title("Ad spend per channel: current vs recommended (USD)")
    ax.legend(frameon=False, fontsize=8)
    gain = float(plan["revenue_change"].sum() or 0.0)
    more = plan.filter(pl.col("change") > 0).sort("change", descending=True, maintain_order=True)
    less = plan.filter(pl.col("change") < 0).sort("change", maintain_order=True)
    kept = plan["flag"].drop_nulls().filter(plan["flag"].drop_nulls().str.starts_with("spend kept"))
    if more.height and less.height:
        advice = (
            f"Move {money(-float(less['change'].sum()))} from {', '.join(less['channel'].to_list())} "
            f"to {', '.join(more['channel'].to_list())}; the model expects "
            f"{money(gain)} more revenue for the same total spend."
        )
    elif kept.len():
        advice = f"Keep the current split: {kept[0].removeprefix('spend kept as is: ')}."
    else:
        advice = "The current split is already close to the best one the model finds: keep it."
    return Section(BUDGET_TITLE, body, svg(fig), esc(advice))


def lift_plan_section(data: StoreData) -> Section:
    table = data.tables.get("marts.lift_plan")
    if table is None or table.status == "missing":
        return Section(
            LIFT_PLAN_TITLE, "", unavailable=esc(
                "The experiment plan (marts.lift_plan) has not been built yet; it needs ad "
                "spend and the nightly job."
            ),
        )  # fmt: skip
    reason = unavailable(
        table,
        "No lift test is proposed: the store has no modelled ad spend.",
        "The experiment plan (marts.lift_plan) has not been built yet.",
    )
    if reason:
        return Section(LIFT_PLAN_TITLE, "", unavailable=reason)
    plan = table.frame.select(
        pl.col("channel").cast(pl.String),
        _float("holdout_share").alias("holdout"),
        pl.col("duration_days").cast(pl.Int64).alias("days"),
        _float("expected_std_error").alias("se"),
        _float("expected_value_usd").alias("value"),
        _optional(table.frame, "expected_cost_usd").alias("cost"),
        pl.col("reason").cast(pl.String),
    )
    body = table_html(
        plan,
        {
            "channel": ("Channel to test", None),
            "holdout": ("Hold out", pct),
            "days": ("Days", lambda v: f"{v:,}"),
            "se": ("Expected precision (± USD)", money),
            "cost": ("Cost (lift forgone)", money),
            "value": ("Value of the test (USD)", money),
        },
    )
    first = plan.row(0, named=True)
    return Section(LIFT_PLAN_TITLE, body, "", esc(first["reason"] or ""))
