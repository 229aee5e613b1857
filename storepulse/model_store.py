"""Model artifacts on disk and their approval record in ops.model_runs.

Layout: model_store/<model>/<version>/{model.pkl, card.json}. The card holds the
training window, features, params, metrics next to the baselines', library
versions and a fingerprint of the training data (DESIGN §5).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from storepulse.warehouse import append_rows, query

LIBRARIES = ("lightgbm", "scikit-learn", "polars", "numpy", "duckdb", "storepulse")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def fingerprint(frame: pl.DataFrame) -> str:
    """A stable hash of a training frame (row order and content)."""
    hashes = frame.hash_rows(seed=0)
    return hashlib.sha256(hashes.to_numpy().tobytes()).hexdigest()[:16]


def make_version(model: str, as_of: date, data_fingerprint: str) -> str:
    """Deterministic: the same data and cutoff give the same version string."""
    return f"{model}-{as_of:%Y%m%d}-{data_fingerprint[:8]}"


def _json_default(value: Any):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def save_model(root: Path, model: str, version: str, artifact: Any, card: dict) -> Path:
    """Write artifact + card atomically (temp folder renamed into place)."""
    final = Path(root) / model / version
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "model.pkl", "wb") as fh:
        pickle.dump(artifact, fh, protocol=pickle.HIGHEST_PROTOCOL)
    full_card = {"model": model, "version": version, "libraries": library_versions(), **card}
    (tmp / "card.json").write_text(json.dumps(full_card, indent=2, default=_json_default))
    if final.exists():
        import shutil

        shutil.rmtree(final)
    tmp.rename(final)
    return final


def load_model(root: Path, model: str, version: str) -> tuple[Any, dict]:
    folder = Path(root) / model / version
    if not (folder / "model.pkl").exists():
        raise FileNotFoundError(
            f"model {model} version {version} is not in {folder}; run the weekly_training job"
        )
    with open(folder / "model.pkl", "rb") as fh:
        artifact = pickle.load(fh)  # noqa: S301 - our own artifacts only
    card = json.loads((folder / "card.json").read_text())
    return artifact, card


def record_run(
    con: duckdb.DuckDBPyConnection,
    *,
    model: str,
    version: str,
    trained_at: datetime,
    train_window: str,
    metrics: dict,
    baseline_metrics: dict,
    approved: bool,
    reason: str,
    store_id: str | None = None,
    champion: str | None = None,
    champions: dict[str, str] | None = None,
    code_version: str | None = None,
) -> None:
    """Record one training/backtest in ops.model_runs (replacing the same version):
    the champion method and the champion of every store, with why (`reason`)."""
    con.execute(
        "delete from ops.model_runs where model = ? and version = ? and coalesce(store_id, '') = ?",
        [model, version, store_id or ""],
    )
    append_rows(
        con,
        "ops.model_runs",
        pl.DataFrame(
            {
                "model": [model],
                "version": [version],
                "store_id": [store_id],
                "trained_at": [trained_at],
                "train_window": [train_window],
                "metrics": [json.dumps(metrics, default=_json_default)],
                "baseline_metrics": [json.dumps(baseline_metrics, default=_json_default)],
                "approved": [approved],
                "reason": [reason],
                "champion": [champion],
                "champions": [
                    json.dumps(champions, sort_keys=True) if champions is not None else None
                ],
                "code_version": [code_version],
            },
            schema_overrides={
                "store_id": pl.String,
                "champion": pl.String,
                "champions": pl.String,
                "code_version": pl.String,
            },
        ),
    )


def latest_approved(
    con: duckdb.DuckDBPyConnection, model: str, as_of: date | None = None
) -> str | None:
    """The approved version that saw the newest data up to `as_of` (None: any), the
    last trained among equals. Newest data, not newest training: a replay as of an
    early day trains a version on old data, and the next nightly run must not score
    with it because it was trained last."""
    frame = query(
        con,
        "select version, train_window, trained_at from ops.model_runs "
        "where model = ? and approved order by trained_at desc, version desc",
        [model],
    )
    usable = []
    for row in frame.iter_rows(named=True):
        # train_window is "YYYY-MM-DD..YYYY-MM-DD"; a replay must not use a model
        # that saw data after its as-of date.
        end = row["train_window"].split("..")[-1] if row["train_window"] else None
        end = date.fromisoformat(end) if end else None
        if as_of is None or end is None or end <= as_of:
            usable.append((end or date.min, row["version"]))
    # Stable: among versions with the same data end, the trained_at order stands.
    usable.sort(key=lambda item: item[0], reverse=True)
    return usable[0][1] if usable else None
