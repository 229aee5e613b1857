"""The first finding of issue #12: a landing with one young store (75 days, ~300
orders; tests/thin_world.py) made the whole `storepulse run` fail. It runs alone here,
in a module of its own so that pytest-xdist can run it beside test_thin_stores.py."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from thin_world import nightly, statuses, thin_landing

from storepulse.publish import latest_set, verify_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    return thin_landing(tmp_path_factory)


def test_a_young_store_alone_gets_every_output_it_can(landing, tmp_path):
    """The issue's first finding: a landing with one young store made the whole run fail."""
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    shutil.copytree(landing / "young-gb", home / "landing" / "young-gb")
    stores = pl.read_csv(landing / "stores.csv").filter(pl.col("store_id") == "young-gb")
    stores.write_csv(home / "landing" / "stores.csv")
    shutil.copy(landing / "fx_rates.csv", home / "landing" / "fx_rates.csv")
    result = nightly(home)
    assert result.success, result.failures
    assert result.published_stores == ["young-gb"]
    got = statuses(home)
    # Too little history for the learned churn model: the BG/NBD baseline scores, and why.
    status, method, message = got[("young-gb", "churn")]
    assert (status, method) == ("fallback", "bgnbd") and "LightGBM" in message
    assert got[("young-gb", "ad_roi")][0] in ("fallback", "skipped")
    assert verify_set(latest_set(home / "exports" / "young-gb")) == []
