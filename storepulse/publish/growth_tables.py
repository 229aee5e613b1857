"""The growth-lever tables the publish layer reads (DESIGN §4 minimum columns, plus
the companions their files and report sections use)."""

from __future__ import annotations

GROWTH_TABLES: dict[str, tuple[str, ...]] = {
    "marts.partner_scorecard": (
        "store_id", "partner_id", "period_start", "period_end", "orders", "new_customers",
        "revenue_usd", "refund_rate", "repeat_rate_90d", "cost_usd", "roi", "cac_usd",
    ),
    "marts.partner_unlinked_codes": ("store_id", "discount_code", "orders", "revenue_usd"),
    "marts.experiment_readout": (
        "store_id", "experiment_id", "variant", "customers", "metric", "value", "lift",
        "ci_low", "ci_high", "p_value", "decision",
    ),
    "marts.experiment_plan": (
        "store_id", "metric", "baseline", "relative_lift", "alpha", "power",
        "customers_per_variant", "eligible_customers", "period_days",
    ),
    "scores.order_risk": (
        "store_id", "order_id", "created_at", "risk_score", "flags", "model_version",
    ),
}  # fmt: skip
