"""Each Launchpad Config (pipelines, `*Config`) and its model's settings dataclass
(models, `*Settings`) agree: the default Config builds exactly the default settings,
and a changed field reaches the model."""

from __future__ import annotations

import dataclasses

import pytest

from models import ad_roi, churn, clv, demand, experiments, order_risk, partners, reorder, rfm
from pipelines.assets.ad_roi import AdRoiConfig
from pipelines.assets.churn import ChurnConfig, ClvConfig
from pipelines.assets.demand import DemandConfig, ReorderConfig
from pipelines.assets.experiments import ExperimentConfig
from pipelines.assets.order_risk import OrderRiskConfig
from pipelines.assets.partners import PartnerConfig
from pipelines.assets.segments import RfmConfig

PAIRS = [
    (AdRoiConfig, ad_roi.AdRoiSettings),
    (ChurnConfig, churn.ChurnSettings),
    (ClvConfig, clv.ClvSettings),
    (DemandConfig, demand.DemandSettings),
    (ReorderConfig, reorder.ReorderSettings),
    (RfmConfig, rfm.RfmSettings),
    (PartnerConfig, partners.PartnerSettings),
    (ExperimentConfig, experiments.ExperimentSettings),
    (OrderRiskConfig, order_risk.RiskSettings),
]


@pytest.mark.parametrize(("config", "model_settings"), PAIRS, ids=lambda c: c.__name__)
def test_default_config_builds_the_default_model_settings(config, model_settings):
    assert config().settings() == model_settings()


@pytest.mark.parametrize(("config", "model_settings"), PAIRS, ids=lambda c: c.__name__)
def test_every_numeric_config_field_reaches_the_model(config, model_settings):
    """Change one field at a time: the settings the model gets must change too."""
    base = config().settings()
    for name, field in config.model_fields.items():
        if field.annotation not in (int, float):
            continue
        changed = config(**{name: field.default + 1}).settings()
        if changed == base:
            # Fields that are the pipeline's own (seeds, approval margins) never reach
            # the settings dataclass; they must then not be one of its fields either.
            assert name not in {f.name for f in dataclasses.fields(model_settings)}, name
