"""The sample-data generator: layout, realism against SAMPLE_DATA.md ranges, truth, dirt, determinism.

All checks run on the session's tiny sample (seed 7) unless they need another generation.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from storepulse.sample_data import SCALES, generate, load_truth, true_incremental_revenue
from storepulse.sample_data.calendar import black_friday
from storepulse.sample_data.churn_drivers import (
    CHANNEL_DROPOUT_EFFECT,
    DROPOUT_EFFECT_RANGES,
    ChurnDrivers,
)
from storepulse.sample_data.exports import GOOGLE_HEADER, SHOPIFY_COLUMNS, TIKTOK_HEADER

CANONICAL_HEADERS = {
    "customers.csv": "store_id,customer_id,email,phone,first_name,last_name,country,created_at,accepts_email_marketing,accepts_sms_marketing,ad_personalization_consent",
    "orders.csv": "store_id,order_id,customer_id,email,created_at,currency,subtotal,discount,shipping,tax,total,financial_status,refunded_amount,cancelled_at,payment_method,utm_source,utm_medium,utm_campaign,device,ship_country,discount_code,billing_country",
    "order_lines.csv": "store_id,order_id,line_no,sku,quantity,unit_price,line_discount",
    "products.csv": "store_id,sku,title,category,price,unit_cost,launched_at",
    "inventory.csv": "snapshot_date,store_id,sku,warehouse,on_hand,lead_time_days",
    "ad_spend.csv": "date,store_id,platform,campaign_id,campaign_name,country,currency,spend,impressions,clicks,platform_conversions,platform_conversion_value",
    "sessions.csv": "date,store_id,channel,device,sessions,add_to_cart,checkout_started,orders",
}
ALWAYS_CANONICAL = ["customers.csv", "products.csv", "inventory.csv", "sessions.csv"]
REAL_EXPORTS = ["orders_export.csv", "meta_ads.csv", "google_ads.csv", "tiktok_ads.csv"]


def _stores(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "stores.csv")


def _real_export_store(out: Path) -> str:
    return next(s for s in _stores(out)["store_id"] if (out / s / "orders_export.csv").exists())


def _canonical_stores(out: Path) -> list[str]:
    return [s for s in _stores(out)["store_id"] if (out / s / "orders.csv").exists()]


def _dirt(out: Path) -> pl.DataFrame:
    return load_truth(out)["dirt"]


def _dirty_rows(out: Path, file: str) -> set[int]:
    d = _dirt(out).filter(pl.col("file") == file)
    return set(d["row_number"].drop_nulls().to_list())


def _shopify(out: Path, store: str) -> pl.DataFrame:
    return pl.read_csv(out / store / "orders_export.csv", infer_schema=False).with_row_index(
        "row_number", offset=1
    )


def _all_orders(out: Path) -> pl.DataFrame:
    """Orders of every store as (store_id, customer_key, order_date, total, refunded, status), dirt-free rows only."""
    frames = []
    for store in _canonical_stores(out):
        orders = pl.read_csv(out / store / "orders.csv", infer_schema=False).with_row_index(
            "row_number", offset=1
        )
        late = [
            pl.read_csv(p, infer_schema=False) for p in sorted((out / store).glob("late/*.csv"))
        ]
        orders = orders.filter(
            ~pl.col("row_number").is_in(list(_dirty_rows(out, f"{store}/orders.csv")))
        )
        orders = pl.concat([orders.drop("row_number"), *late])
        frames.append(
            orders.select(
                pl.col("store_id"),
                pl.col("customer_id").alias("customer_key"),
                pl.col("created_at").str.slice(0, 10).str.to_date().alias("order_date"),
                pl.col("total").cast(pl.Float64),
                pl.col("refunded_amount").cast(pl.Float64).alias("refunded"),
                pl.col("financial_status").alias("status"),
            )
        )
    store = _real_export_store(out)
    shopify = _shopify(out, store)
    dirty = _dirty_rows(out, f"{store}/orders_export.csv")
    first_rows = shopify.filter(
        pl.col("Created at").is_not_null() & ~pl.col("row_number").is_in(list(dirty))
    )
    frames.append(
        first_rows.select(
            pl.lit(store).alias("store_id"),
            pl.col("Email").str.strip_chars().str.to_lowercase().alias("customer_key"),
            pl.col("Created at").str.slice(0, 10).str.to_date().alias("order_date"),
            pl.col("Total").cast(pl.Float64).alias("total"),
            pl.col("Refunded Amount").cast(pl.Float64).alias("refunded"),
            pl.col("Financial Status").alias("status"),
        )
    )
    return pl.concat(frames)


def _sha256_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- layout -------------------------------------------------------------------------------


def test_layout_has_every_store_and_canonical_headers(tiny_sample: Path):
    stores = _stores(tiny_sample)
    assert stores.columns == ["store_id", "store_name", "country", "currency", "timezone"]
    assert stores.height == SCALES["tiny"].stores
    assert all(s == s.lower() and " " not in s for s in stores["store_id"])
    real = _real_export_store(tiny_sample)
    assert stores.filter(pl.col("store_id") == real)["currency"][0] != "USD"
    for store in stores["store_id"]:
        for name in ALWAYS_CANONICAL:
            header = (tiny_sample / store / name).read_text().splitlines()[0]
            assert header == CANONICAL_HEADERS[name], f"{store}/{name}"
        if store == real:
            assert not (tiny_sample / store / "orders.csv").exists()
            assert all((tiny_sample / store / name).exists() for name in REAL_EXPORTS)
        else:
            for name in ["orders.csv", "order_lines.csv", "ad_spend.csv"]:
                assert (tiny_sample / store / name).read_text().splitlines()[
                    0
                ] == CANONICAL_HEADERS[name]


def test_fx_rates_cover_every_currency_and_day(tiny_sample: Path):
    fx = pl.read_csv(tiny_sample / "fx_rates.csv", try_parse_dates=True)
    currencies = set(_stores(tiny_sample)["currency"]) | {"USD"}
    assert set(fx["currency"]) == currencies
    days = fx["date"].n_unique()
    assert days == 365 * SCALES["tiny"].years
    assert fx.group_by("currency").len()["len"].to_list() == [days] * len(currencies)
    assert fx.filter(pl.col("currency") == "USD")["usd_per_unit"].unique().to_list() == [1.0]
    assert fx["date"].max() == date(2026, 10, 31)


def test_customers_link_to_orders(tiny_sample: Path):
    for store in _canonical_stores(tiny_sample):
        customers = pl.read_csv(tiny_sample / store / "customers.csv", infer_schema=False)
        orders = pl.read_csv(tiny_sample / store / "orders.csv", infer_schema=False)
        assert set(orders["customer_id"]) <= set(customers["customer_id"])
    store = _real_export_store(tiny_sample)
    customers = pl.read_csv(tiny_sample / store / "customers.csv", infer_schema=False)
    known = set(customers["email"].str.strip_chars().str.to_lowercase())
    shopify_emails = set(_shopify(tiny_sample, store)["Email"].str.strip_chars().str.to_lowercase())
    assert shopify_emails <= known


# --- behaviour against SAMPLE_DATA.md ranges ---------------------------------------------------


def test_conversion_rate_and_mobile_share_in_range(tiny_sample: Path):
    for store in _stores(tiny_sample)["store_id"]:
        sessions = pl.read_csv(tiny_sample / store / "sessions.csv")
        total = sessions.select(pl.col("sessions", "orders").sum()).row(0, named=True)
        assert 0.018 <= total["orders"] / total["sessions"] <= 0.035, store
        mobile = sessions.filter(pl.col("device") == "mobile")["sessions"].sum() / total["sessions"]
        assert 0.75 <= mobile <= 0.85, store
        by_channel = sessions.group_by("channel").agg(pl.col("sessions", "orders").sum())
        rates = dict(
            zip(by_channel["channel"], by_channel["orders"] / by_channel["sessions"], strict=True)
        )
        assert rates["google"] > rates["influencer"]
        funnel_ok = (
            (pl.col("sessions") >= pl.col("add_to_cart"))
            & (pl.col("add_to_cart") >= pl.col("checkout_started"))
            & (pl.col("checkout_started") >= pl.col("orders"))
        )
        assert sessions.filter(~funnel_ok).is_empty()


def test_repeat_purchase_rate_within_a_year_in_range(tiny_sample: Path):
    """Share of customers acquired in the window who order again within 365 days of their first order."""
    orders = _all_orders(tiny_sample)
    start, end = orders["order_date"].min(), orders["order_date"].max()
    real = _real_export_store(tiny_sample)
    truth = load_truth(tiny_sample)["customers"].with_columns(
        customer_key=pl.when(pl.col("store_id") == real)
        .then(pl.col("email"))
        .otherwise(pl.col("customer_id"))
    )
    # Customers acquired early enough in the window that most of a year is observable.
    cohort = truth.filter(pl.col("acquisition_date").is_between(start, end - timedelta(days=240)))
    within_year = (
        cohort.join(orders, on=["store_id", "customer_key"])
        .filter((pl.col("order_date") - pl.col("acquisition_date")).dt.total_days() <= 365)
        .group_by("store_id", "customer_key")
        .len()
    )
    for (store,), per_store in cohort.group_by("store_id"):
        repeaters = within_year.filter((pl.col("store_id") == store) & (pl.col("len") >= 2)).height
        assert 0.08 <= repeaters / per_store.height <= 0.40, store


def test_consent_shares_in_range(tiny_sample: Path):
    for store in _stores(tiny_sample)["store_id"]:
        customers = pl.read_csv(tiny_sample / store / "customers.csv")
        assert 0.40 <= customers["accepts_email_marketing"].mean() <= 0.60
        assert 0.30 <= customers["ad_personalization_consent"].mean() <= 0.50
        assert (
            customers["accepts_sms_marketing"].mean() < customers["accepts_email_marketing"].mean()
        )


def test_refund_share_and_aov_in_range(tiny_sample: Path):
    orders = _all_orders(tiny_sample)
    fx = pl.read_csv(tiny_sample / "fx_rates.csv", try_parse_dates=True)
    currency = dict(_stores(tiny_sample).select("store_id", "currency").iter_rows())
    for (store,), per_store in orders.group_by("store_id"):
        refunded = (per_store["refunded"] > 0).mean()
        assert 0.05 <= refunded <= 0.12, store
        rate = fx.filter(pl.col("currency") == currency[store])["usd_per_unit"].mean()
        assert 25 <= per_store["total"].mean() * rate <= 95, store


def test_black_friday_week_peaks(tiny_sample: Path):
    daily = _all_orders(tiny_sample).group_by("order_date").len()
    bf = black_friday(2025)

    def orders_between(first: date, last: date) -> int:
        return daily.filter(pl.col("order_date").is_between(first, last))["len"].sum()

    bf_week = orders_between(bf - timedelta(days=3), bf + timedelta(days=3))
    before = orders_between(bf - timedelta(days=24), bf - timedelta(days=4)) / 3
    after = orders_between(bf + timedelta(days=4), bf + timedelta(days=24)) / 3
    assert bf_week >= 2.5 * (before + after) / 2


def test_skus_follow_pareto_and_margins(tiny_sample: Path):
    store = _canonical_stores(tiny_sample)[0]
    lines = pl.read_csv(tiny_sample / store / "order_lines.csv").filter(pl.col("quantity") > 0)
    units = lines.group_by("sku").agg(pl.col("quantity").sum()).sort("quantity", descending=True)
    products = pl.read_csv(tiny_sample / store / "products.csv")
    top = max(1, products.height // 5)
    assert units["quantity"].head(top).sum() / units["quantity"].sum() >= 0.55
    margin = 1 - (products["unit_cost"] / products["price"]).mean()
    assert 0.2 <= margin <= 0.5


def test_canonical_totals_add_up_on_clean_rows(tiny_sample: Path):
    for store in _canonical_stores(tiny_sample):
        dirty_orders = _dirty_rows(tiny_sample, f"{store}/orders.csv")
        dirty_lines = _dirty_rows(tiny_sample, f"{store}/order_lines.csv")
        orders = pl.read_csv(tiny_sample / store / "orders.csv").with_row_index("row", offset=1)
        orders = orders.filter(~pl.col("row").is_in(list(dirty_orders)))
        lines = pl.read_csv(tiny_sample / store / "order_lines.csv").with_row_index("row", offset=1)
        bad_orders = lines.filter(pl.col("row").is_in(list(dirty_lines)))["order_id"]
        line_sums = lines.group_by("order_id").agg(
            (pl.col("quantity") * pl.col("unit_price") - pl.col("line_discount"))
            .sum()
            .alias("lines")
        )
        checked = orders.filter(~pl.col("order_id").is_in(bad_orders.implode())).join(
            line_sums, on="order_id"
        )
        assert checked.height > 0.9 * orders.height
        gap = (
            checked["lines"]
            - checked["discount"]
            + checked["shipping"]
            + checked["tax"]
            - checked["total"]
        )
        assert gap.abs().max() < 0.011
        assert (checked["subtotal"] - checked["lines"]).abs().max() < 0.011


def test_shopify_totals_add_up_on_clean_rows(tiny_sample: Path):
    """Shopify's Subtotal is after discounts: Total = Subtotal + Shipping + Taxes."""
    store = _real_export_store(tiny_sample)
    rows = _shopify(tiny_sample, store)
    dirty_names = rows.filter(
        pl.col("row_number").is_in(list(_dirty_rows(tiny_sample, f"{store}/orders_export.csv")))
    )["Name"]
    clean = rows.filter(~pl.col("Name").is_in(dirty_names.implode()))
    lines = clean.group_by("Name").agg(
        (
            pl.col("Lineitem quantity").cast(pl.Float64) * pl.col("Lineitem price").cast(pl.Float64)
            - pl.col("Lineitem discount").cast(pl.Float64)
        )
        .sum()
        .alias("lines")
    )
    heads = clean.filter(pl.col("Created at").is_not_null()).select(
        "Name",
        *[
            pl.col(c).cast(pl.Float64)
            for c in ["Subtotal", "Shipping", "Taxes", "Total", "Discount Amount"]
        ],
    )
    checked = heads.join(lines, on="Name")
    assert (
        (checked["Subtotal"] + checked["Shipping"] + checked["Taxes"] - checked["Total"]).abs()
        < 0.011
    ).all()
    assert (
        (checked["Subtotal"] + checked["Discount Amount"] - checked["lines"]).abs() < 0.011
    ).all()


