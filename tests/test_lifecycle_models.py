"""The lifecycle with every real model (demand, churn, customer value, ad ROI) on
the tiny sample: a wiped or stale model store is recovered from, a saved artifact is
reloaded rather than retrained, and the version changes with every setting.

tests/test_lifecycle.py checks the lifecycle's rules on a toy model; here each real
spec goes through the same paths, so a model whose artifact does not pickle, whose
card lacks what loading needs, or whose settings do not reach its version fails."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date

import pytest
from test_ad_roi import TINY

from pipelines.assets.ad_roi import AD_ROI_SPEC, AdRoiConfig
from pipelines.assets.churn import CHURN_SPEC, CLV_SPEC, ChurnConfig, ClvConfig
from pipelines.assets.demand import SPEC as DEMAND_SPEC
from pipelines.assets.demand import DemandConfig
from storepulse.lifecycle import release_for_scoring, version_of
from storepulse.warehouse import Warehouse, scalar


class FourKernelAdRoiConfig(AdRoiConfig):
    """Ad ROI choosing among test_ad_roi.TINY's four carryover kernels, not nine: the
    paths under test are the lifecycle's, and the search is most of a fit."""

    def settings(self):
        return replace(super().settings(), carryover_grid=TINY.carryover_grid)


SPECS = {
    "demand": (DEMAND_SPEC, DemandConfig(num_boost_round=40)),
    "churn": (CHURN_SPEC, ChurnConfig()),
    "clv": (CLV_SPEC, ClvConfig()),
    "ad_roi": (AD_ROI_SPEC, FourKernelAdRoiConfig(n_bootstrap=2)),
}


@pytest.fixture(scope="module")
def warehouse(tiny_sample, tiny_warehouse, tmp_path_factory):
    from homes import copy_warehouse

    root = tmp_path_factory.mktemp("lifecycle_models")
    landing = root / "landing"
    shutil.copytree(tiny_sample, landing, ignore=shutil.ignore_patterns("_truth"))
    wh = Warehouse(copy_warehouse(tiny_warehouse, root / "warehouse.duckdb"))  # ingested
    with wh.writer() as con:
        as_of = scalar(con, "select max(order_date) + 1 from staging.orders")
    return wh, as_of


@pytest.mark.parametrize("name", SPECS)
def test_a_real_model_recovers_from_a_wiped_or_stale_model_store(name, warehouse, tmp_path):
    wh, as_of = warehouse
    spec, config = SPECS[name]
    spec = replace(spec, name=f"{spec.name}_lifecycle_test")  # its own ops.model_runs rows
    fits = []
    first_candidates = {}

    def train_once(inputs, as_of, settings):
        """The real trainer once; its candidates again on retraining (the paths under
        test are the detection, saving and loading, not a second identical fit)."""
        fits.append(as_of)
        if "c" not in first_candidates:
            first_candidates["c"] = REAL_TRAIN[name](inputs, as_of, settings)
        return first_candidates["c"]

    spec = replace(spec, train=train_once)
    store = tmp_path / "model_store"
    logs: list[str] = []

    def release():
        return release_for_scoring(wh, spec, as_of, config, store, logs.append)

    first = release()
    assert first.trained_now and len(fits) == 1
    again = release()  # the saved artifact is loaded, not retrained
    assert not again.trained_now and again.version == first.version and len(fits) == 1
    assert again.decision == first.decision
    assert type(again.artifact) is type(first.artifact)

    shutil.rmtree(store / spec.name / first.version)
    wiped = release()
    assert wiped.trained_now and wiped.version == first.version and len(fits) == 2
    assert any("training a replacement" in line for line in logs)
    assert (store / spec.name / first.version / "model.pkl").exists()

    card_path = store / spec.name / first.version / "card.json"
    card = json.loads(card_path.read_text())
    card["code_version"] = "an-older-recipe"
    card_path.write_text(json.dumps(card))
    stale = release()
    assert stale.trained_now and len(fits) == 3
    assert any("an-older-recipe" in line for line in logs)
    assert not release().trained_now and len(fits) == 3


REAL_TRAIN = {name: spec.train for name, (spec, _) in SPECS.items()}


@pytest.mark.parametrize("name", SPECS)
def test_every_setting_of_a_real_model_changes_its_version(name):
    """An approved artifact is never overwritten by one trained with other settings."""
    spec, config = SPECS[name]
    as_of = date(2026, 1, 1)
    base = version_of(spec, as_of, "data", config)
    assert version_of(spec, as_of, "data", config) == base
    assert version_of(spec, as_of, "other data", config) != base
    assert version_of(replace(spec, code_version="next"), as_of, "data", config) != base
    for field, info in type(config).model_fields.items():
        value = getattr(config, field)
        if isinstance(value, bool):
            changed = not value
        elif isinstance(value, int | float):
            changed = value + 1
        elif isinstance(value, str):
            changed = value + "x"
        else:
            continue
        other = config.model_copy(update={field: changed})
        assert version_of(spec, as_of, "data", other) != base, (name, field, info)
