"""Per-store export sets: exports/<store_id>/<as_of>/, written whole or not at all.

Layout (DESIGN §6):
    segments/<segment-slug>.klaviyo.csv | .mailchimp.csv | .meta.csv   (one trio per list)
    customers.klaviyo_properties.csv (Klaviyo profile properties of consented customers)
    scores.parquet, forecast.parquet, reorder_plan.csv, budget_plan.csv
    partners.csv, experiments.csv, orders_to_review.csv (where the store has that data)
    report.html, manifest.json (every other file with rows, bytes and sha256)

The set is built in a hidden temporary folder next to its final place and renamed
into place, so a reader never sees half a set. Then `exports/<store_id>/latest`
(a relative symlink) is moved to it, and a small `LATEST` text file holding the
folder name is rewritten too (for readers or file systems without symlinks; when a
symlink cannot be made, `LATEST` is the only pointer). Both only ever move forward:
republishing an older as_of leaves them on the newest set. Republishing the same
as_of swaps the old folder out and the new one in with two renames (the old set is
deleted only after the new one is in place).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from storepulse.ingest.normalise import safe_store_id
from storepulse.publish.data import (
    MODEL_TABLES,
    StoreData,
    audience,
    load_store_data,
    repurchase_due_list,
    win_back_list,
)
from storepulse.publish.destinations import (
    klaviyo_frame,
    klaviyo_properties_frame,
    mailchimp_frame,
    meta_frame,
    neutralise_text_columns,
    slugify,
)
from storepulse.publish.growth import write_growth_files

WIN_BACK_LIST = "win-back-high-value"
REPURCHASE_DUE_LIST = "repurchase-due"
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"
MANIFEST = "manifest.json"
REQUIRED_FILES = (
    "scores.parquet",
    "forecast.parquet",
    "reorder_plan.csv",
    "budget_plan.csv",
    "report.html",
)


@dataclass
class PublishResult:
    store_id: str
    as_of: date
    path: Path
    files: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lists: dict[str, int] = field(default_factory=dict)
    latest_pointer: str = "symlink"

    def rows(self, relative_path: str) -> int | None:
        return next((f["rows"] for f in self.files if f["path"] == relative_path), None)


def store_dir(export_root: str | Path, store_id: str) -> Path:
    """exports/<store_id>, refusing any id that is not a slug or would leave the root."""
    sid = safe_store_id(store_id)
    root = Path(export_root).resolve()
    target = (root / sid).resolve()
    if target.parent != root:
        raise ValueError(f"store id {store_id!r} would write outside {root}")
    return target


def publish_store(
    con: duckdb.DuckDBPyConnection | StoreData,
    store_id: str,
    as_of: date,
    export_root: str | Path,
    generated_at: datetime | None = None,
) -> PublishResult:
    """Write one store's complete export set for `as_of` and move `latest` to it.

    `con` is a warehouse connection, or the store's data already read with
    load_store_data (so the caller can close a read-only connection before the
    slow part: files, plots and the report need no warehouse).
    """
    from storepulse.publish.report import render_report

    sid = safe_store_id(store_id)
    folder = store_dir(export_root, sid)
    folder.mkdir(parents=True, exist_ok=True)
    generated_at = generated_at or datetime.now(UTC)
    if isinstance(con, StoreData):
        if (con.store_id, con.as_of) != (sid, as_of):
            raise ValueError(
                f"data loaded for {con.store_id} as of {con.as_of}, not {sid} as of {as_of}"
            )
        data = con
    else:
        data = load_store_data(con, sid, as_of)
    final = folder / as_of.isoformat()
    staging_dir = folder / f".tmp-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"
    staging_dir.mkdir()
    result = PublishResult(store_id=sid, as_of=as_of, path=final)
    try:
        people = audience(data)
        lists = _write_segments(staging_dir, people, data, result)
        _write_tables(staging_dir, data, people, result)
        html = render_report(data, people, lists, generated_at=generated_at)
        (staging_dir / "report.html").write_text(html, encoding="utf-8")
        result.files = _describe_files(staging_dir)
        manifest = {
            "store_id": sid,
            "store_name": data.store_name,
            "as_of": as_of.isoformat(),
            "generated_at": generated_at.isoformat(),
            "files": result.files,
            "lists": result.lists,
            "notes": result.notes,
        }
        (staging_dir / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _swap_into_place(staging_dir, final)
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise
    result.latest_pointer = _point_latest(folder, final.name)
    return result


def _write_segments(
    out: Path, people: pl.DataFrame, data: StoreData, result: PublishResult
) -> dict[str, pl.DataFrame]:
    """The destination trio for every RFM segment and for the two action lists."""
    seg_dir = out / "segments"
    seg_dir.mkdir()
    lists: dict[str, tuple[pl.DataFrame, str | None]] = {}
    used: set[str] = set()
    for segment in sorted(s for s in people["segment"].unique().to_list() if s is not None):
        slug = slugify(segment)
        while slug in used or slug in (WIN_BACK_LIST, REPURCHASE_DUE_LIST):
            slug += "-x"
        used.add(slug)
        lists[slug] = (people.filter(pl.col("segment") == segment), None)
    if data.table("scores.churn").status == "missing":
        result.notes.append(f"{WIN_BACK_LIST}: empty because scores.churn has not been built yet")
    lists[WIN_BACK_LIST] = (win_back_list(people), WIN_BACK_LIST)
    lists[REPURCHASE_DUE_LIST] = (repurchase_due_list(people, data), REPURCHASE_DUE_LIST)
    if people.is_empty():
        result.notes.append(
            "segments: no segmented or scored customers (marts.customer_rfm / scores.churn "
            "missing or empty for this store); only the two action lists were written, empty"
        )
    for slug, (members, tag) in lists.items():
        _write_csv(klaviyo_frame(members), seg_dir / f"{slug}.klaviyo.csv")
        _write_csv(mailchimp_frame(members, extra_tag=tag), seg_dir / f"{slug}.mailchimp.csv")
        _write_csv(meta_frame(members), seg_dir / f"{slug}.meta.csv")
        result.lists[slug] = members.height
    return {slug: members for slug, (members, _) in lists.items()}


KLAVIYO_PROPERTIES_FILE = "customers.klaviyo_properties.csv"


def _write_tables(out: Path, data: StoreData, people: pl.DataFrame, result: PublishResult) -> None:
    scores = _scores_frame(data)
    scores.write_parquet(out / "scores.parquet")
    _write_csv(klaviyo_properties_frame(people), out / KLAVIYO_PROPERTIES_FILE)
    for name, target in (
        ("scores.demand_forecast", "forecast.parquet"),
        ("marts.reorder_plan", "reorder_plan.csv"),
        ("marts.budget_plan", "budget_plan.csv"),
    ):
        table = data.table(name)
        frame = table.frame if table.status == "ok" else _empty(name)
        if table.status != "ok":
            result.notes.append(f"{target}: empty because {name} is {_why(table.status)}")
        if target.endswith(".parquet"):
            frame.write_parquet(out / target)
        else:
            _write_csv(neutralise_text_columns(frame), out / target)
    # partners.csv, experiments.csv, orders_to_review.csv where the store has them (#17).
    write_growth_files(out, data, result.notes)


def _scores_frame(data: StoreData) -> pl.DataFrame:
    """Customer scores: the RFM segment row beside the latest churn score (no contact data)."""
    rfm = data.table("marts.customer_rfm")
    churn = data.table("scores.churn")
    rfm_frame = rfm.frame if rfm.status == "ok" else _empty("marts.customer_rfm")
    churn_frame = churn.frame if churn.status == "ok" else _empty("scores.churn")
    rfm_frame = rfm_frame.with_columns(pl.col("customer_id").cast(pl.String))
    churn_frame = churn_frame.drop("store_id").with_columns(pl.col("customer_id").cast(pl.String))
    churn_frame = churn_frame.rename(
        {c: f"churn_{c}" for c in ("as_of", "model_version") if c in churn_frame.columns}
    )
    merged = rfm_frame.join(churn_frame, on="customer_id", how="full", coalesce=True)
    value = data.table("scores.clv")
    if value.status == "ok":
        value_frame = value.frame.drop("store_id").with_columns(
            pl.col("customer_id").cast(pl.String)
        )
        value_frame = value_frame.rename(
            {c: f"clv_{c}" for c in ("as_of", "model_version") if c in value_frame.columns}
        )
        merged = merged.join(value_frame, on="customer_id", how="left")
    return merged.with_columns(pl.lit(data.store_id).alias("store_id")).sort("customer_id")


def _empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=dict.fromkeys(MODEL_TABLES[name], pl.String))


def _why(status: str) -> str:
    return "not built yet" if status == "missing" else "empty for this store"


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path)


def _describe_files(folder: Path) -> list[dict]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        files.append(
            {
                "path": relative,
                "rows": _row_count(path),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        )
    return files


def _row_count(path: Path) -> int | None:
    if path.suffix == ".parquet":
        return pl.scan_parquet(path).select(pl.len()).collect().item()
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False).height
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _swap_into_place(staging_dir: Path, final: Path) -> None:
    """Rename the finished set into place, replacing an older set for the same as_of."""
    if final.exists():
        retired = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, retired)
        os.replace(staging_dir, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging_dir, final)


def latest_set(folder: Path) -> Path | None:
    """The folder `latest` (or LATEST) points at, if any."""
    link = folder / LATEST_LINK
    if link.is_symlink():
        return (folder / os.readlink(link)).resolve()
    pointer = folder / LATEST_FILE
    if pointer.exists():
        return folder / pointer.read_text(encoding="utf-8").strip()
    return None


def _point_latest(folder: Path, name: str) -> str:
    """Move `latest` (symlink) and `LATEST` (file) to `name` unless a newer set is current."""
    current = latest_set(folder)
    if current is not None and current.name > name and current.exists():
        return "unchanged"
    pointer_tmp = folder / f".{LATEST_FILE}.{uuid.uuid4().hex[:8]}"
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer_tmp, folder / LATEST_FILE)
    link_tmp = folder / f".{LATEST_LINK}.{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(name, link_tmp, target_is_directory=True)
        os.replace(link_tmp, folder / LATEST_LINK)
    except OSError:
        link_tmp.unlink(missing_ok=True)
        return "file"
    return "symlink"


def verify_set(folder: Path) -> list[str]:
    """Problems with a published set: missing manifest or files, changed bytes. [] = fine."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return [f"{manifest_path} is missing"]
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    listed = {f["path"]: f for f in manifest.get("files", [])}
    problems = [f"{name} is not in the manifest" for name in REQUIRED_FILES if name not in listed]
    for relative, entry in listed.items():
        path = folder / relative
        if not path.exists():
            problems.append(f"{relative} is listed but missing")
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"{relative} changed after publishing (sha256 differs)")
    return problems


