"""Partners, experiments and order risk end to end on the tiny generated sample: the
Dagster assets (dagster.materialize in a temporary home), their ops.store_status rows
and checks, the export files, the report sections, and the figures against the
generator's truth (_truth/partners.csv, experiments.csv, risky_orders.csv)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from growth_world import one_plain_sentence
from homes import ingested_home

from models.order_risk import precision_at
from pipelines.assets import experiments, order_risk, partners
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.publish import publish_store
from storepulse.publish.growth import (
    EXPERIMENTS_FILE,
    EXPERIMENTS_TITLE,
    ORDERS_TITLE,
    ORDERS_TO_REVIEW_FILE,
    PARTNERS_FILE,
    PARTNERS_TITLE,
)
from storepulse.sample_data import load_truth
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query

ASSETS = [partners.partner_scorecard, experiments.experiment_readout, order_risk.order_risk]
# Score the whole year of the tiny sample, so every risky order is in the ranking.
RUN_CONFIG = {"ops": {"scores__order_risk": {"config": {"lookback_days": 400}}}}


@pytest.fixture(scope="module")
def pipeline(tiny_sample, tiny_warehouse, tmp_path_factory):
    """The tiny sample ingested and the three growth assets materialized once."""
    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("growth") / "home"
    paths = ingested_home(tiny_sample, home, patch, warehouse=tiny_warehouse)
    result = dg.materialize(
        ASSETS,
        resources={"storepulse": StorepulseResource(), "run_settings": RunSettings()},
        run_config=RUN_CONFIG,
    )
    yield paths, result
    patch.undo()


def table(paths: Paths, sql: str) -> pl.DataFrame:
    with Warehouse(paths.warehouse).reader() as con:
        return query(con, sql)


def quarantined_by_design(landing: Path, dirt: pl.DataFrame) -> set[str]:
    """Order ids the generator gave an unknown currency (ingest must quarantine them)."""
    ids = set()
    for item in dirt.filter(pl.col("kind") == "unknown_currency").iter_rows(named=True):
        frame = pl.read_csv(landing / item["file"], infer_schema=False)
        column = "order_id" if "order_id" in frame.columns else "Name"
        ids.add(frame[column][item["row_number"] - 1])
    return ids


def test_assets_succeed_with_their_checks_and_store_status(pipeline):
    paths, result = pipeline
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        partners.EVERY_PARTNER_SCORED: True,
        experiments.NO_SAMPLE_RATIO_MISMATCH: True,
        order_risk.FLAGGED_HAVE_REASONS: True,
    }
    status = table(paths, "select store_id, step, status from ops.store_status order by 1, 2")
    stores = sorted(set(status["store_id"]))
    assert len(stores) == 2
    outcome = {(s, step): st for s, step, st in status.iter_rows()}
    for store in stores:
        assert outcome[(store, "partners")] == "ok"
        assert outcome[(store, "order_risk")] == "ok"
    # The tiny sample has one experiment, in the second store; the first has no file.
    assert sorted(outcome[(s, "experiments")] for s in stores) == ["ok", "skipped"]


def test_scorecard_orders_and_revenue_per_partner_exact_against_the_truth(pipeline, tiny_sample):
    paths, _ = pipeline
    truth = load_truth(tiny_sample)
    dropped = quarantined_by_design(tiny_sample, truth["dirt"])
    expected = (
        truth["partner_orders"]
        .filter(pl.col("valid") & ~pl.col("order_id").is_in(list(dropped)))
        .group_by("store_id", "partner_id")
        .agg(pl.len().alias("orders"), pl.col("total_usd").sum().alias("revenue_usd"))
    )
    got = table(
        paths,
        "select store_id, partner_id, orders, revenue_usd from marts.partner_scorecard "
        "where period = 'overall' and kind <> 'paid_channel'",
    )
    joined = (
        truth["partners"]
        .select("store_id", "partner_id")
        .join(got, on=["store_id", "partner_id"], how="left")
        .join(expected, on=["store_id", "partner_id"], how="left", suffix="_truth")
    )
    assert joined.height == truth["partners"].height and joined["orders"].null_count() == 0
    assert (joined["orders"] == joined["orders_truth"].fill_null(0)).all()
    cents = (joined["revenue_usd"] - joined["revenue_usd_truth"].fill_null(0.0)).abs()
    assert cents.max() < 0.005


def test_roi_ranking_best_and_worst_partner_match_the_truth(pipeline, tiny_sample):
    paths, _ = pipeline
    truth = load_truth(tiny_sample)["partners"]
    got = table(
        paths,
        "select store_id, partner_id, roi from marts.partner_scorecard "
        "where period = 'overall' and kind <> 'paid_channel' and roi is not null",
    ).join(truth.select("store_id", "partner_id", "true_roi"), on=["store_id", "partner_id"])
    for (store,), part in got.group_by("store_id"):
        assert part.height >= 3, store
        assert part.sort("roi")["partner_id"][-1] == part.sort("true_roi")["partner_id"][-1]
        assert part.sort("roi")["partner_id"][0] == part.sort("true_roi")["partner_id"][0]
    # The partners the truth says cost more than they bring carry that flag.
    flags = table(
        paths,
        "select store_id, partner_id, flags from marts.partner_scorecard where period = 'overall'",
    )
    costly = truth.filter(pl.col("costs_more_than_it_brings")).join(
        flags, on=["store_id", "partner_id"]
    )
    assert costly.height and costly["flags"].str.contains("costs more than it brings").all()


def test_order_risk_precision_at_n_with_reasons_on_every_flagged_row(pipeline, tiny_sample):
    paths, _ = pipeline
    scores = table(paths, "select * from scores.order_risk")
    risky = load_truth(tiny_sample)["risky_orders"]
    ids = set(risky.select("store_id", "order_id").iter_rows())
    scored_ids = set(scores.select("store_id", "order_id").iter_rows())
    assert ids <= scored_ids
    assert precision_at(scores, ids, len(ids)) >= 0.6
    flagged = scores.filter("flagged")
    assert flagged.height and flagged["flags"].str.len_chars().min() > 0
    assert flagged["rules"].is_not_null().all()


def test_experiment_readout_has_design_columns_and_a_decision(pipeline, tiny_sample):
    paths, _ = pipeline
    readout = table(paths, "select * from marts.experiment_readout")
    for column in ("store_id", "experiment_id", "variant", "customers", "metric", "value",
                   "lift", "ci_low", "ci_high", "p_value", "decision"):  # fmt: skip
        assert column in readout.columns
    truth = load_truth(tiny_sample)["experiments"]
    assert set(readout["experiment_id"]) == set(truth["experiment_id"])
    counts = readout.filter(pl.col("is_primary")).select("variant", "customers").rows()
    assert (
        sum(n for _, n in counts)
        == truth["assigned_control"].sum() + truth["assigned_treatment"].sum()
    )
    assert (
        readout["experiment_decision"]
        .is_in(["running", "srm", "ship_variant", "keep_control", "no_difference"])
        .all()
    )


def _section(html: str, title: str) -> str:
    match = re.search(rf"<section><h2>{re.escape(title)}</h2>(.*?)</section>", html, re.S)
    assert match, title
    return match.group(1)


def test_exports_and_report_sections_where_the_store_has_data(pipeline, tmp_path):
    paths, _ = pipeline
    with Warehouse(paths.warehouse).reader() as con:
        as_of = query(con, "select max(order_date) + 1 as d from staging.orders")["d"][0]
        stores = sorted(query(con, "select store_id from staging.stores")["store_id"])
        sets = {s: publish_store(con, s, as_of, tmp_path / "exports") for s in stores}
    with_experiment = [s for s in stores if (sets[s].path / EXPERIMENTS_FILE).exists()]
    assert len(with_experiment) == 1
    for store, result in sets.items():
        manifest = json.loads((result.path / "manifest.json").read_text())
        listed = {f["path"]: f["rows"] for f in manifest["files"]}
        assert listed[PARTNERS_FILE] > 0 and ORDERS_TO_REVIEW_FILE in listed
        review = pl.read_csv(result.path / ORDERS_TO_REVIEW_FILE)
        assert review.columns[0] == "order_id" and (review["flags"].str.len_chars() > 0).all()
        html = (result.path / "report.html").read_text()
        for title in (PARTNERS_TITLE, ORDERS_TITLE):
            assert "<svg" in _section(html, title), (store, title)
        experiment = _section(html, EXPERIMENTS_TITLE)
        if store in with_experiment:
            assert "<svg" in experiment and "conversion test needs" in experiment
        else:  # no assignments file: one sentence, which still sizes a first test
            assert EXPERIMENTS_FILE in " ".join(manifest["notes"])
            assert one_plain_sentence(experiment)
            assert "first conversion test needs" in experiment