# --- ground truth ---------------------------------------------------------------------------


def test_true_roas_in_range_and_response_function_reproduces_truth(tiny_sample: Path):
    truth = load_truth(tiny_sample)
    channels = truth["channels"]
    assert channels["true_roas"].is_between(1.5, 8.5).all()
    for params in channels.iter_rows(named=True):
        daily = (
            truth["channel_daily"]
            .filter(
                (pl.col("store_id") == params["store_id"])
                & (pl.col("channel") == params["channel"])
            )
            .sort("date")
        )
        spend = daily["spend_usd"].to_numpy()
        revenue = true_incremental_revenue(params, spend)
        np.testing.assert_allclose(
            revenue, daily["incremental_revenue_usd"].to_numpy(), rtol=1e-3, atol=1e-2
        )
        assert abs(revenue.sum() / spend.sum() - params["true_roas"]) < 0.01
        # More spend earns more, but never past the channel's saturation ceiling.
        assert true_incremental_revenue(params, spend * 2).sum() > revenue.sum()
        assert (
            true_incremental_revenue(params, spend * 100).max()
            <= params["max_daily_revenue_usd"] + 1e-9
        )


def test_platform_reports_over_credit_and_last_click_under_credits_tiktok(tiny_sample: Path):
    truth = load_truth(tiny_sample)
    store = _canonical_stores(tiny_sample)[0]
    ads = pl.read_csv(tiny_sample / store / "ad_spend.csv")
    customers = truth["customers"].filter(pl.col("store_id") == store)
    caused = customers.group_by("acquisition_channel").len()
    caused_by = dict(caused.iter_rows())
    claimed = dict(ads.group_by("platform").agg(pl.col("platform_conversions").sum()).iter_rows())
    for platform, conversions in claimed.items():
        assert conversions > caused_by.get(platform, 0), platform
    orders = pl.read_csv(tiny_sample / store / "orders.csv", infer_schema=False)
    if "tiktok" in caused_by:
        tagged_tiktok = orders.filter(pl.col("utm_source") == "tiktok").height
        assert tagged_tiktok < caused_by["tiktok"]


