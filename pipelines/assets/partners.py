"""Partner scorecards (group "partners"): marts.partner_scorecard from models.partners.

Thin: reads staging through storepulse.inputs.partners, scores store by store (one
store's problem never stops another's), writes the scorecard and the discount codes
no partner owns, records each store's outcome in ops.store_status (step "partners").
"""

import dagster as dg
import polars as pl
from pydantic import Field

from models import partners as partner_model
from pipelines.assets.staging import staging_inputs
from pipelines.config import model_settings, validated_settings
from pipelines.metadata import OWNER, metrics, plot, preview, pyplot
from pipelines.resources import RunSettings, StorepulseResource
from pipelines.store_steps import attempt, concat_or_empty, done, skipped, step_metadata, write_step
from storepulse.inputs import partners as partner_inputs
from storepulse.lifecycle import STATUS_OK
from storepulse.publish import store_ids

PARTNER_SCORECARD = dg.AssetKey(["marts", "partner_scorecard"])
STEP = "partners"
EVERY_PARTNER_SCORED = "every_partner_scored"


class PartnerConfig(dg.Config):
    """Scorecard rules (Launchpad-editable). Defaults = models.partners.PartnerSettings."""

    low_repeat_ratio: float = Field(
        default=partner_model.PartnerSettings.low_repeat_ratio,
        description="Flag 'customers do not come back' at or below this share of the store's "
        "90-day repeat rate.",
    )
    min_customers: int = Field(
        default=partner_model.PartnerSettings.min_customers,
        description="Customers (90 days old) a partner needs before the repeat flag is judged.",
    )
    high_refund_ratio: float = Field(
        default=partner_model.PartnerSettings.high_refund_ratio,
        description="Flag 'high refunds' at this multiple of the store's refund rate.",
    )
    min_orders: int = Field(
        default=partner_model.PartnerSettings.min_orders,
        description="Orders a partner needs before the refund flag is judged.",
    )
    include_paid_channels: bool = Field(
        default=partner_model.PartnerSettings.include_paid_channels,
        description="Score the store's paid channels (last click, ad spend) beside the partners.",
    )

    credit_other_channels: bool = Field(
        default=partner_model.PartnerSettings.credit_other_channels,
        description="Credit a partner with new customers whose first order carried its code "
        "but came through another tracked channel (off: such codes were found elsewhere).",
    )
    discount_untracked_leaks: bool = Field(
        default=partner_model.PartnerSettings.discount_untracked_leaks,
        description="Count each untracked (direct) new customer with a partner's code for "
        "1 - the share a leaked code is estimated to explain, from the leaks seen through "
        "other channels (off: every one counts in full).",
    )
    leak_prior_strength: float = Field(
        default=partner_model.PartnerSettings.leak_prior_strength,
        description="How many untracked arrivals the store-wide share of leaked-code "
        "customers counts for in each partner's estimate (0: the partner's own seen leaks "
        "alone).",
    )

    def settings(self) -> partner_model.PartnerSettings:
        return model_settings(self, partner_model.PartnerSettings)


