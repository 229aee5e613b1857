"""One model lifecycle for every model (DESIGN §5, docs/models.md).

train -> version -> card -> save -> record -> choose the champion -> load -> fall back.

A model hands this module a small `ModelSpec`: how to load its inputs, how to train
its candidates (the learned model and its baselines, simplest first) and which
metric decides. Training returns `Candidates`: one artifact that can score with any
candidate, and every candidate's backtest overall and per store. This module then

- versions the run: data fingerprint + settings + code version, so other settings
  or other code never overwrite an artifact or its `ops.model_runs` row;
- picks the champion (`choose`): per store where the store's own backtest is big
  enough, else the global one; a more complex method must beat the simpler ones by
  more than `min_gain` (a tie goes to the simpler method: not a failure, not an
  alert);
- records the decision (ops.model_runs: champion, champions per store, why) and
  approves the run unless the champion is clearly worse than last week's;
- at scoring time loads the newest approved version trained up to as_of, and
  retrains inline when there is none, when the model store lost it, or when it was
  saved by older code (`release_for_scoring`);
- scores store by store (`score_stores`): each store with its champion, falling
  back down the chain of simpler methods when one cannot run for that store, one
  store's exception never stopping another's, and every outcome in
  `ops.store_status`.

No Dagster here: the assets in pipelines/ call it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from storepulse.model_store import fingerprint, latest_approved, load_model, record_run, save_model
from storepulse.warehouse import append_rows, query, transaction

STATUS_OK = "ok"
STATUS_FALLBACK = "fallback"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"


class NothingToTrain(Exception):
    """No data this model can learn from at all (e.g. no order lines): a skip."""


class CannotScore(Exception):
    """This method cannot score this store (the message says why): try a simpler one."""


class StaleArtifact(Exception):
    """An artifact saved by code that built it differently: retrain."""


class Writer(Protocol):
    def writer(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


@dataclass
class Candidates:
    """What a model's trainer returns."""

    artifact: Any  # scores with any fitted candidate (pickled into the model store)
    overall: dict[str, dict[str, float]]  # method -> backtest metrics (with "n")
    per_store: dict[str, dict[str, dict[str, float]]]  # store -> method -> metrics
    train_window: str  # "YYYY-MM-DD..YYYY-MM-DD"
    unavailable: dict[str, str] = field(default_factory=dict)  # method -> why not fitted
    backtest_cutoff: date | None = None
    card: dict = field(default_factory=dict)  # model-specific card entries
    run_metrics: dict = field(default_factory=dict)  # extra numbers for ops.model_runs
    store_notes: dict[str, str] = field(default_factory=dict)  # store -> not modelled, why
    report: Any = None  # what the training asset shows (plots); not saved


@dataclass(frozen=True)
class ModelSpec:
    """Everything the lifecycle needs to know about one model."""

    name: str
    methods: tuple[str, ...]  # candidates, simplest first; the last is the learned model
    primary: str  # the backtest metric that picks the champion
    higher_is_better: bool
    min_gain: float  # a more complex method must beat a simpler one by more than this
    min_store_n: int  # a store chooses its own champion from this many evaluated units
    code_version: str  # bump when the recipe changes: artifacts of other code are stale
    load: Callable[..., Any]  # (con, as_of) -> inputs
    train: Callable[..., Candidates]  # (inputs, as_of, settings) -> Candidates
    fingerprint: Callable[[Any], str]  # inputs -> a hash of the training data
    # Optional, for models whose inputs grow with every customer (issue #18):
    # (con, as_of, store) -> one store's inputs, as `load`'s sliced to the store; scoring
    # then reads store by store instead of loading every store first.
    load_store: Callable[..., Any] | None = None
    # (con, as_of, settings) -> what `train` needs, e.g. only the training sample's rows;
    # `fingerprint` must then give what it gives for `load`'s inputs.
    load_training: Callable[..., Any] | None = None
    # A second metric the winner may not be worse on (name, higher is better).
    guard: tuple[str, bool] | None = None
    guard_tolerance: float = 0.0
    # The champion regressed when its primary metric is worse than the last approved
    # run's by more than this share (relative), on a backtest of comparable size.
    regression_margin: float = 0.15
    labels: dict[str, str] = field(default_factory=dict)  # method -> words for people
    # A model whose rule is more than one metric (CLV: orders and revenue error and the
    # aggregate) gives it here: (challenger metrics, incumbent metrics) -> it wins.
    beats: Callable[[dict, dict], bool] | None = None
    # With `beats`: (learned metrics, baseline metrics) -> the numbers that rule decides
    # on, in words (the champion's "why"); else the primary metric is shown.
    explain: Callable[[dict, dict], str] | None = None
    # The settings field that overrides min_gain per run (Launchpad), if any.
    min_gain_setting: str | None = None

    def label(self, method: str) -> str:
        return self.labels.get(method, method)

    @property
    def learned(self) -> str:
        return self.methods[-1]


