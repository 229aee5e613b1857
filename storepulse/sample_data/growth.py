"""Growth levers on top of a simulated store: partners (KOLs and affiliates), A/B
tests and risky orders (SAMPLE_DATA.md, "Experiments, partners and risky orders").

Everything here draws from streams of its own (`growth_streams`), never from the
store's simulation stream, so the store's orders, customers and truth stay exactly
what they were. What it adds:

- a `discount_code` for every order (the store's own codes, partner codes on the
  orders of the customers a partner brought, leaked codes) and a `billing_country`;
- new orders: the extra purchases an experiment's treatment caused, and the risky
  orders (card testing, stolen cards, COD refusals, resellers), with their line items;
- new customers: the accounts fraudsters and resellers open;
- landing files `partners.csv` and `experiment_assignments.csv`;
- truth: `_truth/partners.csv`, `partner_orders.csv`, `experiments.csv`,
  `risky_orders.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import numpy as np
import polars as pl

from .store import StoreData, utc_offsets

# Stream numbers of SeedSequence([seed, GROWTH_STREAM, store index]): 0-5 are the
# store profiles, store seeds, FX, dirt, thin stores and their FX.
GROWTH_STREAM = 6
# Orders shipped to another country than the card's: gifts, expats (canonical files only).
NATURAL_BILLING_MISMATCH = 0.015


@dataclass
class ExtraOrders:
    """New orders in the landing layout of StoreData.orders (helper columns included)
    and their lines; `source` says which module made them."""

    orders: pl.DataFrame
    lines: pl.DataFrame


@dataclass
class GrowthData:
    discount_code: np.ndarray  # per existing order
    billing_country: np.ndarray  # per existing order
    extra_customers: pl.DataFrame  # customers.csv rows of new accounts
    extra: ExtraOrders  # experiment effects and risky orders
    partners: pl.DataFrame  # partners.csv (empty: no file)
    assignments: pl.DataFrame  # experiment_assignments.csv (empty: no file)
    truth: dict[str, pl.DataFrame] = field(default_factory=dict)


def growth_streams(seed: int, index: int) -> list[np.random.Generator]:
    """Partners, experiments, risky orders, billing countries: one generator each."""
    children = np.random.SeedSequence([seed, GROWTH_STREAM, index]).spawn(4)
    return [np.random.default_rng(child) for child in children]


class StoreClock:
    """Local timestamps of a store's days: '2025-11-01T14:22:10-04:00'."""

    def __init__(self, timezone: str, start: date, n_days: int):
        self.start = start
        self.n_days = n_days
        self.offsets = np.array(utc_offsets(timezone, start, n_days), dtype=object)

    def stamp(self, day: np.ndarray, seconds: np.ndarray) -> list[str]:
        base = datetime.combine(self.start, time(0))
        out = []
        for d, s in zip(np.asarray(day).tolist(), np.asarray(seconds).tolist(), strict=True):
            moment = base + timedelta(days=int(d), seconds=int(s))
            offset_day = min(max(int(d + s // 86400), 0), self.n_days - 1)
            out.append(moment.strftime("%Y-%m-%dT%H:%M:%S") + self.offsets[offset_day])
        return out


def order_seconds(orders: pl.DataFrame) -> np.ndarray:
    """Seconds after local midnight of each order (from its created_at)."""
    clock = orders["created_at"].str.slice(11, 8).str.split(":")
    parts = clock.list.to_struct(fields=["h", "m", "s"]).struct.unnest()
    return (
        parts["h"].cast(pl.Int64) * 3600
        + parts["m"].cast(pl.Int64) * 60
        + parts["s"].cast(pl.Int64)
    ).to_numpy()


@dataclass
class OrderSpec:
    """What differs between a new order and the existing order it copies the basket of."""

    source: np.ndarray  # index into StoreData.orders
    order_id: np.ndarray
    customer_id: np.ndarray
    email: np.ndarray
    customer_index: np.ndarray  # -1 for new accounts
    day: np.ndarray
    seconds: np.ndarray
    payment_method: np.ndarray
    device: np.ndarray
    ship_country: np.ndarray
    billing_country: np.ndarray
    discount_code: np.ndarray
    financial_status: np.ndarray
    refunded: np.ndarray  # bool: refunded in full (chargeback)
    cancel_after_seconds: np.ndarray  # 0 = not cancelled
    utm_source: np.ndarray
    utm_medium: np.ndarray
    utm_campaign: np.ndarray
    is_first: np.ndarray
    quantity_factor: np.ndarray | None = None  # None: the basket as it was
    discount_rate: np.ndarray | None = None  # with quantity_factor: discount on the new basket


def build_orders(
    data: StoreData, spec: OrderSpec, clock: StoreClock, fx: np.ndarray
) -> ExtraOrders:
    """New orders with the basket (lines, prices, money) of existing orders.

    With `quantity_factor` the basket is scaled and the money recomputed the way the
    store computes it (line totals, discount, free-shipping threshold, tax on the
    discounted subtotal), so totals still equal lines - discount + shipping + tax.
    """
    orders, lines = data.orders, data.order_lines
    market = data.profile.market
    n = spec.source.size
    src_lines = lines.with_row_index("_line").filter(
        pl.col("_order_index").is_in(np.unique(spec.source).tolist())
    )
    # One block of lines per new order (a source may be copied several times).
    picks = pl.DataFrame({"_new": np.arange(n), "_order_index": spec.source.astype(np.int64)}).join(
        src_lines, on="_order_index", how="inner", maintain_order="left"
    )
    factor = np.ones(n) if spec.quantity_factor is None else np.asarray(spec.quantity_factor, float)
    qty_factor = factor[picks["_new"].to_numpy()]
    quantity = np.round(picks["quantity"].to_numpy() * qty_factor).astype(np.int64)
    unit_price = picks["unit_price"].to_numpy()
    line_discount = np.round(picks["line_discount"].to_numpy() * qty_factor, 2)
    line_total = np.round(quantity * unit_price - line_discount, 2)
    new_lines = pl.DataFrame(
        {
            "store_id": data.profile.store_id,
            "order_id": spec.order_id[picks["_new"].to_numpy()],
            "line_no": picks["line_no"],
            "sku": picks["sku"],
            "quantity": quantity,
            "unit_price": unit_price,
            "line_discount": line_discount,
            "_title": picks["_title"],
            "_order_index": picks["_new"],
        }
    )
    src = orders[spec.source.tolist()]
    subtotal = src["subtotal"].to_numpy().copy()
    discount = src["discount"].to_numpy().copy()
    shipping = src["shipping"].to_numpy().copy()
    tax = src["tax"].to_numpy().copy()
    total = src["total"].to_numpy().copy()
    if spec.quantity_factor is not None:
        valid = orders.filter(pl.col("cancelled_at").is_null())
        free = valid.filter(pl.col("shipping") == 0)
        threshold = float((free["subtotal"] - free["discount"]).min() or 0.0)
        fee = float(orders["shipping"].max() or 0.0)
        subtotal = np.round(
            np.bincount(picks["_new"].to_numpy(), weights=line_total, minlength=n), 2
        )
        rate = np.zeros(n) if spec.discount_rate is None else np.asarray(spec.discount_rate)
        discount = np.round(subtotal * rate, 2)
        shipping = np.where(subtotal - discount >= threshold, 0.0, fee)
        tax = np.round(market.tax_rate * (subtotal - discount), 2)
        total = np.round(subtotal - discount + shipping + tax, 2)
    refunded_amount = np.where(spec.refunded, total, 0.0)
    cancelled = spec.cancel_after_seconds > 0
    created_at = clock.stamp(spec.day, spec.seconds)
    cancelled_at = clock.stamp(spec.day, spec.seconds + spec.cancel_after_seconds)
    new_orders = pl.DataFrame(
        {
            "store_id": data.profile.store_id,
            "order_id": spec.order_id,
            "customer_id": spec.customer_id,
            "email": spec.email,
            "created_at": created_at,
            "currency": market.currency,
            "subtotal": subtotal,
            "discount": discount,
            "shipping": shipping,
            "tax": tax,
            "total": total,
            "financial_status": spec.financial_status,
            "refunded_amount": np.round(refunded_amount, 2),
            "cancelled_at": pl.Series(cancelled_at).set(pl.Series(~cancelled), None),
            "payment_method": spec.payment_method,
            "utm_source": spec.utm_source,
            "utm_medium": spec.utm_medium,
            "utm_campaign": spec.utm_campaign,
            "device": spec.device,
            "ship_country": spec.ship_country,
            "discount_code": spec.discount_code,
            "billing_country": spec.billing_country,
            "_day": spec.day.astype(np.int64),
            "_is_first": spec.is_first,
            "_last_click": "",
            "_true_channel": "",
            "_discount_code": spec.discount_code,
            "_total_usd": total * fx[spec.day],
            "_customer_index": spec.customer_index.astype(np.int64),
        },
        schema_overrides={
            "cancelled_at": pl.String,
            "discount_code": pl.String,
            "billing_country": pl.String,
        },
    )
    return ExtraOrders(new_orders, new_lines)


# The columns growth adds to every order (new rows carry them from the start).
NEW_ORDER_COLUMNS = {"discount_code": pl.String, "billing_country": pl.String}


def _order_schema(data: StoreData) -> pl.Schema:
    schema = dict(data.orders.schema)
    schema.update({k: v for k, v in NEW_ORDER_COLUMNS.items() if k not in schema})
    return pl.Schema(schema)


def empty_extra(data: StoreData) -> ExtraOrders:
    return ExtraOrders(pl.DataFrame(schema=_order_schema(data)), data.order_lines.clear())


def concat_extra(data: StoreData, parts: list[ExtraOrders]) -> ExtraOrders:
    """Several batches of new orders as one, line `_order_index` renumbered."""
    orders = [p.orders for p in parts if p.orders.height]
    if not orders:
        return empty_extra(data)
    lines, offset = [], 0
    for part in parts:
        if part.orders.height:
            lines.append(part.lines.with_columns(pl.col("_order_index") + offset))
            offset += part.orders.height
    schema = _order_schema(data)
    frame = pl.concat([o.select(schema.names()).cast(schema) for o in orders])
    line_schema = data.order_lines.schema
    return ExtraOrders(
        frame, pl.concat([x.select(line_schema.names()).cast(line_schema) for x in lines])
    )


def landing_order_ids(data: StoreData, extra: ExtraOrders) -> dict[str, str]:
    """Order ids as the landing files show them, where they differ from the simulation's:
    the Shopify export names orders '#1001', '#1002'... (new orders after the store's)."""
    if not data.profile.real_exports:
        return {}
    ids = data.orders["order_id"].to_list() + extra.orders["order_id"].to_list()
    return {order_id: f"#{i + 1001}" for i, order_id in enumerate(ids)}


def with_growth(data: StoreData, growth: GrowthData) -> StoreData:
    """The store's orders with the growth columns (discount_code, billing_country); the
    Shopify export reads its `Discount Code` from `_discount_code`."""
    data.orders = data.orders.with_columns(
        pl.Series("_discount_code", growth.discount_code, dtype=pl.String),
        pl.Series("discount_code", growth.discount_code, dtype=pl.String),
        pl.Series("billing_country", growth.billing_country, dtype=pl.String),
    )
    return data


def draw_growth(data: StoreData, seed: int, index: int, start: date, fx: np.ndarray) -> GrowthData:
    """Partners, experiments and risky orders of one store (fx: the store currency's
    daily USD rate over the store's days)."""
    from .experiments import draw_experiments
    from .partners import draw_partners
    from .risky_orders import draw_risky_orders

    partner_rng, experiment_rng, risky_rng, billing_rng = growth_streams(seed, index)
    profile = data.profile
    n_days = int(fx.size)
    clock = StoreClock(profile.market.timezone, start, n_days)
    fx_rounded = np.round(fx, 8)
    orders = data.orders
    billing = orders["ship_country"].to_numpy().astype(object).copy()
    if not profile.real_exports:
        # The Shopify export's Billing Country is the shipping country for existing orders.
        gift = billing_rng.random(orders.height) < NATURAL_BILLING_MISMATCH
        billing[gift] = profile.country
        same = gift & (orders["ship_country"].to_numpy() == profile.country)
        neighbours = ["US", "GB", "DE", "CA", "AU", "FR"]
        billing[same] = billing_rng.choice(neighbours, int(same.sum()))
        billing[same & (billing == profile.country)] = "GB" if profile.country != "GB" else "US"
    truth: dict[str, pl.DataFrame] = {}
    experiments = draw_experiments(experiment_rng, data, start, clock, fx)
    risky = draw_risky_orders(risky_rng, data, start, clock, fx)
    extra = concat_extra(data, [experiments.extra, risky.extra])
    partners = draw_partners(partner_rng, data, start, extra.orders, fx_rounded)
    for part in (experiments.truth, risky.truth, partners.truth):
        truth.update(part)
    return GrowthData(
        discount_code=partners.discount_code,
        billing_country=billing,
        extra_customers=risky.accounts,
        extra=extra,
        partners=partners.landing,
        assignments=experiments.assignments,
        truth=truth,
    )