@dg.asset(
    key=PARTNER_SCORECARD,
    group_name="partners",
    deps=staging_inputs("orders", "partners", "ad_spend", "stores"),
    kinds={"duckdb", "polars"},
    owners=[OWNER],
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_PARTNER_SCORED,
            asset=PARTNER_SCORECARD,
            description="Every partner in staging.partners of a scored store has an overall row.",
        )
    ],
    description=(
        "KOL and affiliate scorecards per store, partner and month, and overall: orders linked "
        "by discount code (else UTM campaign), new customers, revenue, AOV, refund rate, 90-day "
        "repeat rate of the customers they brought against the store's, brought revenue, cost "
        "(fixed fee spread over the contract plus commission), ROI and CAC; the store's paid "
        "channels beside them (last-click orders, ad spend). Plain flags on partners who cost "
        "more than they bring or whose customers do not come back. Codes on orders that no "
        "partner owns are counted in marts.partner_unlinked_codes. Data before as_of."
    ),
)
def partner_scorecard(
    context: dg.AssetExecutionContext,
    config: PartnerConfig,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    settings = validated_settings(config, "partner scorecard config")
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        stores = store_ids(con)
        orders = partner_inputs.load_orders(con, as_of)
        partners = partner_inputs.load_partners(con)
        ad_spend = partner_inputs.load_ad_spend(con, as_of)
    frames, unlinked, outcomes = [], [], []
    for store in stores:
        mine = partners.filter(pl.col("store_id") == store)
        store_orders = orders.filter(pl.col("store_id") == store)
        card = attempt(
            outcomes, store, STEP, partner_model.partner_scorecard,
            store_orders, mine, as_of, ad_spend.filter(pl.col("store_id") == store), settings,
        )  # fmt: skip
        if card is None:
            continue
        unlinked.append(card.unlinked_codes)
        if mine.is_empty():
            why = (
                "no partners file: add partners.csv (KOLs and affiliates with their discount "
                f"codes) to see scorecards; {card.unlinked_codes.height} discount codes on "
                "orders are counted in marts.partner_unlinked_codes"
            )
            outcomes.append(skipped(store, STEP, why))
            continue
        if store_orders.is_empty():
            outcomes.append(skipped(store, STEP, f"no valid orders before {as_of}"))
            continue
        frames.append(card.rows)
        overall = card.rows.filter(
            (pl.col("period") == "overall") & (pl.col("kind") != "paid_channel")
        )
        flagged = overall.filter(pl.col("flags").is_not_null()).height
        summary = (
            f"{overall.height} partners scored, {flagged} flagged; "
            f"{int(overall['orders'].sum())} orders linked by code or campaign"
        )
        outcomes.append(done(store, STEP, "partner_scorecard", summary))
    table = concat_or_empty(frames, partner_model.SCORECARD_SCHEMA)
    codes = concat_or_empty(unlinked, partner_model.UNLINKED_SCHEMA)
    tables = {"marts.partner_scorecard": table, "marts.partner_unlinked_codes": codes}
    rows = write_step(storepulse, as_of, STEP, tables, outcomes)["marts.partner_scorecard"]
    overall = table.filter(pl.col("period") == "overall")
    scored_partners = set(overall.select("store_id", "partner_id").iter_rows())
    expected = {
        (s, p)
        for s, p in partners.select("store_id", "partner_id").iter_rows()
        if s in {o.store_id for o in outcomes if o.status == STATUS_OK}
    }
    missing = sorted(expected - scored_partners)
    return dg.MaterializeResult(
        metadata={
            **step_metadata(rows, as_of, outcomes),
            "overall": preview(
                overall.select(
                    "store_id",
                    "partner_id",
                    "partner_name",
                    "kind",
                    "orders",
                    "new_customers",
                    "revenue_usd",
                    "cost_usd",
                    "roi",
                    "repeat_rate_90d",
                    "flags",
                ).sort("store_id", "roi", descending=[False, True], nulls_last=True),
                rows=40,
            ),
            "unlinked_codes": preview(codes, rows=20),
            "partners_flagged": metrics(
                {
                    "flagged": overall.filter(pl.col("flags").is_not_null()).height,
                    "partners": overall.filter(pl.col("kind") != "paid_channel").height,
                }
            ),
            "roi_by_partner": _roi_plot(overall),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=EVERY_PARTNER_SCORED,
                passed=not missing,
                metadata={"missing": metrics([f"{s}/{p}" for s, p in missing][:50])},
            )
        ],
    )


def _roi_plot(overall: pl.DataFrame):
    plt = pyplot()
    shown = (
        overall.filter(pl.col("roi").is_not_null())
        .with_columns((pl.col("store_id") + " · " + pl.col("partner_name")).alias("label"))
        .sort("roi")
        .tail(30)
    )
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.25 * shown.height + 1)))
    colours = [
        "#dc2626" if r < 0 else ("#94a3b8" if k == "paid_channel" else "#2563eb")
        for r, k in zip(shown["roi"].to_list(), shown["kind"].to_list(), strict=True)
    ]
    ax.barh(shown["label"].to_list(), shown["roi"].to_list(), color=colours)
    ax.axvline(0, color="#334155", linewidth=0.8)
    ax.set_title("ROI per partner (grey: paid channels; red: costs more than it brings)")
    ax.grid(axis="x", alpha=0.3)
    return plot(fig)
