"""`generate()`: write a landing folder of sample stores plus `_truth/`, store by store."""

from __future__ import annotations

import time as clock
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
import polars.selectors as cs

from . import dirt as dirt_mod
from .exports import (
    meta_ads_export,
    shopify_orders_export,
    tiktok_ads_export,
    write_google_ads_export,
)
from .growth import GrowthData, draw_growth, landing_order_ids, with_growth
from .markets import CATEGORY_WEIGHTS, MARKETS, STORE_MARKET_WEIGHTS, STORE_NAME_WORDS
from .media import CHANNEL_ADOPTION, PAID_CHANNELS
from .simulation import simulate_store
from .store import StoreData, StoreProfile
from .truth import TRUTH_DIR, TRUTH_SCHEMAS


@dataclass(frozen=True)
class Scale:
    stores: int
    customers: int
    skus: int
    years: int


SCALES = {
    "tiny": Scale(2, 2_000, 40, 1),
    "small": Scale(5, 50_000, 500, 2),
    "medium": Scale(20, 500_000, 5_000, 2),
    "large": Scale(100, 5_000_000, 25_000, 3),
}
REAL_EXPORT_STORE_INDEX = 1  # the second store ships Shopify/Meta/Google/TikTok exports
LATE_FILE_STORE_INDEX = 0
# With dirt on, this store's Meta ad account bills in USD while its orders are in EUR.
MISMATCHED_AD_CURRENCY = "USD"
CANONICAL_KINDS = [
    "customers",
    "orders",
    "order_lines",
    "products",
    "inventory",
    "ad_spend",
    "sessions",
]


@dataclass(frozen=True)
class ThinStore:
    """A store as real ones often come (SAMPLE_DATA.md, "Stores as they really come"):
    young (`days` of history), small (`customers`), advertising on `channels` only, or
    shipping orders alone (`orders_only`). Drawn after the main stores, from a seed of its
    own, so adding one never changes the others."""

    store_id: str
    store_name: str
    country: str
    category: str
    customers: int
    skus: int = 40
    days: int | None = None  # None: the scale's full history
    channels: tuple[str, ...] = ()
    orders_only: bool = False


# Every scale from small up carries one of each (SAMPLE_DATA.md).
THIN_STORES = (
    ThinStore("sprout-kids-gb", "Sprout Kids", "GB", "baby", customers=220, days=100,
              channels=("meta", "google")),
    ThinStore("solo-paws-au", "Solo Paws", "AU", "pets", customers=2_500, channels=("google",)),
    ThinStore("kopi-beauty-my", "Kopi Beauty", "MY", "beauty", customers=1_500, orders_only=True),
)  # fmt: skip


@dataclass
class GenerationSummary:
    """What generate() wrote: rows per file (relative path) and per kind, and the store ids."""

    out: Path
    scale: str
    seed: int
    store_ids: list[str]
    real_export_store_id: str
    start_date: date
    end_date: date
    rows_by_kind: dict[str, int] = field(default_factory=dict)
    rows_by_file: dict[str, int] = field(default_factory=dict)
    dirt_items: int = 0
    seconds: float = 0.0


def _slug(text: str) -> str:
    return "-".join("".join(ch for ch in part.lower() if ch.isalnum()) for part in text.split())


