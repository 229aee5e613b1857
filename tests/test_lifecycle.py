"""The one model lifecycle (storepulse/lifecycle.py) on a toy model: champion choice,
versions, regressions, recovery of lost or stale artifacts, per-store fallback."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from datetime import date

import polars as pl
import pytest

from storepulse import lifecycle
from storepulse.lifecycle import Candidates, CannotScore, ModelSpec, NothingToTrain
from storepulse.warehouse import Warehouse, query

AS_OF = date(2025, 6, 1)


@dataclass(frozen=True)
class Toy:
    """Settings of the toy model: the backtest AUC each method gets."""

    auc: tuple[tuple[str, float], ...] = (("recency", 0.70), ("bgnbd", 0.74), ("learned", 0.78))
    per_store_n: int = 500
    fail_learned: bool = False


def toy_train(inputs, as_of, settings: Toy) -> Candidates:
    if inputs.is_empty():
        raise NothingToTrain("no orders")
    overall = {m: {"auc": a, "brier": 0.2, "n": 1000} for m, a in settings.auc}
    unavailable = {}
    if settings.fail_learned:
        overall.pop("learned")
        unavailable["learned"] = "too little history"
    per_store = {
        "big": {m: {"auc": a, "n": settings.per_store_n} for m, a in settings.auc},
        # In the small store the simplest method is best, but it has few customers.
        "small": {"recency": {"auc": 0.9, "n": 40}, "bgnbd": {"auc": 0.6, "n": 40}},
    }
    return Candidates({"fitted": list(overall)}, overall, per_store, "2024-01-01..2025-05-31",
                      unavailable=unavailable)  # fmt: skip


def toy_spec(**changes) -> ModelSpec:
    spec = ModelSpec(
        name="toy",
        methods=("recency", "bgnbd", "learned"),
        primary="auc",
        higher_is_better=True,
        min_gain=0.005,
        min_store_n=200,
        code_version="toy-1",
        load=lambda con, as_of: pl.DataFrame({"x": [1, 2, 3]}),
        train=toy_train,
        fingerprint=lambda inputs: lifecycle.frame_fingerprint(inputs),
        guard=("brier", False),
    )
    return replace(spec, **changes)


@pytest.fixture
def warehouse(tmp_path):
    return Warehouse(tmp_path / "w.duckdb")


def test_the_best_method_wins_and_a_tie_goes_to_the_simpler_one():
    spec = toy_spec()
    decision = lifecycle.choose(spec, toy_train(pl.DataFrame({"x": [1]}), AS_OF, Toy()))
    assert decision.champion == "learned"
    tie = Toy(auc=(("recency", 0.70), ("bgnbd", 0.74), ("learned", 0.743)))
    decision = lifecycle.choose(spec, toy_train(pl.DataFrame({"x": [1]}), AS_OF, tie))
    assert decision.champion == "bgnbd"
    assert "learned did not beat it by more than 0.005" in decision.summary


def test_a_winner_may_not_be_worse_on_the_guard_metric():
    candidates = toy_train(pl.DataFrame({"x": [1]}), AS_OF, Toy())
    candidates.overall["learned"]["brier"] = 0.3  # better AUC, worse Brier
    assert lifecycle.choose(toy_spec(), candidates).champion == "bgnbd"


def test_stores_choose_their_own_champion_only_with_enough_data():
    decision = lifecycle.choose(toy_spec(), toy_train(pl.DataFrame({"x": [1]}), AS_OF, Toy()))
    assert decision.by_store == {"big": "learned", "small": "learned"}
    assert decision.why["small"].startswith("the global champion learned")
    assert "n=40 < 200" in decision.why["small"]
    tiny = toy_train(pl.DataFrame({"x": [1]}), AS_OF, Toy(per_store_n=150))
    assert lifecycle.choose(toy_spec(), tiny).why["big"].startswith("the global champion")


def test_the_version_changes_with_the_data_the_settings_and_the_code():
    spec = toy_spec()
    base = lifecycle.version_of(spec, AS_OF, "abc", Toy())
    assert base == lifecycle.version_of(spec, AS_OF, "abc", Toy())
    assert base != lifecycle.version_of(spec, AS_OF, "abd", Toy())
    assert base != lifecycle.version_of(spec, AS_OF, "abc", Toy(per_store_n=1))
    assert base != lifecycle.version_of(toy_spec(code_version="toy-2"), AS_OF, "abc", Toy())


def test_training_records_the_champion_per_store_and_why(warehouse, tmp_path):
    release = lifecycle.train(warehouse, toy_spec(), AS_OF, Toy(), tmp_path / "store")
    assert release.approved and release.trained_now
    with warehouse.reader() as con:
        run = query(con, "select * from ops.model_runs").row(0, named=True)
    assert run["champion"] == "learned" and run["code_version"] == "toy-1"
    assert json.loads(run["champions"]) == {"big": "learned", "small": "learned"}
    assert json.loads(run["metrics"])["method"] == "learned"
    assert set(json.loads(run["baseline_metrics"])) == {"recency", "bgnbd"}
    assert "learned wins the backtest (auc: learned 0.78, recency 0.7, bgnbd 0.74)" in run["reason"]
    card = json.loads((tmp_path / "store" / "toy" / release.version / "card.json").read_text())
    assert card["decision"]["champion"] == "learned" and card["code_version"] == "toy-1"


def test_a_clear_regression_is_not_approved_and_the_last_version_keeps_scoring(warehouse, tmp_path):
    store = tmp_path / "store"
    first = lifecycle.train(warehouse, toy_spec(), AS_OF, Toy(), store)
    worse = Toy(auc=(("recency", 0.50), ("bgnbd", 0.55), ("learned", 0.60)))
    second = lifecycle.train(warehouse, toy_spec(), AS_OF, worse, store)
    assert not second.approved
    assert "NOT APPROVED" in second.card["reason"] and first.version in second.card["reason"]
    # A small drop is weekly noise, not a regression.
    slight = Toy(auc=(("recency", 0.70), ("bgnbd", 0.74), ("learned", 0.76)))
    assert lifecycle.train(warehouse, toy_spec(), AS_OF, slight, store).approved
    scoring = lifecycle.release_for_scoring(warehouse, toy_spec(), AS_OF, Toy(), store, print)
    assert scoring.version != second.version


def test_a_wiped_model_store_and_a_stale_artifact_are_retrained(warehouse, tmp_path):
    store = tmp_path / "store"
    first = lifecycle.train(warehouse, toy_spec(), AS_OF, Toy(), store)
    shutil.rmtree(store)
    logged = []
    again = lifecycle.release_for_scoring(warehouse, toy_spec(), AS_OF, Toy(), store, logged.append)
    assert again.trained_now and again.version == first.version
    assert "training a replacement" in logged[0]
    # Newer code: the saved artifact says another code version; it is retrained.
    newer = toy_spec(code_version="toy-2")
    fresh = lifecycle.release_for_scoring(warehouse, newer, AS_OF, Toy(), store, logged.append)
    assert fresh.trained_now and fresh.version != first.version
    assert any("built by code version 'toy-1'" in line for line in logged)


def test_inline_training_uses_the_inputs_the_scoring_step_already_holds(warehouse, tmp_path):
    """Nightly scoring on a fresh home loads the inputs once (issue #18: on large the
    second copy of every store's orders took churn from ~6 to 13.6 GB)."""
    loads = []

    def load(con, as_of):
        loads.append(as_of)
        return pl.DataFrame({"x": [1, 2, 3]})

    spec = toy_spec(load=load)
    with warehouse.writer() as con:
        held = spec.load(con, AS_OF)
    release = lifecycle.release_for_scoring(
        warehouse, spec, AS_OF, Toy(), tmp_path / "store", print, inputs=held
    )
    assert release.trained_now and loads == [AS_OF]  # the caller's one load only
    reloaded = lifecycle.train(warehouse, spec, AS_OF, Toy(), tmp_path / "other")
    assert reloaded.version == release.version and len(loads) == 2


def test_stores_score_down_the_chain_and_one_failure_stays_in_its_store(warehouse, tmp_path):
    release = lifecycle.train(warehouse, toy_spec(), AS_OF, Toy(), tmp_path / "store")

    def score(store, method):
        if store == "young" and method == "learned":
            raise CannotScore("75 days of history")
        if store == "broken":
            raise RuntimeError("boom")
        if store == "empty":
            raise CannotScore("no orders")
        return f"{store}:{method}"

    results, outcomes = lifecycle.score_stores(
        release, ["big", "young", "broken", "empty"], score, "toy"
    )
    assert results == {"big": "big:learned", "young": "young:bgnbd"}
    got = {o.store_id: (o.status, o.method) for o in outcomes}
    assert got == {
        "big": ("ok", "learned"),
        "young": ("fallback", "bgnbd"),
        "broken": ("failed", "learned"),
        "empty": ("skipped", None),
    }
    assert "75 days of history" in next(o.message for o in outcomes if o.store_id == "young")
    assert "RuntimeError: boom" in next(o.message for o in outcomes if o.store_id == "broken")


def test_when_the_learned_model_cannot_be_trained_a_baseline_scores_as_a_fallback(
    warehouse, tmp_path
):
    release = lifecycle.train(
        warehouse, toy_spec(), AS_OF, Toy(fail_learned=True), tmp_path / "store"
    )
    assert release.decision.champion == "bgnbd"
    _, outcomes = lifecycle.score_stores(release, ["big"], lambda s, m: m, "toy")
    assert (outcomes[0].status, outcomes[0].method) == ("fallback", "bgnbd")
    assert "learned: too little history" in outcomes[0].message
    with warehouse.writer() as con:
        lifecycle.record_store_status(con, AS_OF, "toy", outcomes)
        lifecycle.record_store_status(con, AS_OF, "toy", outcomes)  # a rerun replaces
        rows = query(con, "select store_id, step, status, method from ops.store_status").rows()
    assert rows == [("big", "toy", "fallback", "bgnbd")]


def test_a_replay_does_not_replace_the_version_that_saw_the_newest_data(warehouse, tmp_path):
    """A replay as of an early day trains a version on old data after the nightly one
    was trained: the next nightly run must still score with the newest data's version
    (it had picked the one trained last), and the replay with its own."""
    from datetime import timedelta

    from storepulse.model_store import latest_approved

    def windowed(inputs, as_of, settings):
        found = toy_train(inputs, as_of, settings)
        return replace(found, train_window=f"2024-01-01..{as_of - timedelta(days=1)}")

    spec, store = toy_spec(train=windowed), tmp_path / "store"
    recent = lifecycle.train(warehouse, spec, date(2025, 6, 1), Toy(), store)
    replay = lifecycle.train(warehouse, spec, date(2025, 1, 1), Toy(), store)
    assert recent.version != replay.version
    with warehouse.reader() as con:
        assert latest_approved(con, "toy", date(2025, 7, 1)) == recent.version
        assert latest_approved(con, "toy", date(2025, 3, 1)) == replay.version
        assert latest_approved(con, "toy", date(2024, 12, 1)) is None