@dataclass
class Decision:
    champion: str  # the global champion
    by_store: dict[str, str]  # store -> its champion
    why: dict[str, str]  # store -> why that method (one sentence)
    summary: str  # how the global champion won, in words

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Release:
    """A version ready to score: the artifact and the decision saved with it."""

    spec: ModelSpec
    version: str
    artifact: Any
    decision: Decision
    unavailable: dict[str, str]
    trained_now: bool = False
    approved: bool = True
    card: dict = field(default_factory=dict)
    report: Any = None  # Candidates.report of a version trained in this process

    def plan_for(self, store_id: str) -> tuple[str, str]:
        """(method, why) the store is scored with."""
        method = self.decision.by_store.get(store_id, self.decision.champion)
        why = self.decision.why.get(
            store_id, f"no backtest for this store: the global champion ({self.spec.label(method)})"
        )
        return method, why

    def model_version(self, method: str) -> str:
        """What score rows carry: the version and the method that produced them."""
        return f"{self.version}/{method}"


# --------------------------------------------------------------------------- choosing


def _better(spec: ModelSpec, challenger: dict, incumbent: dict) -> bool:
    """The challenger beats the incumbent by more than min_gain (and is no worse on the
    guard metric), or by the spec's own rule."""
    a, b = challenger.get(spec.primary), incumbent.get(spec.primary)
    if spec.beats is not None and a is not None and b is not None:
        return spec.beats(challenger, incumbent)
    if a is None or b is None:
        return a is not None and b is None
    gain = (a - b) if spec.higher_is_better else (b - a)
    if gain <= spec.min_gain:
        return False
    if spec.guard is not None:
        name, higher = spec.guard
        x, y = challenger.get(name), incumbent.get(name)
        if x is not None and y is not None:
            worse = (y - x) if higher else (x - y)
            if worse > spec.guard_tolerance:
                return False
    return True


def _winner(spec: ModelSpec, metrics: dict[str, dict]) -> str | None:
    """Simplest first; a method displaces the current winner only by beating it. When
    no method could be evaluated (too little history for any backtest), the most
    capable method that can run (the top of the fallback chain)."""
    if metrics and not any(m.get(spec.primary) is not None for m in metrics.values()):
        return [m for m in spec.methods if m in metrics][-1]
    winner = None
    for method in spec.methods:
        if method not in metrics:
            continue
        if winner is None or _better(spec, metrics[method], metrics[winner]):
            winner = method
    return winner


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _compare(spec: ModelSpec, metrics: dict[str, dict], winner: str) -> str:
    others = [m for m in spec.methods if m in metrics and m != winner]
    baselines = [m for m in spec.methods if m in metrics and m != spec.learned]
    pair = [metrics.get(spec.learned), metrics[baselines[-1]] if baselines else None]
    if spec.explain is not None and all(m and m.get(spec.primary) is not None for m in pair):
        return spec.explain(*pair)
    shown = ", ".join(
        f"{spec.label(m)} {_fmt(metrics[m].get(spec.primary))}" for m in [winner, *others]
    )
    return f"{spec.primary}: {shown}"


def choose(spec: ModelSpec, candidates: Candidates) -> Decision:
    """The champion, globally and per store (see the module docstring)."""
    champion = _winner(spec, candidates.overall)
    if champion is None:
        raise NothingToTrain(
            "no candidate could be evaluated: "
            + "; ".join(f"{spec.label(m)}: {why}" for m, why in candidates.unavailable.items())
        )
    if candidates.overall[champion].get(spec.primary) is None:
        summary = (
            f"{spec.label(champion)}: no backtest could be run on this history, so the most "
            "capable method that can run scores"
        )
    else:
        summary = (
            f"{spec.label(champion)} wins the backtest "
            f"({_compare(spec, candidates.overall, champion)})"
        )
    if champion != spec.learned and spec.learned in candidates.overall:
        summary += f"; {spec.label(spec.learned)} did not beat it by more than {spec.min_gain:g}"
    if spec.learned in candidates.unavailable:
        summary += (
            f"; {spec.label(spec.learned)} could not be trained "
            f"({candidates.unavailable[spec.learned]})"
        )
    by_store, why = {}, {}
    for store, metrics in candidates.per_store.items():
        n = min((m.get("n") or 0) for m in metrics.values()) if metrics else 0
        if n >= spec.min_store_n:
            winner = _winner(spec, metrics)
            if winner is not None:
                by_store[store] = winner
                why[store] = f"its own backtest (n={n:,}): {_compare(spec, metrics, winner)}"
                continue
        by_store[store] = champion
        why[store] = (
            f"the global champion {spec.label(champion)}: the store's own backtest is too small "
            f"to choose from (n={n:,} < {spec.min_store_n:,})"
        )
    return Decision(champion, by_store, why, summary)


