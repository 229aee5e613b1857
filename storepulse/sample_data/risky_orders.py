"""Risky orders: fraud and abuse, 0.3-1 % of a store's orders, with what happened later.

| kind | what it looks like | later |
|---|---|---|
| `card_testing` | bursts of 4-12 small orders within minutes from 1-4 brand-new accounts, card from anywhere | declined, or a chargeback |
| `stolen_card` | a new account's first order 2-4x a big basket, card of the store's country, shipped to a far country | chargeback |
| `cod_refusal` | (stores that offer cash on delivery) an account that orders COD again and again and refuses most parcels | refused at the door |
| `reseller` | 3-8 new accounts sharing one phone, each buying a best seller in bulk with the welcome discount | none (kept), margin lost |

Every risky order is a new row (a copy of a real basket of the store, scaled where
the kind needs it, money recomputed), from new accounts (new customers rows). Recent
ones have no outcome yet: those are the ones a merchant can still stop.

Truth: `_truth/risky_orders.csv` (every risky order, its kind, group and outcome).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from .growth import ExtraOrders, OrderSpec, StoreClock, build_orders, concat_extra, empty_extra
from .markets import CROSS_BORDER, MARKETS, PAYMENT_MIX
from .people import draw_identities
from .store import StoreData

DAY = 86_400
SHARE_RANGE = (0.003, 0.01)
MIN_RISKY = 4
KIND_WEIGHTS = {"card_testing": 0.30, "stolen_card": 0.25, "reseller": 0.25, "cod_refusal": 0.20}
RECENT_DAYS = 3
CARD_COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "BR", "MX", "SG")
TRUTH_SCHEMA = {
    "store_id": pl.String, "order_id": pl.String, "customer_id": pl.String, "kind": pl.String,
    "group_id": pl.String, "outcome": pl.String, "created_at": pl.String,
}  # fmt: skip


@dataclass
class RiskyOrders:
    accounts: pl.DataFrame  # customers.csv rows of the new accounts
    extra: ExtraOrders
    truth: dict[str, pl.DataFrame]


@dataclass
class _Group:
    kind: str
    accounts: list[int] = field(default_factory=list)  # account numbers (new accounts)
    # One entry per order, appended together by add_order.
    source: list[int] = field(default_factory=list)
    account_of_order: list[int] = field(default_factory=list)
    day: list[int] = field(default_factory=list)
    seconds: list[int] = field(default_factory=list)
    payment: list[str] = field(default_factory=list)
    ship: list[str] = field(default_factory=list)
    billing: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    refunded: list[bool] = field(default_factory=list)
    cancel_after: list[int] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    factor: list[float] = field(default_factory=list)
    discount_rate: list[float] = field(default_factory=list)

    def add_order(
        self, *, source: int, account: int, day: int, seconds: int, payment: str, ship: str,
        billing: str, status: str, outcome: str, refunded: bool = False, cancel_after: int = 0,
        factor: float = 1.0, code: str = "", discount_rate: float = 0.0,
    ) -> None:  # fmt: skip
        """One risky order: a copy of order `source` scaled by `factor`, placed by new
        account `account` on `day` at `seconds`. Callers pass the arguments in the order
        they draw them, so the random stream does not depend on this signature."""
        self.source.append(source)
        self.account_of_order.append(account)
        self.day.append(day)
        self.seconds.append(seconds)
        self.payment.append(payment)
        self.ship.append(ship)
        self.billing.append(billing)
        self.code.append(code)
        self.status.append(status)
        self.refunded.append(refunded)
        self.cancel_after.append(cancel_after)
        self.outcome.append(outcome)
        self.factor.append(factor)
        self.discount_rate.append(discount_rate)


def draw_risky_orders(
    rng: np.random.Generator, data: StoreData, start: date, clock: StoreClock, fx: np.ndarray
) -> RiskyOrders:
    profile = data.profile
    orders = data.orders
    n_days = int(fx.size)
    country = profile.country
    valid = orders["cancelled_at"].is_null().to_numpy()
    total = orders["total"].to_numpy()
    no_code = orders["_discount_code"].to_numpy() == ""
    lines_per_order = np.bincount(
        data.order_lines["_order_index"].to_numpy(), minlength=orders.height
    )
    single = lines_per_order == 1
    cheap_pool = np.flatnonzero(valid & no_code & single & (total <= np.quantile(total, 0.15)))
    big_pool = np.flatnonzero(valid & (total >= np.quantile(total, 0.9)))
    any_pool = np.flatnonzero(valid & no_code & (lines_per_order > 0))
    if min(cheap_pool.size, big_pool.size, any_pool.size) == 0:
        return RiskyOrders(
            pl.DataFrame(), empty_extra(data), {"risky_orders": pl.DataFrame(schema=TRUTH_SCHEMA)}
        )
    # Best sellers (by lines) for resellers.
    sku_counts = data.order_lines.group_by("sku").len().sort("len", descending=True)
    top_skus = set(sku_counts["sku"].head(max(1, sku_counts.height // 10)).to_list())
    single_top = np.zeros(orders.height, dtype=bool)
    top_orders = data.order_lines.filter(pl.col("sku").is_in(list(top_skus)))["_order_index"]
    single_top[top_orders.to_numpy()] = True
    reseller_pool = np.flatnonzero(valid & single & single_top)
    if reseller_pool.size == 0:
        reseller_pool = any_pool

    has_cod = any(method == "cod" for method, _ in PAYMENT_MIX.get(country, []))
    weights = {k: w for k, w in KIND_WEIGHTS.items() if k != "cod_refusal" or has_cod}
    target = max(MIN_RISKY, int(round(rng.uniform(*SHARE_RANGE) * orders.height)))
    far = [c for c in MARKETS if c not in CROSS_BORDER[profile.market.region]]
    groups: list[_Group] = []
    n_accounts = 0

    def start_day(first_of_kind: bool, span: int) -> int:
        if first_of_kind and rng.random() < 0.6:  # something to review right now
            return int(rng.integers(max(0, n_days - RECENT_DAYS), n_days))
        return int(rng.integers(0, max(1, n_days - span)))

    for kind, weight in weights.items():
        want = int(round(target * weight / sum(weights.values())))
        made = 0
        while made < want:
            g = _Group(kind)
            first = made == 0
            if kind == "card_testing":
                size = int(rng.integers(4, 13))
                accounts = list(
                    range(n_accounts, n_accounts + int(rng.integers(1, min(4, size) + 1)))
                )
                d0 = start_day(first, 1)
                t = int(rng.integers(0, DAY - 2 * 3600))  # the burst ends before midnight
                card_country = str(rng.choice(CARD_COUNTRIES))
                for i in range(size):
                    declined = rng.random() < 0.35
                    day, sec = d0 + (t // DAY), t % DAY
                    late = day >= n_days - 30
                    g.add_order(
                        source=int(rng.choice(cheap_pool)),
                        account=accounts[i % len(accounts)],
                        day=day,
                        seconds=sec,
                        payment="card",
                        ship=country,
                        billing=card_country,
                        status="voided" if declined else ("paid" if late else "refunded"),
                        refunded=not declined and not late,
                        cancel_after=int(rng.integers(30, 600)) if declined else 0,
                        outcome="declined" if declined else ("pending" if late else "chargeback"),
                    )
                    t += int(rng.integers(40, 480))
            elif kind == "stolen_card":
                accounts = [n_accounts]
                size = 1 + int(rng.random() < 0.3)
                d0 = start_day(first, 4)
                ship_to = str(rng.choice(far))
                for i in range(size):
                    day = min(d0 + i * int(rng.integers(1, 4)), n_days - 1)
                    late = day >= n_days - 45
                    g.add_order(
                        source=int(rng.choice(big_pool)),
                        account=accounts[0],
                        day=day,
                        seconds=int(rng.integers(0, DAY)),
                        payment="card",
                        ship=ship_to,
                        billing=country,
                        status="paid" if late else "refunded",
                        refunded=not late,
                        outcome="pending" if late else "chargeback",
                        factor=float(rng.integers(2, 5)),
                    )
            elif kind == "cod_refusal":
                accounts = [n_accounts]
                size = int(rng.integers(3, 8))
                gaps = rng.integers(8, 41, size)
                span = int(gaps.sum())
                d0 = start_day(first, span) if not first else max(0, n_days - 1 - span)
                day = d0
                for i in range(size):
                    day = min(day + (int(gaps[i]) if i else 0), n_days - 1)
                    sec = int(rng.integers(8 * 3600, 23 * 3600))
                    refuse = rng.random() < 0.85
                    delivery = int(rng.integers(3, 8)) * DAY
                    undelivered = day * DAY + sec + delivery >= n_days * DAY
                    if undelivered:
                        status, cancel_after, outcome = "pending", 0, "pending"
                    elif refuse:
                        status, cancel_after, outcome = "voided", delivery, "refused"
                    else:
                        status, cancel_after, outcome = "paid", 0, "delivered"
                    g.add_order(
                        source=int(rng.choice(any_pool)),
                        account=accounts[0],
                        day=day,
                        seconds=sec,
                        payment="cod",
                        ship=country,
                        billing=country,
                        status=status,
                        cancel_after=cancel_after,
                        outcome=outcome,
                    )
            else:  # reseller: several accounts, one phone, welcome discount each time
                k = int(rng.integers(3, 9))
                accounts = list(range(n_accounts, n_accounts + k))
                d0 = start_day(first, 45)
                for j, account in enumerate(accounts):
                    day = min(d0 + j * int(rng.integers(1, 8)), n_days - 1)
                    for repeat in range(1 + int(rng.random() < 0.25)):
                        g.add_order(
                            source=int(rng.choice(reseller_pool)),
                            account=account,
                            day=min(day + repeat * int(rng.integers(2, 10)), n_days - 1),
                            seconds=int(rng.integers(8 * 3600, 23 * 3600)),
                            payment=str(rng.choice(["card", "paypal"]))
                            if country not in {"MY", "TH", "SG"}
                            else "card",
                            ship=country,
                            billing=country,
                            status="paid",
                            outcome="none",
                            factor=float(rng.integers(3, 7)),
                            code="WELCOME20" if repeat == 0 else "",
                            discount_rate=0.20 if repeat == 0 else 0.0,
                        )
            g.accounts = accounts
            n_accounts += len(accounts)
            groups.append(g)
            made += len(g.source)

    # The accounts.
    account_country = np.full(n_accounts, country, dtype=object)
    identities = draw_identities(rng, account_country, 900_001 + np.arange(n_accounts))
    first_seen = np.full(n_accounts, np.iinfo(np.int64).max, dtype=np.int64)
    for g in groups:
        for a, d, s in zip(g.account_of_order, g.day, g.seconds, strict=True):
            first_seen[a] = min(first_seen[a], d * DAY + s)
        if g.kind == "reseller":
            shared = identities["phone"][g.accounts[0]]
            for a in g.accounts:
                identities["phone"][a] = shared
    created = np.maximum(first_seen - rng.integers(60, 1200, n_accounts), 0)
    prefix = profile.store_id[:2].upper()
    account_ids = np.array([f"c9{a + 1:07d}" for a in range(n_accounts)], dtype=object)
    accounts = pl.DataFrame(
        {
            "store_id": profile.store_id,
            "customer_id": account_ids,
            "email": identities["email"],
            "phone": identities["phone"],
            "first_name": identities["first_name"],
            "last_name": identities["last_name"],
            "country": account_country,
            "created_at": clock.stamp(created // DAY, created % DAY),
            "accepts_email_marketing": rng.random(n_accounts) < 0.1,
            "accepts_sms_marketing": np.zeros(n_accounts, dtype=bool),
            "ad_personalization_consent": np.zeros(n_accounts, dtype=bool),
        }
    )

    def column(name: str) -> np.ndarray:
        return np.array([v for g in groups for v in getattr(g, name)], dtype=object)

    account_of_order = column("account_of_order").astype(np.int64)
    day = column("day").astype(np.int64)
    seconds = column("seconds").astype(np.int64)
    n_orders = day.size
    order_ids = np.array([f"{prefix}R{100001 + i}" for i in range(n_orders)], dtype=object)
    order_time = day * DAY + seconds
    first_of_account = np.zeros(n_orders, dtype=bool)
    first_of_account[
        [int(np.flatnonzero(account_of_order == a)[np.argmin(order_time[account_of_order == a])])
         for a in np.unique(account_of_order)]
    ] = True  # fmt: skip
    extra = build_orders(
        data,
        OrderSpec(
            source=column("source").astype(np.int64),
            order_id=order_ids,
            customer_id=account_ids[account_of_order],
            email=identities["email"][account_of_order],
            customer_index=np.full(n_orders, -1, dtype=np.int64),
            day=day,
            seconds=seconds,
            payment_method=column("payment"),
            device=np.where(rng.random(n_orders) < 0.7, "desktop", "mobile").astype(object),
            ship_country=column("ship"),
            billing_country=column("billing"),
            discount_code=column("code"),
            financial_status=column("status"),
            refunded=column("refunded").astype(bool),
            cancel_after_seconds=column("cancel_after").astype(np.int64),
            utm_source=np.full(n_orders, "", dtype=object),
            utm_medium=np.full(n_orders, "", dtype=object),
            utm_campaign=np.full(n_orders, "", dtype=object),
            is_first=first_of_account,
            quantity_factor=column("factor").astype(float),
            discount_rate=column("discount_rate").astype(float),
        ),
        clock,
        fx,
    )
    group_ids = np.array(
        [f"{g.kind}-{i + 1}" for i, g in enumerate(groups) for _ in g.source], dtype=object
    )
    truth = pl.DataFrame(
        {
            "store_id": profile.store_id,
            "order_id": order_ids,
            "customer_id": account_ids[account_of_order],
            "kind": np.array([g.kind for g in groups for _ in g.source], dtype=object),
            "group_id": group_ids,
            "outcome": column("outcome"),
            "created_at": extra.orders["created_at"],
        },
        schema=TRUTH_SCHEMA,
    )
    return RiskyOrders(accounts, concat_extra(data, [extra]), {"risky_orders": truth})
