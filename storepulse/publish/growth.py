"""Growth levers in the merchant's export set and report (#17): partner scorecards,
A/B test readouts and orders to review.

Files (where the store has that data): `partners.csv` (every partner and paid channel,
per month and overall), `experiments.csv` (every experiment x metric x variant) and
`orders_to_review.csv` (flagged open orders of the last days, highest risk first).
Report sections: one each, with a plot; a store without such data gets one plain
sentence saying what to add.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from models.order_risk import RULES
from storepulse.publish.data import StoreData
from storepulse.publish.destinations import neutralise_text_columns
from storepulse.publish.report import (
    BLUE,
    GREY,
    ORANGE,
    RED,
    Section,
    bar_figure,
    esc,
    label,
    money,
    pct,
    svg,
    table_html,
    unavailable,
)

PARTNERS_FILE = "partners.csv"
EXPERIMENTS_FILE = "experiments.csv"
ORDERS_TO_REVIEW_FILE = "orders_to_review.csv"
PARTNERS_TITLE = "Partners (KOLs and affiliates)"
EXPERIMENTS_TITLE = "A/B tests"
ORDERS_TITLE = "Orders to review before shipping"
# What to do about an order each rule flagged, in the order a merchant would act.
REVIEW_STEPS = {
    "burst": "cancel the bursts of small orders from new accounts (card testing) before "
    "they turn into chargebacks",
    "country_mismatch": "ask for proof of identity on big first orders billed in one country "
    "and shipped to another",
    "big_first_order": "check big first orders before shipping them",
    "cod_refusals": "call customers who refused cash-on-delivery parcels before shipping "
    "another one",
    "shared_phone": "allow the welcome offer once per phone (resellers open many accounts)",
    "unusual": "look twice at the orders marked unusual",
}
REVIEW_COLUMNS = (
    "order_id", "created_at", "customer_id", "total_usd", "payment_method", "risk_score",
    "flags", "rules",
)  # fmt: skip


def _for_merchant(frame: pl.DataFrame) -> pl.DataFrame:
    """Readable numbers and times, spreadsheet-safe text."""
    return neutralise_text_columns(
        frame.with_columns(
            pl.col(pl.Float64).round(4),
            pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S"),
        )
    )


def _rows(data: StoreData, name: str) -> pl.DataFrame | None:
    table = data.tables.get(name)
    return table.frame if table is not None and table.usable else None


def write_growth_files(out: Path, data: StoreData, notes: list[str]) -> None:
    """partners.csv, experiments.csv and orders_to_review.csv where the store has them."""
    partners = _rows(data, "marts.partner_scorecard")
    if partners is not None:
        _for_merchant(partners.drop("store_id")).write_csv(out / PARTNERS_FILE)
    else:
        notes.append(f"{PARTNERS_FILE}: not written, the store has no partner scorecard")
    experiments = _rows(data, "marts.experiment_readout")
    if experiments is not None:
        _for_merchant(experiments.drop("store_id")).write_csv(out / EXPERIMENTS_FILE)
    else:
        notes.append(f"{EXPERIMENTS_FILE}: not written, the store has no experiment readout")
    risk = _rows(data, "scores.order_risk")
    if risk is not None:
        review = _to_review(risk).select([c for c in REVIEW_COLUMNS if c in risk.columns])
        _for_merchant(review).write_csv(out / ORDERS_TO_REVIEW_FILE)
    else:
        notes.append(f"{ORDERS_TO_REVIEW_FILE}: not written, the store has no order risk scores")


def _to_review(risk: pl.DataFrame) -> pl.DataFrame:
    marked = pl.col("to_review") if "to_review" in risk.columns else pl.col("flagged")
    return risk.filter(marked.fill_null(False)).sort(
        "risk_score", descending=True, maintain_order=True
    )


# ---------------------------------------------------------------- report sections


def partner_section(data: StoreData) -> Section:
    table = data.table("marts.partner_scorecard")
    reason = unavailable(
        table,
        "This store has no partner data: add a partners.csv listing each KOL and affiliate "
        "with their discount code or UTM campaign to see which of them pay off.",
        "Partner scorecards (marts.partner_scorecard) have not been built yet; run the "
        "nightly job.",
    )
    if reason:
        return Section(PARTNERS_TITLE, "", unavailable=reason)
    overall = (
        table.frame.filter(pl.col("period") == "overall")
        .with_columns(
            pl.when(pl.col("kind") == "paid_channel")
            .then(pl.lit("paid channel"))
            .otherwise(pl.col("kind"))
            .alias("kind_label")
        )
        .sort("roi", descending=True, nulls_last=True, maintain_order=True)
    )
    partners = overall.filter(pl.col("kind") != "paid_channel")
    store_repeat = partners["store_repeat_rate_90d"].drop_nulls()
    body = (
        f"<p>{esc(f'{partners.height:,}')} partners, next to the store's paid channels. "
        "Orders are linked by discount code (else UTM campaign); a partner's value is what "
        "the customers it brought have spent since, net of refunds (customers who arrived "
        "untracked with a code that is also used through other channels count in part: the "
        "code has likely leaked to coupon sites).</p>"
        + table_html(
            overall,
            {
                "partner_name": ("Partner", None),
                "kind_label": ("Kind", None),
                "orders": ("Orders", lambda v: f"{v:,}"),
                "new_customers": ("New customers", lambda v: f"{v:,}"),
                "brought_revenue_usd": ("Value brought", money),
                "cost_usd": ("Cost", money),
                "roi": ("ROI", lambda v: f"{v:+.0%}"),
                "repeat_rate_90d": ("Back in 90 days", pct),
                "flags": ("Watch out", None),
            },
        )
    )
    if store_repeat.len():
        body += (
            f"<p>The store's own customers come back within 90 days "
            f"{esc(pct(float(store_repeat[0])))} of the time.</p>"
        )
    unlinked = data.tables.get("marts.partner_unlinked_codes")
    if unlinked is not None and unlinked.usable:
        codes = unlinked.frame.sort("orders", descending=True, maintain_order=True).head(5)
        listed = ", ".join(
            f"{code} ({n:,} orders)"
            for code, n in zip(codes["discount_code"], codes["orders"], strict=True)
        )
        body += (
            f"<p>Discount codes on orders that no partner owns: {esc(listed)}. If one of "
            "them belongs to a partner, add it to partners.csv.</p>"
        )
    shown = overall.filter(pl.col("roi").is_not_null()).sort("roi", maintain_order=True)
    plot = None
    if shown.height:
        fig, ax = bar_figure(shown.height, 0.3)
        values = shown["roi"].to_list()
        colours = [
            RED if r < 0 else (GREY if k == "paid_channel" else BLUE)
            for r, k in zip(values, shown["kind"].to_list(), strict=True)
        ]
        ax.barh([label(n) for n in shown["partner_name"].to_list()], values, color=colours)
        ax.axvline(0, color="#334155", linewidth=0.8)
        ax.set_title("Return on cost per partner (grey: paid channels; red: costs more)")
        plot = svg(fig)
    ranked = partners.filter(pl.col("roi").is_not_null())
    advice_parts = []
    if ranked.height:
        best = ranked.row(0, named=True)
        advice_parts.append(
            f"{best['partner_name']} pays off best ({best['roi']:+.0%} on its cost): give it "
            "more of the budget"
        )
    costly = partners.filter(pl.col("flags").str.contains("costs more").fill_null(False))
    if costly.height:
        advice_parts.append(
            f"renegotiate or stop {', '.join(costly['partner_name'].to_list())} (costs more "
            "than it brings)"
        )
    leaving = partners.filter(pl.col("flags").str.contains("do not come back").fill_null(False))
    if leaving.height:
        advice_parts.append(
            f"pay {', '.join(leaving['partner_name'].to_list())} per returning customer "
            "rather than per order, as their customers do not come back"
        )
    advice = "; ".join(advice_parts) + "." if advice_parts else None
    return Section(PARTNERS_TITLE, body, plot, esc(advice) if advice else None)


def _plan_sentence(data: StoreData, first: bool) -> str | None:
    plan = data.tables.get("marts.experiment_plan")
    if plan is None or not plan.usable:
        return None
    row = plan.frame.row(0, named=True)
    need = int(row["customers_per_variant"])
    eligible = int(row["eligible_customers"] or 0)
    pace = (
        f", about {2 * need / eligible:.1f} times the {eligible:,} customers who ordered in "
        "the year before the last "
        f"{int(row['period_days'])} days"
        if eligible
        else ""
    )
    what = "A first" if first else "The next"
    return (
        f"{what} conversion test needs {need:,} customers per variant to detect a "
        f"{row['relative_lift']:.0%} lift in {int(row['period_days'])}-day conversion (now "
        f"{row['baseline']:.1%}) with {row['power']:.0%} power at {row['alpha']:.0%} "
        f"significance{pace}."
    )


def experiment_section(data: StoreData) -> Section:
    table = data.table("marts.experiment_readout")
    plan = _plan_sentence(data, first=True)
    empty = "This store has no A/B test data yet" + (
        f"; {plan[0].lower()}{plan[1:]}"
        if plan
        else ": add your A/B tool's assignments "
        "(experiment_id, variant, customer, assigned_at) to read tests here."
    )
    reason = unavailable(
        table,
        empty,
        "A/B test readouts (marts.experiment_readout) have not been built yet; run the "
        "nightly job.",
    )
    if reason:
        return Section(EXPERIMENTS_TITLE, "", unavailable=reason)
    frame = table.frame
    primary = frame.filter(pl.col("is_primary") & ~pl.col("is_control")).sort(
        "window_end", descending=True, maintain_order=True
    )
    control_n = (
        frame.filter(pl.col("is_primary") & pl.col("is_control"))
        .select("experiment_id", pl.col("customers").alias("control_customers"))
        .unique("experiment_id")
    )
    shown = primary.join(control_n, on="experiment_id", how="left").with_columns(
        pl.coalesce("experiment_name", "experiment_id").alias("name"),
        pl.format("{} / {}", "control_customers", "customers").alias("sizes"),
        pl.when(pl.col("metric") == "conversion")
        .then(pl.lit("conversion"))
        .otherwise(pl.lit("revenue per customer"))
        .alias("metric_label"),
    )
    body = "<p>Each test is read once, after its planned end (fixed horizon): lifts are " + (
        "against the control, adjusted for each customer's spend before the test (CUPED).</p>"
    )
    body += table_html(
        shown,
        {
            "name": ("Test", None),
            "variant": ("Variant", None),
            "metric_label": ("Metric", None),
            "sizes": ("Customers (control / variant)", None),
            "lift": ("Lift", lambda v: f"{v:+.1%}"),
            "ci_low": ("95% from", lambda v: f"{v:+.1%}"),
            "ci_high": ("to", lambda v: f"{v:+.1%}"),
            "variance_reduction": ("Noise cut by CUPED", pct),
            "decision_text": ("Decision", None),
        },
    )
    plan_next = _plan_sentence(data, first=False)
    if plan_next:
        body += f"<p>{esc(plan_next)}</p>"
    fig, ax = bar_figure(shown.height, 0.4)
    with_lift = shown.filter(pl.col("lift").is_not_null() & pl.col("ci_low").is_not_null())
    if with_lift.height:
        lift = with_lift["lift"].to_numpy()
        colours = [
            GREY
            if d == "running"
            else (BLUE if d == "better" else (RED if d == "worse" else ORANGE))
            for d in with_lift["decision"].to_list()
        ]
        for y, (x, lo, hi, c) in enumerate(
            zip(
                lift,
                with_lift["ci_low"].to_list(),
                with_lift["ci_high"].to_list(),
                colours,
                strict=True,
            )  # fmt: skip
        ):
            ax.plot([lo, hi], [y, y], color=c, linewidth=2)
            ax.plot([x], [y], "o", color=c)
        ax.set_yticks(
            range(with_lift.height),
            [
                label(f"{n} · {v}", 34)
                for n, v in zip(with_lift["name"], with_lift["variant"], strict=True)
            ],  # fmt: skip
        )
    ax.axvline(0, color=RED, linewidth=0.8, linestyle="--")
    ax.set_title("Lift, 95% interval (blue better, red worse, orange no difference)")
    decided = shown.select("name", "experiment_decision", "decision_text").unique("name")
    ship = decided.filter(pl.col("experiment_decision") == "ship_variant")
    running = decided.filter(pl.col("experiment_decision") == "running")
    broken = decided.filter(pl.col("experiment_decision") == "srm")
    parts = []
    if ship.height:
        parts.append(f"roll out the winners of {', '.join(ship['name'].to_list())}")
    if running.height:
        parts.append(
            f"let {', '.join(running['name'].to_list())} run to the planned end before "
            "reading it (stopping early on a good day is how false winners are made)"
        )
    if broken.height:
        parts.append(
            f"check the assignment of {', '.join(broken['name'].to_list())} before trusting it"
        )
    if not parts:
        parts.append(
            "no test found a difference: test bigger changes, or plan the sample size first"
        )
    advice = parts[0][0].upper() + "; ".join(parts)[1:] + "."
    return Section(EXPERIMENTS_TITLE, body, svg(fig), esc(advice))


def order_review_section(data: StoreData) -> Section:
    table = data.table("scores.order_risk")
    reason = unavailable(
        table,
        "No recent orders of this store to check for fraud or abuse.",
        "Order risk scores (scores.order_risk) have not been built yet; run the nightly job.",
    )
    if reason:
        return Section(ORDERS_TITLE, "", unavailable=reason)
    frame = table.frame
    flagged = frame.filter(pl.col("flagged").fill_null(False))
    review = _to_review(frame)
    body = (
        f"<p><strong>{esc(f'{review.height:,}')}</strong> open orders of the last days look "
        f"risky enough to check before shipping ({esc(f'{flagged.height:,}')} flagged of "
        f"{esc(f'{frame.height:,}')} orders scored). Each says why; the full list is in "
        f"{ORDERS_TO_REVIEW_FILE}.</p>"
    )
    if review.height:
        body += table_html(
            review.head(15),
            {
                "order_id": ("Order", None),
                "created_at": ("Placed", lambda v: f"{v:%d %b %H:%M}"),
                "total_usd": ("Total", money),
                "risk_score": ("Risk", lambda v: f"{v:.0f}"),
                "flags": ("Why", None),
            },
        )
    reasons = (
        flagged.filter(pl.col("rules").is_not_null())
        .select(pl.col("rules").str.split(",").alias("rule"))
        .explode("rule")
        .group_by("rule")
        .len()
        .with_columns(pl.col("rule").replace(RULES).alias("reason"))
        .sort("len", maintain_order=True)
        if "rules" in flagged.columns
        else pl.DataFrame(schema={"reason": pl.String, "len": pl.UInt32})
    )
    plot = None
    if reasons.height:
        fig, ax = bar_figure(reasons.height)
        ax.barh([label(r, 40) for r in reasons["reason"].to_list()], reasons["len"].to_list(),
                color=ORANGE)  # fmt: skip
        ax.set_title("Why orders were flagged (all scored days)")
        plot = svg(fig)
    if review.height:
        fired = set()
        if "rules" in review.columns:
            for rules in review["rules"].drop_nulls().to_list():
                fired.update(rules.split(","))
        steps = [step for rule, step in REVIEW_STEPS.items() if rule in fired]
        advice = f"Hold these {review.height:,} orders until checked" + (
            ": " + "; ".join(steps) + "." if steps else "."
        )
    else:
        advice = "Nothing to hold today: no open order of the last days looks risky."
    return Section(ORDERS_TITLE, body, plot, esc(advice))