# --------------------------------------------------------------------------- training


def settings_json(settings: Any) -> str:
    """The settings as stable JSON (dataclasses, pydantic models or dicts)."""
    if hasattr(settings, "model_dump"):
        data = settings.model_dump()
    elif hasattr(settings, "__dataclass_fields__"):
        data = asdict(settings)
    else:
        data = settings
    return json.dumps(data, sort_keys=True, default=str)


def version_of(spec: ModelSpec, as_of: date, data_fingerprint: str, settings: Any) -> str:
    """Deterministic: the same data, settings and code give the same version; any of
    them changing gives another (an approved artifact is never overwritten)."""
    recipe = f"{data_fingerprint}|{settings_json(settings)}|{spec.code_version}"
    return f"{spec.name}-{as_of:%Y%m%d}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"


def frame_fingerprint(*frames: pl.DataFrame | None) -> str:
    """A hash of several frames (row order and content), for ModelSpec.fingerprint."""
    return combine_fingerprints(
        *(fingerprint(f) if f is not None and f.height else "empty" for f in frames)
    )


def combine_fingerprints(*parts: str) -> str:
    """frame_fingerprint of frames whose own fingerprints are `parts` ("empty" for none)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# Rows hashed per batch when a fingerprint is read from a query.
FINGERPRINT_BATCH_ROWS = 1_000_000


def query_fingerprint(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> str:
    """model_store.fingerprint of what `query(con, sql, params)` returns (or "empty"),
    read as a stream of batches, so the rows never need to be in memory at once. A row's
    hash does not depend on its neighbours, so the batches hash to the same bytes."""
    rel = con.sql(sql, params=params) if params else con.sql(sql)
    digest, rows = hashlib.sha256(), 0
    for batch in rel.to_arrow_reader(FINGERPRINT_BATCH_ROWS):
        frame = pl.from_arrow(batch)
        if frame.height:
            digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
            rows += frame.height
    return digest.hexdigest()[:16] if rows else "empty"


def _regression(
    con: duckdb.DuckDBPyConnection, spec: ModelSpec, metrics: dict, version: str
) -> str | None:
    """Why the champion counts as a regression against the last approved run, or None.

    Comparable data: both backtests evaluated at least half as many units as the
    other. Rates differ week to week; only a clear drop (regression_margin) counts."""
    previous = query(
        con,
        "select version, metrics from ops.model_runs where model = ? and approved"
        " and version <> ? and store_id is null order by trained_at desc limit 1",
        [spec.name, version],
    )
    if previous.is_empty():
        return None
    before = json.loads(previous["metrics"][0] or "{}")
    old, new = before.get(spec.primary), metrics.get(spec.primary)
    old_n, new_n = before.get("n"), metrics.get("n")
    if old is None or new is None or not old_n or not new_n:
        return None
    if min(old_n, new_n) < 0.5 * max(old_n, new_n):
        return None
    worse = (old - new) if spec.higher_is_better else (new - old)
    if worse > spec.regression_margin * abs(old):
        return (
            f"the champion's backtest {spec.primary} {_fmt(new)} is clearly worse than the last "
            f"approved version's {_fmt(old)} ({previous['version'][0]})"
        )
    return None


def train(
    warehouse: Writer,
    spec: ModelSpec,
    as_of: date,
    settings: Any,
    model_store: Path,
    inputs: Any = None,
) -> Release:
    """Train every candidate, choose, save and record. Raises NothingToTrain.

    The warehouse is only held while reading inputs and recording the run, so a long
    fit does not keep the one writer busy. `inputs`: what spec.load returned for this
    as_of, when the caller already holds it (one copy in memory, not two)."""
    if inputs is None:
        with warehouse.writer() as con:
            if spec.load_training is not None:
                inputs = spec.load_training(con, as_of, settings)
            else:
                inputs = spec.load(con, as_of)
    candidates = spec.train(inputs, as_of, settings)
    version = version_of(spec, as_of, spec.fingerprint(inputs), settings)
    if spec.min_gain_setting and hasattr(settings, spec.min_gain_setting):
        spec = replace(spec, min_gain=float(getattr(settings, spec.min_gain_setting)))
    decision = choose(spec, candidates)
    champion_metrics = candidates.overall[decision.champion]
    trained_at = datetime.now(UTC).replace(tzinfo=None)
    with warehouse.writer() as con:
        regression = _regression(con, spec, champion_metrics, version)
        approved = regression is None
        reason = decision.summary + (f"; NOT APPROVED: {regression}" if regression else "")
        card = {
            "train_window": candidates.train_window,
            "as_of": as_of,
            "backtest_cutoff": candidates.backtest_cutoff,
            "code_version": spec.code_version,
            "settings": json.loads(settings_json(settings)),
            "candidates": candidates.overall,
            "candidates_by_store": candidates.per_store,
            "unavailable": candidates.unavailable,
            "decision": decision.to_json(),
            "approved": approved,
            "reason": reason,
            "store_notes": candidates.store_notes,
            **candidates.card,
        }
        save_model(model_store, spec.name, version, candidates.artifact, card)
        with transaction(con):
            record_run(
                con,
                model=spec.name,
                version=version,
                trained_at=trained_at,
                train_window=candidates.train_window,
                metrics={
                    **champion_metrics,
                    "method": decision.champion,
                    **candidates.run_metrics,
                },  # fmt: skip
                baseline_metrics={
                    m: v for m, v in candidates.overall.items() if m != decision.champion
                },
                approved=approved,
                reason=reason,
                champion=decision.champion,
                champions=decision.by_store,
                code_version=spec.code_version,
            )
    return Release(
        spec, version, candidates.artifact, decision, candidates.unavailable,
        trained_now=True, approved=approved, card=card, report=candidates.report,
    )  # fmt: skip


def _load(spec: ModelSpec, model_store: Path, version: str) -> Release:
    try:
        artifact, card = load_model(model_store, spec.name, version)
    except (pickle.UnpicklingError, AttributeError, ModuleNotFoundError, EOFError) as exc:
        raise StaleArtifact(f"{version} cannot be loaded by this code ({exc})") from exc
    if card.get("code_version") != spec.code_version:
        raise StaleArtifact(
            f"{version} was built by code version {card.get('code_version')!r}, this code is "
            f"{spec.code_version!r}"
        )
    decision = Decision(**card["decision"])
    return Release(spec, version, artifact, decision, card.get("unavailable", {}), card=card)


class NoApprovedVersion(Exception):
    """No approved version of the model was trained up to as_of (a per-store run does not
    train: the weekly or nightly job does)."""


def approved_release(
    con: duckdb.DuckDBPyConnection, spec: ModelSpec, as_of: date, model_store: Path
) -> Release:
    """The newest approved version trained on data up to as_of, loaded, without training
    one: for per-store runs, which read the warehouse read-only. Raises NoApprovedVersion,
    FileNotFoundError or StaleArtifact (then the nightly job trains a replacement)."""
    version = latest_approved(con, spec.name, as_of)
    if version is None:
        raise NoApprovedVersion(
            f"{spec.name}: no approved version trained up to {as_of}; run weekly_training "
            "(or the nightly job, which trains one) first"
        )
    return _load(spec, model_store, version)


def release_for_scoring(
    warehouse: Writer,
    spec: ModelSpec,
    as_of: date,
    settings: Any,
    model_store: Path,
    log: Callable[[str], None] = print,
    inputs: Any = None,
) -> Release:
    """The newest approved version trained on data up to as_of; trained inline when
    there is none (a fresh home, an early replay), when the model store no longer has
    it, or when older code saved it. Raises NothingToTrain. `inputs`: spec.load's
    result for this as_of when the caller holds it already (training reuses it)."""
    with warehouse.writer() as con:
        version = latest_approved(con, spec.name, as_of)
    if version is not None:
        try:
            return _load(spec, model_store, version)
        except FileNotFoundError as exc:
            log(f"{spec.name}: {exc}; training a replacement now.")
        except StaleArtifact as exc:
            log(f"{spec.name}: {exc}; training a new version now.")
    else:
        log(f"{spec.name}: no approved version trained up to {as_of}: training one first.")
    release = train(warehouse, spec, as_of, settings, model_store, inputs)
    log(f"{spec.name}: {release.version}: {release.decision.summary}")
    if release.card.get("memory_guard"):
        log(release.card["memory_guard"])
    return release


# --------------------------------------------------------------------------- scoring


@dataclass
class StoreOutcome:
    store_id: str
    step: str
    status: str
    method: str | None
    message: str


def score_stores(
    release: Release,
    stores: list[str],
    score_one: Callable[[str, str], Any],
    step: str,
) -> tuple[dict[str, Any], list[StoreOutcome]]:
    """Score each store with its champion, down the chain of simpler methods when one
    cannot run for the store (CannotScore). Any other exception fails that store only.

    Returns the results per store and one outcome per store (for ops.store_status)."""
    spec = release.spec
    results: dict[str, Any] = {}
    outcomes: list[StoreOutcome] = []
    for store in stores:
        planned, why = release.plan_for(store)
        chain = [m for m in reversed(spec.methods[: spec.methods.index(planned) + 1])]
        chain = [m for m in chain if m not in release.unavailable]
        refused: list[tuple[str, str]] = []  # (method label, why it cannot score)
        for method in chain:
            try:
                results[store] = score_one(store, method)
            except CannotScore as exc:
                refused.append((spec.label(method), str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - one store never stops the others
                outcomes.append(StoreOutcome(store, step, STATUS_FAILED, method,
                                             f"{type(exc).__name__}: {exc}"))  # fmt: skip
                break
            learned_missing = release.unavailable.get(spec.learned)
            if refused or (learned_missing and method != spec.learned):
                reasons = _reasons(refused) or f"{spec.label(spec.learned)}: {learned_missing}"
                message = f"scored with {spec.label(method)} because {reasons}"
                outcomes.append(StoreOutcome(store, step, STATUS_FALLBACK, method, message))
            else:
                outcomes.append(StoreOutcome(
                    store, step, STATUS_OK, method, f"scored with {spec.label(method)}: {why}"
                ))  # fmt: skip
            break
        else:
            outcomes.append(StoreOutcome(store, step, STATUS_SKIPPED, None,
                                         _reasons(refused) or "no method could run"))  # fmt: skip
    return results, outcomes


def _reasons(refused: list[tuple[str, str]]) -> str:
    """Why methods could not score, in words: one reason shared by several is said once."""
    if len(refused) > 1 and len({why for _, why in refused}) == 1:
        return refused[0][1]
    return "; ".join(f"{label}: {why}" for label, why in refused)


STORE_STATUS_COLUMNS = ("as_of", "store_id", "step", "status", "method", "message", "recorded_at")


def record_store_status(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    step: str,
    outcomes: list[StoreOutcome],
    stores_only: bool = False,
) -> None:
    """Replace ops.store_status rows of this as_of and step (`stores_only`: only the rows
    of the stores in `outcomes`, the others' stay: a merge of per-store runs)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with transaction(con):
        if stores_only:
            con.execute(
                "delete from ops.store_status where as_of = $as_of and step = $step "
                "and store_id in (select unnest($stores))",
                {"as_of": as_of, "step": step, "stores": [o.store_id for o in outcomes]},
            )
        else:
            con.execute("delete from ops.store_status where as_of = ? and step = ?", [as_of, step])
        if outcomes:
            append_rows(
                con,
                "ops.store_status",
                pl.DataFrame(
                    [
                        {
                            "as_of": as_of,
                            "store_id": o.store_id,
                            "step": o.step,
                            "status": o.status,
                            "method": o.method,
                            "message": o.message,
                            "recorded_at": now,
                        }  # fmt: skip
                        for o in outcomes
                    ],
                    schema={
                        "as_of": pl.Date,
                        "store_id": pl.String,
                        "step": pl.String,
                        "status": pl.String,
                        "method": pl.String,
                        "message": pl.String,
                        "recorded_at": pl.Datetime("us"),
                    },  # fmt: skip
                ),
            )


def status_frame(outcomes: list[StoreOutcome]) -> pl.DataFrame:
    return pl.DataFrame(
        [asdict(o) for o in outcomes],
        schema={
            "store_id": pl.String,
            "step": pl.String,
            "status": pl.String,
            "method": pl.String,
            "message": pl.String,
        },  # fmt: skip
    )


def failed_stores(
    con: duckdb.DuckDBPyConnection, as_of: date, steps: tuple[str, ...] | None = None
) -> Iterator[tuple[str, str, str]]:
    """(store, step, message) of every store that failed outright on as_of."""
    rows = query(
        con,
        "select store_id, step, message from ops.store_status where as_of = ? and status = ?"
        " order by store_id, step",
        [as_of, STATUS_FAILED],
    )
    for store, step, message in rows.iter_rows():
        if steps is None or step in steps:
            yield store, step, message
