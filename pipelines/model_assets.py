"""What every model's assets share: the weekly training step and the nightly
store-by-store scoring step around storepulse/lifecycle.py, their checks and the
metadata a person reads in the UI (candidates, champions, store status)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from pipelines.metadata import OWNER, metrics, preview, table_metadata
from pipelines.resources import RunSettings, StorepulseResource
from pipelines.store_steps import skipped, status_preview, write_step
from storepulse import lifecycle
from storepulse.lifecycle import (
    STATUS_FAILED,
    STATUS_OK,
    ModelSpec,
    NothingToTrain,
    Release,
    StoreOutcome,
    score_stores,
)
from storepulse.publish import store_ids

NO_STORE_FAILED = "no_store_failed"


def approved_check(key: dg.AssetKey, name: str, what: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=key,
        blocking=True,
        description=(
            f"The {what} champion (chosen per store where a store has enough data) is not "
            "clearly worse than the last approved version's; a baseline winning is normal. A "
            "regression keeps the last approved version scoring."
        ),
    )


def no_failure_check(key: dg.AssetKey, step: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NO_STORE_FAILED,
        asset=key,
        description=f"No store's {step} output failed outright (ops.store_status, step {step}).",
    )


def no_failure_result(outcomes: list[StoreOutcome]) -> dg.AssetCheckResult:
    failed = [o for o in outcomes if o.status == STATUS_FAILED]
    return dg.AssetCheckResult(
        check_name=NO_STORE_FAILED,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failed": metrics({o.store_id: o.message for o in failed})},
    )


def train_window(dates: pl.Series, as_of: date) -> str:
    """A candidate's train_window: "first day of data..the day before as_of" (as_of alone
    when there is no data)."""
    start = dates.min() if dates.len() else as_of
    return f"{start}..{as_of - timedelta(days=1)}"


def candidates_table(candidates: dict[str, dict]) -> pl.DataFrame:
    rows = [
        {"method": m, **{k: v for k, v in values.items() if isinstance(v, int | float)}}
        for m, values in candidates.items()
    ]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def champions_table(release: Release) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"store_id": store, "method": method, "why": release.decision.why.get(store, "")}
            for store, method in sorted(release.decision.by_store.items())
        ],
        schema={"store_id": pl.String, "method": pl.String, "why": pl.String},
    )


def train_result(
    context: dg.AssetExecutionContext,
    spec: ModelSpec,
    config: Any,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
    check_name: str,
    extra: Callable[[Release], dict] | None = None,
) -> dg.MaterializeResult:
    """The weekly step: train every candidate, choose, record; metadata and the check.
    `extra(release)` adds the model's own metadata (plots, importance)."""
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
    try:
        release = lifecycle.train(
            storepulse.warehouse(), spec, as_of, config, storepulse.paths().model_store
        )
    except NothingToTrain as nothing:
        context.log.warning(f"{spec.name}: {nothing}; skipped")
        return dg.MaterializeResult(
            metadata={"as_of": as_of.isoformat(), "skipped": str(nothing)},
            check_results=[
                dg.AssetCheckResult(
                    check_name=check_name,
                    passed=True,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"skipped": str(nothing)},
                )
            ],
        )
    card = release.card
    (context.log.info if release.approved else context.log.warning)(
        f"{release.version}: {card['reason']}"
    )
    metadata = {
        "as_of": as_of.isoformat(),
        "model_version": release.version,
        "approved": release.approved,
        "champion": release.decision.champion,
        "decision": card["reason"],
        "candidates": preview(
            candidates_table(card["candidates"]).with_columns(pl.col(pl.Float64).round(4))
        ),  # fmt: skip
        "champion_by_store": preview(champions_table(release), rows=50),
        "unavailable": metrics(release.unavailable),
        "train_window": card["train_window"],
    }
    if card.get("training_sample"):
        metadata["training_sample"] = card["training_sample"]
    if card.get("memory_guard"):
        context.log.warning(card["memory_guard"])
        metadata["memory_guard"] = card["memory_guard"]
    metadata |= extra(release) if extra else {}
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=check_name,
                passed=release.approved,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"champion": release.decision.champion, "reason": card["reason"]},
            )
        ],
    )


def training_asset(
    spec: ModelSpec,
    config_type: type[dg.Config],
    key: dg.AssetKey,
    check_name: str,
    what: str,
    *,
    group_name: str,
    deps: list[dg.AssetKey],
    description: str,
    kinds: frozenset[str] = frozenset({"lightgbm", "polars"}),
    extra: Callable[[Release], dict] | None = None,
) -> dg.AssetsDefinition:
    """The weekly training asset of `spec`: `train_result` with its blocking approval
    check (`check_name`, on the `what` champion), configured by `config_type`."""

    def train(context, config, storepulse, run_settings):
        return train_result(context, spec, config, storepulse, run_settings, check_name, extra)

    # Dagster reads the config class and the resources from the annotations (this module
    # has postponed annotations, so they are set as objects).
    train.__annotations__ = {
        "context": dg.AssetExecutionContext,
        "config": config_type,
        "storepulse": StorepulseResource,
        "run_settings": RunSettings,
        "return": dg.MaterializeResult,
    }
    return dg.asset(
        key=key,
        group_name=group_name,
        deps=deps,
        kinds=set(kinds),
        owners=[OWNER],
        pool="duckdb",
        check_specs=[approved_check(key, check_name, what)],
        description=description,
    )(train)