def draw_profiles(scale: Scale, seed: int) -> list[StoreProfile]:
    """Store markets, categories, names and sizes; every store gets its own independent seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    store_seeds = np.random.SeedSequence([seed, 1]).spawn(scale.stores)
    countries = ["US", "DE"] + list(
        rng.choice(
            list(STORE_MARKET_WEIGHTS),
            scale.stores - 2,
            p=np.array(list(STORE_MARKET_WEIGHTS.values())),
        )
    )
    categories = ["electronics", "home"] + list(
        rng.choice(
            list(CATEGORY_WEIGHTS), scale.stores - 2, p=np.array(list(CATEGORY_WEIGHTS.values()))
        )
    )
    size = np.ones(scale.stores) if scale.stores <= 2 else rng.lognormal(0.0, 0.8, scale.stores)
    size /= size.sum()
    sku_share = np.sqrt(size) / np.sqrt(size).sum()
    prefixes, nouns = STORE_NAME_WORDS
    used: set[str] = set()
    profiles = []
    for i in range(scale.stores):
        country, category = str(countries[i]), str(categories[i])
        if i == 0:
            name = "Nova Gadgets"
        elif i == 1:
            name = "Luma Home"
        else:
            name = f"{prefixes[rng.integers(len(prefixes))]} {nouns[category][rng.integers(len(nouns[category]))]}"
        store_id = f"{_slug(name)}-{country.lower()}"
        suffix = 2
        while store_id in used:
            store_id = f"{_slug(name)}-{country.lower()}-{suffix}"
            suffix += 1
        used.add(store_id)
        if i == REAL_EXPORT_STORE_INDEX:
            channels = ["meta", "google", "tiktok"]
        else:
            channels = [c for c in PAID_CHANNELS if rng.random() < CHANNEL_ADOPTION[c]] or ["meta"]
        profiles.append(
            StoreProfile(
                store_id=store_id,
                store_name=name,
                country=country,
                category=category,
                target_customers=max(200, round(scale.customers * size[i])),
                n_skus=max(15, round(scale.skus * sku_share[i])),
                real_exports=i == REAL_EXPORT_STORE_INDEX,
                paid_channels=channels,
                seed=store_seeds[i],
            )
        )
    return profiles


def thin_profiles(thin: tuple[ThinStore, ...], seed: int) -> list[StoreProfile]:
    seeds = np.random.SeedSequence([seed, 4]).spawn(len(thin))
    return [
        StoreProfile(
            store_id=t.store_id,
            store_name=t.store_name,
            country=t.country,
            category=t.category,
            target_customers=t.customers,
            n_skus=t.skus,
            real_exports=False,
            paid_channels=list(t.channels),
            seed=store_seed,
            history_days=t.days,
            orders_only=t.orders_only,
        )
        for t, store_seed in zip(thin, seeds, strict=True)
    ]


def draw_fx(
    seed: int, currencies: list[str], start: date, n_days: int, stream: int = 2
) -> dict[str, np.ndarray]:
    """Daily USD per unit: a random walk with drift and rare moves over 3 %/day (AED is pegged)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    rates = {}
    for currency in sorted(currencies):
        if currency == "USD":
            rates[currency] = np.ones(n_days)
            continue
        base = next(m.usd_per_unit for m in MARKETS.values() if m.currency == currency)
        if currency == "AED":
            rates[currency] = np.full(n_days, base)
            continue
        emerging = currency in {"MYR", "THB", "BRL", "MXN"}
        volatility = 0.007 if emerging else 0.004
        drift = rng.normal(0.0, 0.06) / 365
        steps = drift + rng.normal(0.0, volatility, n_days)
        jumps = rng.random(n_days) < 0.004
        steps[jumps] += rng.choice([-1, 1], jumps.sum()) * rng.uniform(0.031, 0.06, jumps.sum())
        steps[0] = 0.0
        rates[currency] = base * np.exp(np.cumsum(steps))
    return rates


def _empty_as_null(frame: pl.DataFrame) -> pl.DataFrame:
    """Empty text becomes a null so CSV cells are empty, not '""', as real exports write them."""
    return frame.with_columns(
        pl.when(cs.string() != "").then(cs.string()).otherwise(None).name.keep()
    )


