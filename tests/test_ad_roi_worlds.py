"""The independent mix worlds' lift tests (benchmarks/mix_worlds.py): a planned test
is run as the plan designed it, in a window where the channel spends, before the
previous test, and measured around its true lift with the stated error."""

from __future__ import annotations

import numpy as np

from benchmarks.mix_worlds import make_world


def test_a_planned_test_runs_as_designed_before_the_previous_one():
    world = make_world("geometric_hill", 0)
    channel = max(world.channels, key=lambda c: world.spend[c].sum())
    rng = np.random.default_rng(0)
    row, truth, start = world.planned_test(rng, channel, 28, 0.3, before=len(world.dates))
    stop = start + 28
    assert row["channel"] == channel and row["scope"] == "total"
    assert row["start_date"] == world.dates[start] and row["end_date"] == world.dates[stop - 1]
    assert stop <= len(world.dates) - 14  # two weeks of carry-out observed after it
    usual = world.spend[channel][world.spend[channel] > 0].mean()
    assert world.spend[channel][start:stop].sum() >= 0.5 * usual * 28
    assert truth["true_lift_usd"] == world.true_lift(channel, start, stop, "total") > 0
    # The next one falls before it.
    _, _, second_start = world.planned_test(rng, channel, 28, 0.5, before=start)
    assert second_start + 28 <= start
    # The same window with half the audience held out: se scales with 1/sqrt(h (1 - h)).
    half = world.measure(rng, channel, start, stop, 0.5, "total")[0]
    ratio = np.sqrt(0.3 * 0.7 / (0.5 * 0.5))
    assert np.isclose(half["std_error_usd"], row["std_error_usd"] * ratio)
    # Over many draws the measured lift centres on the truth with the stated error.
    draws = [
        world.measure(np.random.default_rng(i), channel, start, stop, 0.3, "total")[0]
        for i in range(400)
    ]
    errors = np.array([d["incremental_revenue_usd"] for d in draws]) - truth["true_lift_usd"]
    se = row["std_error_usd"]
    assert abs(errors.mean()) < 4 * se / np.sqrt(len(draws))
    assert 0.85 < errors.std() / se < 1.15