def test_truth_customers_are_consistent(tiny_sample: Path):
    truth = load_truth(tiny_sample)["customers"]
    assert truth.filter(pl.col("dropout_date") < pl.col("acquisition_date")).is_empty()
    assert truth["purchase_rate_per_day"].min() > 0
    assert 0.0 < truth["dropout_date"].is_null().mean() < 1.0
    assert 0.0 < truth["is_high_value"].mean() < 0.4
    # Accounts opened by fraudsters and resellers are customers rows too, but no part of
    # the purchase process: they are in _truth/risky_orders.csv instead.
    risky = load_truth(tiny_sample)["risky_orders"]
    for store in _stores(tiny_sample)["store_id"]:
        ids = set(
            pl.read_csv(tiny_sample / store / "customers.csv", infer_schema=False)["customer_id"]
        )
        accounts = set(risky.filter(pl.col("store_id") == store)["customer_id"])
        assert accounts and not accounts & set(truth["customer_id"])
        assert ids == set(truth.filter(pl.col("store_id") == store)["customer_id"]) | accounts


def test_truth_has_churn_drivers_and_parameters(tiny_sample: Path):
    truth = load_truth(tiny_sample)
    customers = truth["customers"]
    assert customers["dropout_probability"].is_between(0.0, 1.0, closed="none").all()
    assert customers["cancel_probability"].is_between(0.025, 0.075).all()
    drivers = truth["churn_drivers"]
    for store in _stores(tiny_sample)["store_id"]:
        effects = dict(
            drivers.filter((pl.col("store_id") == store) & (pl.col("target") == "dropout_log_odds"))
            .select("driver", "effect")
            .iter_rows()
        )
        for driver, (low, high) in DROPOUT_EFFECT_RANGES.items():
            assert low <= effects[driver] <= high, (store, driver)
        for channel, (low, high) in CHANNEL_DROPOUT_EFFECT.items():
            assert low <= effects[f"channel={channel}"] <= high, (store, channel)
        # Directions: paid social leaves more than e-mail; bad first orders raise churn.
        assert effects["channel=meta"] > effects["channel=email"]
        assert effects["first_order_refunded"] > 0 > effects["first_basket_doubling"]
    # The calendar covers the year before the window too (earlier customers); mean 1 in it.
    calendar = truth["demand_calendar"].filter(pl.col("date") >= date(2025, 11, 1))
    assert truth["demand_calendar"]["date"].min() <= customers["acquisition_date"].min()
    assert calendar.group_by("store_id").agg(pl.col("demand_multiplier").mean())[
        "demand_multiplier"
    ].to_list() == pytest.approx([1.0, 1.0])