def _write(frame: pl.DataFrame, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = _empty_as_null(frame.select([c for c in frame.columns if not c.startswith("_")]))
    if fmt == "parquet":
        path = path.with_suffix(".parquet")
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path


class _TruthWriter:
    """Appends each store's truth rows to `_truth/<name>.csv` so nothing accumulates in memory."""

    def __init__(self, truth_dir: Path, stack: ExitStack):
        truth_dir.mkdir(parents=True, exist_ok=True)
        self.handles: dict[str, IO] = {}
        self.rows: dict[str, int] = {}
        for name, schema in TRUTH_SCHEMAS.items():
            handle = stack.enter_context(
                (truth_dir / f"{name}.csv").open("w", encoding="utf-8", newline="")
            )
            handle.write(",".join(schema) + "\n")
            self.handles[name] = handle
            self.rows[name] = 0

    def append(self, name: str, frame: pl.DataFrame) -> None:
        if frame.height:
            frame.select(list(TRUTH_SCHEMAS[name])).write_csv(
                self.handles[name], include_header=False
            )
            self.rows[name] += frame.height


def generate(
    out: Path,
    scale: str = "tiny",
    seed: int = 0,
    *,
    end_date: date = date(2026, 10, 31),
    fmt: str = "csv",
    dirt: bool = True,
    progress: bool = True,
    thin_stores: tuple[ThinStore, ...] | None = None,
    main_stores: bool = True,
) -> GenerationSummary:
    """Write sample stores to `out` (landing layout) and the ground truth to `out/_truth/`.

    Same arguments, byte-identical files. `fmt="parquet"` applies to canonical files only;
    real-export layouts (the second store's Shopify/Meta/Google/TikTok files) are always CSV.
    `thin_stores`: stores as they really come, after the main ones (default: THIN_STORES
    from small up, none for tiny); `main_stores=False` writes the thin stores alone.
    """
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {sorted(SCALES)}")
    if fmt not in {"csv", "parquet"}:
        raise ValueError(f"fmt {fmt!r} must be 'csv' or 'parquet'")
    started = clock.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SCALES[scale]
    n_days = 365 * spec.years
    start = end_date - timedelta(days=n_days - 1)
    if thin_stores is None:
        thin_stores = () if scale == "tiny" else THIN_STORES
    main = draw_profiles(spec, seed) if main_stores else []
    profiles = main + thin_profiles(tuple(thin_stores), seed)
    if not profiles:
        raise ValueError("no stores to generate: main_stores=False needs thin_stores")
    currencies = sorted({p.market.currency for p in profiles} | {"USD"})
    # The main stores' rates first, as they always were; the thin stores' other currencies
    # from a stream of their own.
    fx = draw_fx(seed, sorted({p.market.currency for p in main} | {"USD"}), start, n_days)
    fx |= draw_fx(seed, sorted(set(currencies) - set(fx)), start, n_days, stream=5)
    summary = GenerationSummary(
        out=out,
        scale=scale,
        seed=seed,
        store_ids=[p.store_id for p in profiles],
        real_export_store_id=main[REAL_EXPORT_STORE_INDEX].store_id if main else "",
        start_date=start,
        end_date=end_date,
    )

    def record(path: Path, kind: str, rows: int) -> None:
        summary.rows_by_file[path.relative_to(out).as_posix()] = rows
        summary.rows_by_kind[kind] = summary.rows_by_kind.get(kind, 0) + rows

    stores = pl.DataFrame(
        {
            "store_id": [p.store_id for p in profiles],
            "store_name": [p.store_name for p in profiles],
            "country": [p.country for p in profiles],
            "currency": [p.market.currency for p in profiles],
            "timezone": [p.market.timezone for p in profiles],
        }
    )
    record(_write(stores, out / "stores.csv", "csv"), "stores", stores.height)
    dates = np.datetime64(start, "D") + np.arange(n_days)
    fx_frame = pl.concat(
        [
            pl.DataFrame({"date": dates, "currency": c, "usd_per_unit": np.round(fx[c], 8)})
            for c in currencies
        ]
    ).sort("date", "currency")
    record(_write(fx_frame, out / "fx_rates.csv", "csv"), "fx_rates", fx_frame.height)

    dirt_items: list[dirt_mod.DirtItem] = []
    with ExitStack() as stack:
        truth = _TruthWriter(out / TRUTH_DIR, stack)
        bar = stack.enter_context(_progress(progress))
        task = bar.add_task(f"sample data ({scale})", total=len(profiles)) if bar else None
        for index, profile in enumerate(profiles):
            if bar:
                bar.update(task, description=f"{profile.store_id}")
            mismatch = MISMATCHED_AD_CURRENCY if dirt and profile.real_exports else None
            days = profile.history_days or n_days
            rates = fx[profile.market.currency][n_days - days :]
            store_start = end_date - timedelta(days=days - 1)
            data = simulate_store(profile, store_start, days, rates, mismatch)
            # Partners, experiments and risky orders: streams of their own (growth.py).
            growth = draw_growth(data, seed, index, store_start, rates)
            data = with_growth(data, growth)
            rng = np.random.default_rng(np.random.SeedSequence([seed, 3, index]))
            items = _write_store(
                data,
                out,
                fmt,
                dirt,
                rng,
                index == LATE_FILE_STORE_INDEX,
                start,
                end_date,
                record,
                growth,
            )
            dirt_items.extend(items)
            for name, frame in data.truth.items():
                truth.append(name, frame)
            renamed = landing_order_ids(data, growth.extra)
            for name, frame in growth.truth.items():
                if renamed and "order_id" in frame.columns:
                    frame = frame.with_columns(pl.col("order_id").replace(renamed))
                truth.append(name, frame)
            if bar:
                bar.advance(task)
        truth.append("dirt", dirt_mod.dirt_frame(dirt_items))
    for name, rows in truth.rows.items():
        summary.rows_by_file[f"{TRUTH_DIR}/{name}.csv"] = rows
    summary.dirt_items = len(dirt_items)
    summary.seconds = clock.perf_counter() - started
    return summary


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )


