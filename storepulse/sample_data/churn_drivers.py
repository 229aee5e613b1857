"""Observable churn drivers: how a customer's first order and profile move their dropout.

Real DTC churn is not the same for everyone: customers who came through a
welcome discount, paid social, cash on delivery, a refunded first order or
without e-mail consent leave more often; a large first basket and organic,
e-mail or direct acquisition go with loyal customers. Each store draws its own
effect sizes from the ranges below (log-odds shifts of the per-purchase dropout
probability, and milder log shifts of the purchase rate), so the effects are
real, moderate and not the same in every shop. The store's unobserved
heterogeneity (the gamma rate and beta dropout draws) stays on top, so churn is
predictable in part only.

Sources for direction and rough size (all report retention/LTV gaps of
roughly 10-40 %, i.e. a few tenths in log-odds, for each driver taken alone):
discount-acquired cohorts repeat less (e.g. Anderson & Simester 2004 on deep
first-purchase discounts; Shopify/Klaviyo benchmark reports on welcome-offer
cohorts); paid-social and influencer cohorts have lower 90/180-day repeat rates
than search, e-mail, organic and direct cohorts (Klaviyo, Triple Whale, Northbeam
cohort benchmarks); COD orders have 20-30 % refusal rates and weaker repeat
behaviour in SEA/LatAm/MENA; a returned or refunded first order is among the
strongest single churn signals in e-commerce cohort studies; subscribers to
e-mail marketing repeat clearly more; higher first-order value predicts higher
CLV; emerging-market customers churn somewhat more (logistics, trust).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# Log-odds shift of the per-purchase dropout probability, (low, high) per store.
CHANNEL_DROPOUT_EFFECT: dict[str, tuple[float, float]] = {
    "tiktok": (0.35, 0.65),
    "meta": (0.25, 0.50),
    "pinterest": (0.15, 0.40),
    "influencer": (0.20, 0.45),
    "affiliate": (0.10, 0.35),
    "google": (0.00, 0.15),
    "organic": (-0.30, -0.10),
    "direct": (-0.35, -0.15),
    "email": (-0.45, -0.20),
}
DROPOUT_EFFECT_RANGES: dict[str, tuple[float, float]] = {
    "first_order_discount": (0.20, 0.45),  # used the welcome code on the first order
    "first_order_cod": (0.25, 0.55),  # paid the first order cash on delivery
    "first_order_refunded": (0.50, 0.90),  # first order (partly) refunded
    "no_email_consent": (0.25, 0.50),  # did not accept e-mail marketing
    "first_basket_doubling": (-0.35, -0.15),  # per doubling of first-order items (value)
    "emerging_market": (0.10, 0.30),  # ships to SG/MY/TH/BR/MX/AE
}
# Log shift of the purchase rate (milder), (low, high) per store.
RATE_EFFECT_RANGES: dict[str, tuple[float, float]] = {
    "email_consent": (0.10, 0.25),  # reminders and offers bring them back sooner
    "first_order_discount": (-0.15, -0.05),
    "paid_social": (-0.10, 0.00),  # meta, tiktok, pinterest, influencer
    "first_basket_doubling": (0.05, 0.15),
}
PAID_SOCIAL = ("meta", "tiktok", "pinterest", "influencer")
EMERGING_GROWTH = 0.2  # markets growing ~22 %/yr (SAMPLE_DATA.md) are the emerging ones


@dataclass
class ChurnDrivers:
    """One store's drawn effect sizes."""

    channel: dict[str, float]
    dropout: dict[str, float]
    rate: dict[str, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ChurnDrivers:
        return cls(
            channel={c: float(rng.uniform(*r)) for c, r in CHANNEL_DROPOUT_EFFECT.items()},
            dropout={k: float(rng.uniform(*r)) for k, r in DROPOUT_EFFECT_RANGES.items()},
            rate={k: float(rng.uniform(*r)) for k, r in RATE_EFFECT_RANGES.items()},
        )

    def shifts(
        self,
        channel: np.ndarray,
        first_order_discount: np.ndarray,
        first_order_cod: np.ndarray,
        first_order_refunded: np.ndarray,
        email_consent: np.ndarray,
        first_order_items: np.ndarray,
        emerging_market: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(dropout log-odds shift, purchase-rate log shift) per customer.

        Within a store the shifts are centred (the store's overall repeat rate is
        set by its PurchaseBehaviour); only the market shift is absolute, so
        stores selling into emerging markets keep somewhat more churn.
        """
        d = self.dropout
        doublings = np.log2(np.maximum(first_order_items, 1))
        channel_shift = np.array([self.channel.get(str(c), 0.0) for c in channel])
        dropout = (
            channel_shift
            + d["first_order_discount"] * first_order_discount
            + d["first_order_cod"] * first_order_cod
            + d["first_order_refunded"] * first_order_refunded
            + d["no_email_consent"] * ~email_consent.astype(bool)
            + d["first_basket_doubling"] * doublings
        )
        r = self.rate
        rate = (
            r["email_consent"] * email_consent
            + r["first_order_discount"] * first_order_discount
            + r["paid_social"] * np.isin(channel, PAID_SOCIAL)
            + r["first_basket_doubling"] * doublings
        )
        if dropout.size:
            dropout = dropout - dropout.mean()
            rate = rate - rate.mean()
        dropout = dropout + d["emerging_market"] * emerging_market
        return dropout, rate

    def frame(self, store_id: str) -> pl.DataFrame:
        """Rows of `_truth/churn_drivers.csv`: store_id, driver, target, effect."""
        rows = [("channel=" + c, "dropout_log_odds", v) for c, v in self.channel.items()]
        rows += [(k, "dropout_log_odds", v) for k, v in self.dropout.items()]
        rows += [(k, "purchase_rate_log", v) for k, v in self.rate.items()]
        return pl.DataFrame(
            {
                "store_id": store_id,
                "driver": [r[0] for r in rows],
                "target": [r[1] for r in rows],
                "effect": [round(r[2], 4) for r in rows],
            }
        )