def test_churn_driver_shifts_add_up_and_are_centred_per_store():
    """Each customer's shift is the sum of their drivers' effects, centred within the
    store (its repeat rate stays where PurchaseBehaviour put it) except the market."""
    shifts = ChurnDrivers(
        channel={"a": 0.4, "b": -0.3},
        dropout={
            "first_order_discount": 0.3,
            "first_order_cod": 0.4,
            "first_order_refunded": 0.7,
            "no_email_consent": 0.35,
            "first_basket_doubling": -0.25,
            "emerging_market": 0.2,
        },
        rate={
            "email_consent": 0.2,
            "first_order_discount": -0.1,
            "paid_social": -0.05,
            "first_basket_doubling": 0.1,
        },
    )
    dropout, rate = shifts.shifts(
        channel=np.array(["a", "b", "b", "a"], dtype=object),
        first_order_discount=np.array([True, False, False, False]),
        first_order_cod=np.array([False, False, True, False]),
        first_order_refunded=np.array([False, False, False, True]),
        email_consent=np.array([True, True, False, True]),
        first_order_items=np.array([1, 2, 1, 4]),
        emerging_market=np.array([False, False, False, True]),
    )
    raw = np.array([0.4 + 0.3, -0.3 - 0.25, -0.3 + 0.4 + 0.35, 0.4 + 0.7 - 0.5])
    # Centred within the store, then the (absolute) emerging-market shift.
    assert dropout == pytest.approx(raw - raw.mean() + np.array([0, 0, 0, 0.2]))
    raw_rate = np.array([0.2 - 0.1, 0.2 + 0.1, 0.0, 0.2 + 0.2])
    assert rate == pytest.approx(raw_rate - raw_rate.mean())