def scoring_asset(
    key: dg.AssetKey, step: str, *, group_name: str, deps: list[dg.AssetKey], description: str
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """The decorator of a model's nightly scoring asset (its function calls `score_all`):
    the table `key` with the check that no store's `step` failed outright."""
    return dg.asset(
        key=key,
        group_name=group_name,
        deps=deps,
        kinds={"lightgbm", "duckdb"},
        owners=[OWNER],
        pool="duckdb",
        check_specs=[no_failure_check(key, step)],
        description=description,
    )


def of_store(inputs: dict, store: str) -> dict:
    """One store's slice of a model's inputs: its rows of every frame (other values as
    they are)."""
    return {
        name: value.filter(pl.col("store_id") == store)
        if isinstance(value, pl.DataFrame)
        else value
        for name, value in inputs.items()
    }


@dataclass
class ScoreRun:
    as_of: Any
    release: Release | None  # None when nothing could be trained
    scores: pl.DataFrame  # the first table's rows
    outcomes: list[StoreOutcome]
    inputs: Any
    seconds: float
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)  # table -> rows written

    def metadata(self) -> dict:
        return {
            **table_metadata(self.scores.height, self.as_of),
            "model_version": self.release.version if self.release else "none",
            "model_approved": self.release.approved if self.release else False,
            "trained_now": self.release.trained_now if self.release else False,
            "store_status": status_preview(self.outcomes),
            "scoring_seconds": round(self.seconds, 3),
        }

    def result(self, metadata: dict, asset_key: dg.AssetKey | None = None) -> dg.MaterializeResult:
        """The scoring asset's result: the run's metadata, then the asset's own
        (`metadata`), and the no-store-failed check."""
        return dg.MaterializeResult(
            asset_key=asset_key,
            metadata={**self.metadata(), **metadata},
            check_results=[no_failure_result(self.outcomes)],
        )


def score_all(
    context: dg.AssetExecutionContext,
    spec: ModelSpec,
    config: Any,
    storepulse: StorepulseResource,
    run_settings: RunSettings,
    *,
    step: str,
    score_one: Callable[[Release, Any, Any, str, str], Any],
    table: str | None = None,
    empty: pl.DataFrame | None = None,
    tables: dict[str, pl.DataFrame] | None = None,
    load_store: Callable[[Any, date, str], Any] | None = None,
) -> ScoreRun:
    """The nightly step: the release (trained first when needed), every store scored
    with its champion down the fallback chain (`score_one(release, inputs, as_of, store,
    method)`; raise lifecycle.CannotScore when a method cannot run for the store), the
    table(s) replaced and ops.store_status written for `step`.

    `inputs` are spec.load's (every store) or, when the spec or the caller gives a
    per-store loader (`load_store(con, as_of, store)`, default spec.load_store), the
    store's own: then no step holds every store's inputs, and ScoreRun.inputs is None.

    One table: `table` and its `empty` frame, and score_one returns the store's rows.
    Several: `tables` maps each table to its empty frame, and score_one returns a dict
    of the store's rows per table."""
    empties = tables if tables is not None else {table: empty}
    load_store = load_store or spec.load_store
    with storepulse.writer() as con:
        as_of = run_settings.as_of_date(con)
        stores = store_ids(con)
        # Store by store when the model can read one store (memory follows the largest
        # store); training then reads what it needs itself (spec.load_training).
        inputs = spec.load(con, as_of) if load_store is None else None
    started = time.perf_counter()
    try:
        # An inline training reads what was just loaded: one copy of the inputs, not two.
        release = lifecycle.release_for_scoring(
            storepulse.warehouse(), spec, as_of, config, storepulse.paths().model_store,
            context.log.info, inputs=inputs,
        )  # fmt: skip
    except NothingToTrain as nothing:
        context.log.warning(f"{step}: {nothing}")
        outcomes = [skipped(s, step, str(nothing)) for s in stores]
        write_step(storepulse, as_of, step, empties, outcomes)
        return _score_run(as_of, None, empties, outcomes, inputs, started)
    # What a version trained inline showed its training asset (backtest frames, feature
    # caches) is not needed to score: free it before the stores are scored.
    release.report = None
    gc.collect()
    if load_store is None:
        results, outcomes = score_stores(
            release,
            stores,
            lambda store, method: score_one(release, inputs, as_of, store, method),
            step,
        )
    else:
        read = _StoreReader(storepulse, load_store, as_of)
        results, outcomes = score_stores(
            release,
            stores,
            lambda store, method: score_one(release, read(store), as_of, store, method),
            step,
        )
        del read
    written = {}
    for name, empty_frame in empties.items():
        frames = [r if tables is None else r[name] for r in results.values()]
        frames = [f for f in frames if f.height]
        written[name] = pl.concat(frames, how="vertical_relaxed") if frames else empty_frame
    write_step(storepulse, as_of, step, written, outcomes)
    for outcome in outcomes:
        if outcome.status != STATUS_OK:
            context.log.warning(f"{step}, {outcome.store_id}: {outcome.status}: {outcome.message}")
    return _score_run(as_of, release, written, outcomes, inputs, started)


class _StoreReader:
    """One store's inputs at a time, read when a store is first asked for (the fallback
    chain asks again for the same store: read once). Each read opens the warehouse and
    closes it, so DuckDB's buffers go with the connection between stores."""

    def __init__(self, storepulse: StorepulseResource, load_store: Callable, as_of: date):
        self.storepulse, self.load_store, self.as_of = storepulse, load_store, as_of
        self.store: str | None = None
        self.inputs: Any = None

    def __call__(self, store: str) -> Any:
        if store != self.store:
            self.store, self.inputs = None, None  # the previous store's go first
            with self.storepulse.writer() as con:
                self.inputs = self.load_store(con, self.as_of, store)
            self.store = store
        return self.inputs


def _score_run(as_of, release, frames: dict, outcomes, inputs, started: float) -> ScoreRun:
    seconds = time.perf_counter() - started
    first = next(iter(frames.values()))
    return ScoreRun(as_of, release, first, outcomes, inputs, seconds, tables=frames)
