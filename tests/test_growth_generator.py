"""The generator's partners, A/B tests and risky orders (SAMPLE_DATA.md, "Experiments,
partners and risky orders"): ranges, truth, and that they leave the store's own rows
exactly as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from storepulse.sample_data import generate, load_truth
from storepulse.sample_data import generator as generator_module
from storepulse.sample_data.growth import GrowthData, empty_extra

GROWTH_TRUTH = {"partners", "partner_orders", "experiments", "risky_orders"}


def _stores(out: Path) -> list[str]:
    return pl.read_csv(out / "stores.csv")["store_id"].to_list()


@pytest.fixture(scope="module")
def without_growth(tmp_path_factory) -> Path:
    """The tiny sample (seed 7) as it was before partners, tests and risky orders."""

    def nothing(data, seed, index, start, fx) -> GrowthData:
        orders = data.orders
        return GrowthData(
            discount_code=orders["_discount_code"].to_numpy(),
            billing_country=orders["ship_country"].to_numpy(),
            extra_customers=data.customers.clear(),
            extra=empty_extra(data),
            partners=pl.DataFrame(),
            assignments=pl.DataFrame(),
        )

    out = tmp_path_factory.mktemp("plain") / "landing"
    patch = pytest.MonkeyPatch()
    patch.setattr(generator_module, "draw_growth", nothing)
    generate(out, "tiny", seed=7, progress=False)
    patch.undo()
    return out


def test_the_stores_own_rows_and_truth_are_unchanged(tiny_sample, without_growth):
    """New columns and appended rows only; partner codes may replace store codes."""
    for path in sorted(without_growth.rglob("*.csv")):
        relative = path.relative_to(without_growth)
        after = tiny_sample / relative
        if relative.parts[0] == "_truth" and path.stem in GROWTH_TRUTH:
            continue  # growth's own truth (header only without growth)
        if relative.parts[0] == "_truth" or path.read_bytes() == after.read_bytes():
            assert path.read_bytes() == after.read_bytes(), relative
            continue
        skip = 2 if path.name == "google_ads.csv" else 0
        before = pl.read_csv(path, infer_schema=False, skip_rows=skip)
        now = pl.read_csv(after, infer_schema=False, skip_rows=skip)
        head = now.select(before.columns).head(before.height)
        # Growth's own columns: partner codes may replace store codes; billing countries
        # are new (the no-growth run fills them with the shipping country).
        codes = [
            c for c in ("Discount Code", "discount_code", "billing_country") if c in before.columns
        ]
        assert head.drop(codes).equals(before.drop(codes)), relative
        assert set(now.columns) - set(before.columns) <= {"discount_code", "billing_country"}
    new_files = {p.relative_to(tiny_sample).as_posix() for p in tiny_sample.rglob("*.csv")} - {
        p.relative_to(without_growth).as_posix() for p in without_growth.rglob("*.csv")
    }
    assert {f.split("/")[-1] for f in new_files} == {"partners.csv", "experiment_assignments.csv"}


def test_partners_programme_in_range(tiny_sample):
    truth = load_truth(tiny_sample)["partners"]
    for store in _stores(tiny_sample):
        landing = pl.read_csv(tiny_sample / store / "partners.csv")
        assert 3 <= landing.height <= 30
        assert landing["commission_rate"].is_between(0.05, 0.20).all()
        assert set(landing["kind"]) <= {"kol", "affiliate"}
        assert landing["discount_code"].n_unique() == landing.height
        mine = truth.filter(pl.col("store_id") == store)
        assert mine["costs_more_than_it_brings"].any()  # a few cost more than they bring
        assert (mine["true_roi"] > 0).any()
        assert mine["attributed_orders"].sum() > 0


def test_partner_codes_are_on_the_orders_the_truth_lists(tiny_sample):
    truth = load_truth(tiny_sample)
    store = next(s for s in _stores(tiny_sample) if (tiny_sample / s / "orders.csv").exists())
    orders = pl.read_csv(tiny_sample / store / "orders.csv", infer_schema=False).unique("order_id")
    codes = dict(
        pl.read_csv(tiny_sample / store / "partners.csv").select("partner_id", "discount_code")
        .iter_rows()
    )  # fmt: skip
    listed = truth["partner_orders"].filter(pl.col("store_id") == store)
    on_orders = dict(orders.select("order_id", "discount_code").iter_rows())
    for order_id, partner in listed.select("order_id", "partner_id").iter_rows():
        assert on_orders[order_id] == codes[partner]
    coded = {o for o, c in on_orders.items() if c in set(codes.values())}
    assert coded == set(listed["order_id"])


def test_experiments_are_random_two_variant_tests_with_their_truth(tiny_sample):
    truth = load_truth(tiny_sample)["experiments"]
    assert truth.height >= 1
    assert set(truth["effect"]) <= {"none", "planned", "half"}
    for row in truth.iter_rows(named=True):
        path = tiny_sample / row["store_id"] / "experiment_assignments.csv"
        frame = pl.read_csv(path).filter(pl.col("experiment_id") == row["experiment_id"])
        counts = dict(frame.group_by("variant").len().iter_rows())
        assert len(counts) == 2
        assert sorted(counts.values()) == sorted(
            [row["assigned_control"], row["assigned_treatment"]]
        )
        assert frame.select(pl.exclude("variant")).columns[:3] == [
            "store_id", "experiment_id", "experiment_name"
        ]  # fmt: skip
        assert row["planned_power"] == 0.8 and row["planned_mde_abs"] > 0
        assert (row["true_effect_abs"] > 0) == (row["effect"] != "none")


def test_risky_orders_share_and_outcomes(tiny_sample):
    truth = load_truth(tiny_sample)["risky_orders"]
    for store in _stores(tiny_sample):
        mine = truth.filter(pl.col("store_id") == store)
        assert {"card_testing", "stolen_card", "reseller"} <= set(mine["kind"])
    outcomes = dict(truth.group_by("kind").agg(pl.col("outcome").unique()).iter_rows())
    assert set(outcomes["card_testing"]) <= {"declined", "chargeback", "pending"}
    assert set(outcomes["stolen_card"]) <= {"chargeback", "pending"}
    # Resellers share one phone per group.
    store = _stores(tiny_sample)[0]
    customers = pl.read_csv(tiny_sample / store / "customers.csv", infer_schema=False)
    resellers = truth.filter((pl.col("store_id") == store) & (pl.col("kind") == "reseller"))
    phones = customers.join(resellers.select("customer_id", "group_id").unique(), on="customer_id")
    assert (phones.group_by("group_id").agg(pl.col("phone").n_unique())["phone"] == 1).all()


def test_risky_share_is_a_fraction_of_a_percent_at_small_scale(tmp_path):
    summary = generate(tmp_path / "s", "small", seed=11, progress=False)
    truth = load_truth(tmp_path / "s")["risky_orders"]
    main = summary.store_ids[:5]
    for store in main:
        if store == summary.real_export_store_id:
            continue
        orders = pl.read_csv(tmp_path / "s" / store / "orders.csv", infer_schema=False)
        share = truth.filter(pl.col("store_id") == store).height / orders.height
        assert 0.002 <= share <= 0.012, (store, share)
    assert np.isfinite(summary.seconds)