def _write_store(
    data: StoreData,
    out: Path,
    fmt: str,
    dirt: bool,
    rng,
    gets_late_file: bool,
    start: date,
    end: date,
    record,
    growth: GrowthData,
) -> list:
    """Write one store's landing files. New rows from growth.py (accounts, experiment
    and risky orders) come after the store's own rows and their dirt, so the store's
    rows are what they would be without them."""
    profile = data.profile
    sid = profile.store_id
    folder = out / sid
    items: list[dirt_mod.DirtItem] = []
    extra = growth.extra

    def rel(name: str) -> str:
        return f"{sid}/{name}"

    customers = data.customers
    if dirt:
        customers, found = dirt_mod.messy_emails(customers, "email", rng, sid, rel("customers.csv"))
        items += found
        customers, found = dirt_mod.messy_phones(customers, rng, sid, rel("customers.csv"))
        items += found
    if profile.orders_only:
        # Orders alone, as a merchant's first export often is: customers come from them.
        orders = pl.concat([data.orders, extra.orders])
        record(_write(orders, folder / "orders.csv", fmt), "orders", orders.height)
        return items
    if growth.extra_customers.height:  # a small store may draw no risky accounts
        customers = pl.concat([customers, growth.extra_customers.cast(customers.schema)])
    record(_write(customers, folder / "customers.csv", fmt), "customers", customers.height)
    for name, kind, frame in (
        ("partners.csv", "partners", growth.partners),
        ("experiment_assignments.csv", "experiment_assignments", growth.assignments),
    ):
        if frame.height:
            record(_write(frame, folder / name, fmt), kind, frame.height)
    record(_write(data.products, folder / "products.csv", fmt), "products", data.products.height)
    record(
        _write(data.inventory, folder / "inventory.csv", fmt), "inventory", data.inventory.height
    )
    record(_write(data.sessions, folder / "sessions.csv", fmt), "sessions", data.sessions.height)
    if data.lift_tests is not None and data.lift_tests.height:
        path = _write(data.lift_tests, folder / "lift_tests.csv", fmt)
        record(path, "lift_tests", data.lift_tests.height)

    if profile.real_exports:
        items += _write_real_exports(data, folder, dirt, rng, start, end, record, rel, growth)
        return items

    orders, lines = data.orders, data.order_lines
    if dirt and gets_late_file:
        # An export for three days a month before the end arrives late, in its own folder.
        late_day = orders["_day"].max() - 40
        late_mask = orders["_day"].is_between(late_day, late_day + 2)
        late = orders.filter(late_mask)
        orders = orders.filter(~late_mask)
        late_name = f"late/orders_{(start + timedelta(days=int(late_day))).isoformat()}.csv"
        path = _write(late, folder / late_name, "csv")
        record(path, "orders", late.height)
        items += [
            dirt_mod.DirtItem(
                sid,
                "late_arriving_file",
                rel(late_name),
                r + 1,
                "order exported late, missing from orders.csv",
            )
            for r in range(late.height)
        ]
    if dirt:
        orders, found = dirt_mod.unknown_currency(orders, "currency", rng, sid, rel("orders.csv"))
        items += found
        orders, found = dirt_mod.duplicate_rows(orders, rng, sid, rel("orders.csv"))
        items += found
        lines, found = dirt_mod.negative_quantity(
            lines, "quantity", rng, sid, rel("order_lines.csv")
        )
        items += found
    orders = pl.concat([orders, extra.orders])
    lines = pl.concat([lines, extra.lines])
    record(_write(orders, folder / "orders.csv", fmt), "orders", orders.height)
    record(_write(lines, folder / "order_lines.csv", fmt), "order_lines", lines.height)
    record(_write(data.ad_rows, folder / "ad_spend.csv", fmt), "ad_spend", data.ad_rows.height)
    return items