def publish_history(
    con: duckdb.DuckDBPyConnection, as_of: date, export_root: str | Path
) -> dict[str, int]:
    """Dated Parquet snapshot of every marts and scores table: exports/_history/<as_of>/.

    One file per table (`marts.customer_rfm.parquet`), written to a temporary folder
    and renamed into place. Returns {table: rows}.
    """
    from storepulse.warehouse import query

    root = Path(export_root).resolve()
    history = root / "_history"
    history.mkdir(parents=True, exist_ok=True)
    tables = query(
        con,
        "select table_schema || '.' || table_name as name from information_schema.tables "
        "where table_schema in ('marts', 'scores') and table_type = 'BASE TABLE' order by 1",
    )["name"].to_list()
    staging_dir = history / f".tmp-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"
    staging_dir.mkdir()
    counts: dict[str, int] = {}
    try:
        for name in tables:
            schema, table = name.split(".")
            target = staging_dir / f"{name}.parquet"
            literal = str(target).replace("'", "''")
            con.execute(
                f'copy (select * from "{schema}"."{table}") to \'{literal}\' (format parquet)'
            ).fetchall()
            counts[name] = pl.scan_parquet(target).select(pl.len()).collect().item()
        (staging_dir / MANIFEST).write_text(
            json.dumps(
                {
                    "as_of": as_of.isoformat(),
                    "generated_at": datetime.now(UTC).isoformat(),
                    "tables": counts,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        _swap_into_place(staging_dir, history / as_of.isoformat())
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise
    return counts