def test_stockouts_censor_sales(tiny_sample: Path):
    truth = load_truth(tiny_sample)["sku_demand"]
    store = _canonical_stores(tiny_sample)[0]
    demand = truth.filter(pl.col("store_id") == store)
    censored = demand.filter(~pl.col("in_stock") & (pl.col("expected_units") > 0))
    assert censored.height > 0
    orders = pl.read_csv(tiny_sample / store / "orders.csv", infer_schema=False).select(
        "order_id", pl.col("created_at").str.slice(0, 10).str.to_date().alias("date")
    )
    sales = pl.read_csv(tiny_sample / store / "order_lines.csv").join(
        orders.unique("order_id"), on="order_id"
    )
    sold_while_out = censored.join(sales, on=["sku", "date"])
    assert sold_while_out.is_empty()
    inventory = pl.read_csv(tiny_sample / store / "inventory.csv", try_parse_dates=True)
    on_hand = inventory.group_by("sku", "snapshot_date").agg(pl.col("on_hand").sum())
    at_censored = censored.join(on_hand, left_on=["sku", "date"], right_on=["sku", "snapshot_date"])
    assert (at_censored["on_hand"] == 0).all()
    assert inventory["lead_time_days"].is_between(7, 45).all()


# --- real export layouts ----------------------------------------------------------------------