def _write_real_exports(
    data: StoreData, folder: Path, dirt: bool, rng, start, end, record, rel, growth: GrowthData
) -> list:
    profile = data.profile
    sid = profile.store_id
    items: list[dirt_mod.DirtItem] = []
    export = shopify_orders_export(
        data.orders,
        data.order_lines,
        data.customers,
        profile.store_name,
        profile.market.tax_rate,
        end,
    )
    if dirt:
        first_rows = (export["Created at"] != "").to_numpy()
        export, found = dirt_mod.messy_emails(
            export, "Email", rng, sid, rel("orders_export.csv"), share=0.01
        )
        items += found
        export, found = dirt_mod.unknown_currency(
            export, "Currency", rng, sid, rel("orders_export.csv"), allowed=first_rows
        )
        items += found
        export, found = dirt_mod.negative_quantity(
            export, "Lineitem quantity", rng, sid, rel("orders_export.csv")
        )
        items += found
        export, found = dirt_mod.duplicate_rows(
            export, rng, sid, rel("orders_export.csv"), share=0.003, block_key="Name"
        )
        items += found
    if growth.extra.orders.height:
        new_orders = shopify_orders_export(
            growth.extra.orders,
            growth.extra.lines,
            pl.concat([data.customers, growth.extra_customers.cast(data.customers.schema)]),
            profile.store_name,
            profile.market.tax_rate,
            end,
            first_number=1001 + data.orders.height,
        )
        export = pl.concat([export, new_orders])
    path = folder / "orders_export.csv"
    _empty_as_null(export).write_csv(path)
    record(path, "shopify_orders_export", export.height)
    ads = data.ad_rows
    for platform, name in (
        ("meta", "meta_ads.csv"),
        ("google", "google_ads.csv"),
        ("tiktok", "tiktok_ads.csv"),
    ):
        rows = ads.filter(pl.col("platform") == platform)
        if rows.is_empty():
            continue
        path = folder / name
        if platform == "meta":
            frame = meta_ads_export(rows, start, end)
            _empty_as_null(frame).write_csv(path)
            count = frame.height
            if rows["currency"][0] != profile.market.currency:
                items.append(
                    dirt_mod.DirtItem(
                        sid,
                        "ad_currency_mismatch",
                        rel(name),
                        None,
                        f"Meta ad account bills in {rows['currency'][0]}; the store's orders are in {profile.market.currency}",
                    )
                )
        elif platform == "google":
            count = write_google_ads_export(rows, path, start, end)
        else:
            frame = tiktok_ads_export(rows)
            _empty_as_null(frame).write_csv(path)
            count = frame.height
        record(path, f"{platform}_ads_export", count)
    return items
