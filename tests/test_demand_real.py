"""Demand on real histories the generator did not write (benchmarks/demand_real.py has
the full table): through the production ingest and loaders, default settings."""

from __future__ import annotations

import pytest

from benchmarks.demand_real import bike_sharing_landing, bike_shop_landing, history
from models import demand


def test_bike_shop_mean_forecast_beats_both_baselines(tmp_path):
    """97 models sold on a few days a year each: the expected units (what the reorder plan
    and the report add up) beat the 28-day moving average and the seasonal naive forecast
    on WAPE and MASE in the last 28 days, and are far less biased."""
    backtest = demand.train(history(bike_shop_landing(tmp_path)), seed=0).backtest
    ours, baselines = backtest.metrics, backtest.baseline_metrics.values()
    assert ours["wape_expected_units"] < 0.85 * min(b["wape"] for b in baselines)
    assert ours["mase_expected_units"] < 0.85 * min(b["mase"] for b in baselines)
    assert abs(ours["bias_expected_units"]) < min(abs(b["bias"]) for b in baselines)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_sku_store_interval_is_calibrated_whatever_the_seed(tmp_path, seed):
    """Two series (casual and registered rentals): when both fell into one half of the
    backtest's cross-fit, their points got an uncalibrated interval (coverage 0.018 with
    seed 0 and 0.036 with seed 1, against 0.80 with seed 2, before 7e5577f)."""
    backtest = demand.train(history(bike_sharing_landing(tmp_path)), seed=seed).backtest
    assert 0.6 <= backtest.metrics["coverage_p10_p90"] <= 0.97