def test_real_export_headers(tiny_sample: Path):
    store = _real_export_store(tiny_sample)
    folder = tiny_sample / store
    assert pl.read_csv(folder / "orders_export.csv", n_rows=0).columns == SHOPIFY_COLUMNS
    shopify = _shopify(tiny_sample, store)
    later_rows = shopify.filter(pl.col("Created at").is_null())
    assert later_rows.height > 0
    assert later_rows["Name"].null_count() == 0 and later_rows["Email"].null_count() == 0
    assert later_rows["Total"].null_count() == later_rows.height
    assert (
        shopify["Created at"]
        .drop_nulls()
        .str.contains(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$")
        .all()
    )
    assert set(shopify["Accepts Marketing"].drop_nulls()) <= {"yes", "no"}
    assert "store_id" not in shopify.columns

    meta = pl.read_csv(folder / "meta_ads.csv", n_rows=0).columns
    assert meta[:6] == ["Day", "Campaign name", "Ad set name", "Reach", "Impressions", "Frequency"]
    assert any(c.startswith("Amount spent (") for c in meta)
    assert {"Link clicks", "Results", "Purchases", "Purchases conversion value"} <= set(meta)

    google_lines = (folder / "google_ads.csv").read_text().splitlines()
    assert google_lines[0] == "Campaign report" and " - " in google_lines[1]
    assert google_lines[2].split(",") == GOOGLE_HEADER
    assert google_lines[-1].startswith("Total: ")
    assert any('"' in line and "," in line for line in google_lines[3:])  # "1,234.56"
    assert any(",--" in line for line in google_lines[3:])

    assert pl.read_csv(folder / "tiktok_ads.csv", n_rows=0).columns == TIKTOK_HEADER


# --- dirt ----------------------------------------------------------------------------------


def test_recorded_dirt_is_in_the_files(tiny_sample: Path):
    dirt = _dirt(tiny_sample)
    kinds = set(dirt["kind"])
    assert {
        "duplicate_row",
        "unknown_currency",
        "negative_quantity",
        "email_format",
        "phone_format",
        "late_arriving_file",
        "ad_currency_mismatch",
    } <= kinds
    cache: dict[str, pl.DataFrame] = {}

    def row(file: str, number: int) -> dict:
        if file not in cache:
            cache[file] = pl.read_csv(tiny_sample / file, infer_schema=False)
        return cache[file].row(number - 1, named=True)

    for item in dirt.iter_rows(named=True):
        file, number, kind = item["file"], item["row_number"], item["kind"]
        assert (tiny_sample / file).exists(), file
        if kind == "unknown_currency":
            record = row(file, number)
            assert record.get("currency", record.get("Currency")) == "XYZ"
        elif kind == "negative_quantity":
            record = row(file, number)
            assert int(record.get("quantity", record.get("Lineitem quantity"))) < 0
        elif kind == "email_format":
            email = row(file, number).get("email", row(file, number).get("Email"))
            assert email != email.strip().lower()
        elif kind == "phone_format":
            assert (
                not row(file, number)["phone"].startswith("+") or " " in row(file, number)["phone"]
            )
        elif kind == "duplicate_row":
            original = int(item["description"].split("row ")[1].split(" ")[0])
            assert row(file, number) == row(file, original)
        elif kind == "late_arriving_file":
            late = row(file, number)
            main = pl.read_csv(tiny_sample / file.split("/")[0] / "orders.csv", infer_schema=False)
            assert late["order_id"] not in set(main["order_id"])
        elif kind == "ad_currency_mismatch":
            header = (tiny_sample / file).read_text().splitlines()[0]
            store_currency = _stores(tiny_sample).filter(pl.col("store_id") == item["store_id"])[
                "currency"
            ][0]
            assert f"Amount spent ({store_currency})" not in header


def test_unrecorded_rows_are_clean(tiny_sample: Path):
    for store in _canonical_stores(tiny_sample):
        orders = pl.read_csv(tiny_sample / store / "orders.csv", infer_schema=False)
        dirty = _dirty_rows(tiny_sample, f"{store}/orders.csv")
        assert set(np.flatnonzero((orders["currency"] == "XYZ").to_numpy()) + 1) <= dirty
        assert set(np.flatnonzero(orders.is_duplicated().to_numpy()) + 1) - dirty <= set(
            int(d.split("row ")[1].split(" ")[0])
            for d in _dirt(tiny_sample).filter(pl.col("file") == f"{store}/orders.csv")[
                "description"
            ]
            if d.startswith("exact copy")
        )


@pytest.fixture(scope="module")
def tiny_clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "landing"
    generate(out, "tiny", seed=7, dirt=False, progress=False)
    return out


def test_no_dirt_when_switched_off(tiny_clean: Path):
    assert _dirt(tiny_clean).is_empty()
    assert not list(tiny_clean.rglob("late"))
    for store in _canonical_stores(tiny_clean):
        orders = pl.read_csv(tiny_clean / store / "orders.csv", infer_schema=False)
        assert not orders.is_duplicated().any()
        assert (orders["currency"] != "XYZ").all()
        assert (pl.read_csv(tiny_clean / store / "order_lines.csv")["quantity"] > 0).all()
    for store in _stores(tiny_clean)["store_id"]:
        customers = pl.read_csv(tiny_clean / store / "customers.csv", infer_schema=False)
        assert (customers["email"] == customers["email"].str.strip_chars().str.to_lowercase()).all()
        assert customers["phone"].str.contains(r"^\+\d+$").all()
    store = _real_export_store(tiny_clean)
    header = (tiny_clean / store / "meta_ads.csv").read_text().splitlines()[0]
    currency = _stores(tiny_clean).filter(pl.col("store_id") == store)["currency"][0]
    assert f"Amount spent ({currency})" in header
    shopify = _shopify(tiny_clean, store)
    assert (shopify["Lineitem quantity"].cast(pl.Int64) > 0).all()


# --- determinism and formats -------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(tiny_sample: Path, tmp_path: Path):
    again = tmp_path / "again"
    generate(again, "tiny", seed=7, progress=False)
    assert _sha256_tree(again) == _sha256_tree(tiny_sample)
    other = tmp_path / "other"
    generate(other, "tiny", seed=8, progress=False)
    other_hashes = _sha256_tree(other)
    same_files = [
        name
        for name, digest in _sha256_tree(tiny_sample).items()
        if other_hashes.get(name) == digest
    ]
    # tiny always has the same two named stores (US, DE), hence the same demand calendars
    assert set(same_files) <= {"stores.csv", "_truth/demand_calendar.csv"}


def test_parquet_for_canonical_files_only(tmp_path: Path):
    summary = generate(tmp_path / "pq", "tiny", seed=3, fmt="parquet", dirt=False, progress=False)
    real = summary.real_export_store_id
    for store in summary.store_ids:
        assert (tmp_path / "pq" / store / "customers.parquet").exists()
        assert not (tmp_path / "pq" / store / "customers.csv").exists()
    assert (tmp_path / "pq" / real / "orders_export.csv").exists()
    orders = pl.read_parquet(tmp_path / "pq" / summary.store_ids[0] / "orders.parquet")
    assert orders.height == summary.rows_by_file[f"{summary.store_ids[0]}/orders.parquet"]
    assert summary.rows_by_kind["orders"] > 0
