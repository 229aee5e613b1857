"""ingest_landing: landing folder -> raw (append-only) -> staging, quarantine, ops.

One call is one transaction: new files are appended to `raw.<kind>` (deduplicated
by the file's sha256), every staging table is rebuilt from raw, quarantine.rows
is rewritten for row-level problems, and ops.ingested_files records every file.
A process killed anywhere inside leaves the warehouse as it was before the call.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from storepulse import settings
from storepulse.ingest.direct import DirectBatch, DirectFile, direct_plan
from storepulse.ingest.kinds import KIND_SPECS, KINDS
from storepulse.ingest.layouts import ROW, UNFIT, Layout, LayoutError, article, unfit_message
from storepulse.ingest.normalise import create_sql_macros
from storepulse.ingest.readers import FileProblem, read_landed_file
from storepulse.ingest.staging import (
    built_kinds,
    create_views,
    drop_work_tables,
    outcome_select,
    quarantine_select,
    rebuild_staging,
)
from storepulse.warehouse import (
    ensure_schemas,
    qualified,
    quote_ident,
    scalar,
    transaction,
)

# Rows of one kind collected from landed files before they are appended to raw.
RAW_BATCH_ROWS = 1_000_000
# Bytes of files awaiting the general reader kept in memory (beyond that: read again).
DEFERRED_BYTES = 256 * 2**20

STATUS_INGESTED = "ingested"
STATUS_DUPLICATE_FILE = "duplicate_file"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"


@dataclass
class FileResult:
    path: str
    kind: str | None
    store_id: str | None
    sha256: str
    rows_read: int = 0
    rows_staged: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    status: str = STATUS_INGESTED
    message: str = ""
    layout: str | None = None
    # How the header was judged (kinds.py): the chosen kind's score, the runner-up
    # where it came close (for a file no kind fits: the closest candidate), and the
    # columns that belong to no column of the chosen kind (not loaded).
    match_score: float | None = None
    runner_up: str | None = None
    runner_up_score: float | None = None
    unused_columns: str | None = None

    def judged_by(self, layout: Layout) -> None:
        self.kind, self.layout = layout.kind, layout.name
        self.match_score = layout.score
        other = layout.runner_up or (layout.match if not layout.usable else None)
        if other is not None:
            self.runner_up, self.runner_up_score = other.kind, round(other.score, 3)
        self.unused_columns = ", ".join(layout.unused_columns) or None

    @property
    def partly_recognised(self) -> bool:
        """Loaded, but some of its columns belong to no column of its kind."""
        return self.status == STATUS_INGESTED and bool(self.unused_columns)


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    staged_rows: dict[str, int] = field(default_factory=dict)
    quarantined_rows: int = 0

    @property
    def new_files(self) -> list[FileResult]:
        return [f for f in self.files if f.status != STATUS_SKIPPED]

    @property
    def failed_files(self) -> list[FileResult]:
        return [f for f in self.files if f.status == STATUS_FAILED]

    @property
    def attention(self) -> list[str]:
        """One line per new file a person should look at tonight (`attention_line`)."""
        lines = (attention_line(f.path, f.status, f.kind, f.message, f.unused_columns)
                 for f in self.new_files)  # fmt: skip
        return [line for line in lines if line]

    def file(self, path: str) -> FileResult:
        """The result for one landing-relative path ('shop_a/orders.csv')."""
        for result in self.files:
            if result.path == path:
                return result
        raise KeyError(path)


def attention_line(
    path: str, status: str, kind: str | None, message: str | None, unused_columns: str | None
) -> str | None:
    """What a person should know about one ingested file, or None: not loaded (with
    the reason), or loaded with columns that belong to no column of its kind."""
    if status == STATUS_FAILED:
        return f"{path}: not loaded: {message}"
    if status == STATUS_INGESTED and unused_columns:
        return (
            f"{path}: loaded as {kind}, but these columns were not recognised and not "
            f"loaded: {unused_columns}"
        )
    return None


def attention_since(con: duckdb.DuckDBPyConnection, since: datetime) -> list[str]:
    """`attention_line` for every file recorded in ops.ingested_files since `since` (UTC)."""
    if since.tzinfo is not None:
        since = since.astimezone(UTC).replace(tzinfo=None)
    rows = con.execute(
        "select path, status, kind, message, unused_columns from ops.ingested_files"
        " where ingested_at >= ? and (status = 'failed' or unused_columns is not null)"
        " order by path",
        [since],
    ).fetchall()
    return [line for line in (attention_line(*row) for row in rows) if line]


def quarantined_since(con: duckdb.DuckDBPyConnection, since: datetime) -> list[str]:
    """One line per file recorded since `since` (UTC) that had rows quarantined: how many
    of its rows, and the reason of the first of them (every row is in quarantine.rows)."""
    if since.tzinfo is not None:
        since = since.astimezone(UTC).replace(tzinfo=None)
    rows = con.execute(
        "select f.path, f.rows_read, f.rows_quarantined, (select q.reason from quarantine.rows q"
        " where q.source_file = f.path and q.quarantined_at >= ? order by q.row_number limit 1)"
        " from ops.ingested_files f where f.ingested_at >= ? and f.rows_quarantined > 0"
        " order by f.path",
        [since, since],
    ).fetchall()
    lines = []
    for path, read, quarantined, reason in rows:
        example = (reason or "").removeprefix(f"{path} ")
        lines.append(
            f"{path}: {quarantined:,} of {read:,} rows quarantined"
            + (f", e.g. {example}" if example else "")
        )
    return lines


def detect_kind(path: str | Path) -> str:
    """The kind of a landed file from its header (Shopify -> 'orders', ad exports -> 'ad_spend').

    Raises ValueError with the reason when the file is unusable or unrecognised.
    """
    try:
        landed = read_landed_file(Path(path))
    except FileProblem as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if landed.layout.name == UNFIT:
        raise ValueError(f"{path}: {unfit_message(landed.layout)}")
    match = landed.layout.match
    if match is not None and not match.complete:
        raise ValueError(
            f"{path}: looks like {article(match.kind)} file but lacks required column(s): "
            f"{', '.join(match.missing)}"
        )
    return landed.layout.kind


def discover(landing_dir: Path) -> list[tuple[Path, str]]:
    """(path, landing-relative posix path) of every candidate file, oldest first.

    Anything under a folder or named with a leading '_' or '.' is skipped (`_truth/`
    holds the generator's answers; dot-files are editor and OS litter); links that
    lead outside the landing folder are not followed.
    """
    root = landing_dir.resolve()
    found = []
    for folder, subfolders, files in os.walk(landing_dir):
        # Pruned here, so nothing below `_truth/` or a dot-folder is even listed.
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(("_", ".")))
        for name in files:
            if name.startswith(("_", ".")):
                continue
            path = Path(folder) / name
            if not path.is_file() or not path.resolve().is_relative_to(root):
                continue
            found.append((path, path.relative_to(landing_dir).as_posix()))
    return sorted(found, key=lambda item: (item[0].stat().st_mtime_ns, item[1]))


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schemas(con)  # callers may hand over a bare connection
    present: dict[str, set[str]] = {}
    for schema, table, column in con.execute(
        "select table_schema, table_name, column_name from information_schema.columns"
        " where table_catalog = current_database() and table_schema in ('raw', 'ops', 'quarantine')"
    ).fetchall():
        present.setdefault(f"{schema}.{table}", set()).add(column)

    def add_missing(table: str, columns: list[str]) -> None:
        # Warehouses from older versions gain columns added since (one ALTER per
        # missing column; none at all on the usual run).
        for column in columns:
            if column.split()[0].strip('"') not in present.get(table, set()):
                con.execute(f"alter table {qualified(table)} add column if not exists {column}")

    for kind in KINDS:
        columns = [f"{quote_ident(c)} varchar" for c in KIND_SPECS[kind].columns]
        columns += [
            "folder_store_id varchar", "source_file varchar", "file_sha256 varchar",
            "file_seq bigint", "row_number bigint", "ingested_at timestamp",
        ]  # fmt: skip
        if f"raw.{kind}" not in present:
            con.execute(
                f"create table if not exists {qualified('raw.' + kind)} ({', '.join(columns)})"
            )
        else:
            add_missing(f"raw.{kind}", columns)
    add_missing(
        "ops.ingested_files",
        [
            "file_seq bigint", "layout varchar", "match_score double", "runner_up varchar",
            "runner_up_score double", "unused_columns varchar",
        ],
    )  # fmt: skip
    add_missing("quarantine.rows", ["level varchar"])


def _folder_store(relative: str) -> str | None:
    parts = relative.split("/")
    return parts[0] if len(parts) > 1 else None


class _ArrowStream:
    """A polars frame seen by DuckDB only through the Arrow PyCapsule stream interface:
    DuckDB reads it without pyarrow (whose import alone costs ~0.2 s, and a frame
    registered as such is converted with `to_arrow`, copying every string)."""

    def __init__(self, frame: pl.DataFrame):
        self.frame = frame

    def __arrow_c_stream__(self, requested_schema=None):
        return self.frame.__arrow_c_stream__(requested_schema)


class RawWriter:
    """Collects the parsed frames of landed files and appends them to `raw.<kind>` in
    large batches: one INSERT per kind (not per file) lets DuckDB write whole row
    groups as it goes, which is markedly cheaper than many small appends that are
    all compressed at commit. A kind is flushed early once it holds `limit` rows, so
    memory stays bounded on large landings.

    Plain canonical CSV files (direct.py) are not parsed here: DuckDB reads them into
    raw itself, a batch of queued files at a time in a worker thread, started whenever
    this thread turns to a file that needs the general reader."""

    def __init__(self, con: duckdb.DuckDBPyConnection, limit: int = RAW_BATCH_ROWS):
        self.con = con
        self.limit = limit
        self.pending: dict[str, list[pl.DataFrame]] = {}
        self.rows: dict[str, int] = {}
        # Rows of ops.ingested_files, as (result, file_seq, ingested_at): written at flush,
        # when the counts of directly read files are known.
        self.files: list[tuple[FileResult, int | None, datetime]] = []
        self.direct: dict[str, DirectBatch] = {}
        self.direct_results: dict[int, FileResult] = {}
        # Plain files are read by DuckDB in a worker thread while this thread parses the
        # other files with polars (both release the GIL); the connection is only ever
        # used by one thread at a time: every other use waits for the round (`wait`).
        self._pool: ThreadPoolExecutor | None = None
        self._round: Future | None = None

    def add_direct(self, file: DirectFile, result: FileResult) -> None:
        """Queue a plain canonical file for DuckDB's own reader (see direct.py)."""
        kind = file.plan.kind
        batch = self.direct.setdefault(kind, DirectBatch(kind))
        batch.files.append(file)
        self.direct_results[file.file_seq] = result
        result.judged_by(file.plan.layout)
        if sum(f.plan.lines for f in batch.files) >= self.limit:
            self.wait()
            self.start_direct_round()

    def start_direct_round(self) -> None:
        """Start reading the queued plain files into raw in the background (no-op while
        a round runs: the files wait for the next one)."""
        if self._round is not None or not self.direct:
            return
        batches, self.direct = list(self.direct.values()), {}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="storepulse-raw")
        con = self.con
        self._round = self._pool.submit(lambda: [(b, *b.insert(con)) for b in batches])

    def wait(self) -> None:
        """Finish the running round (files it could not vouch for go the general way)."""
        if self._round is None:
            return
        running, self._round = self._round, None
        for batch, kept, back in running.result():
            self._settle(batch, kept, back)

    def close(self) -> None:
        """Wait for the worker (also when the ingest failed: the transaction is rolled
        back on this connection next, which must not race a running INSERT)."""
        if self._round is not None:
            running, self._round = self._round, None
            running.exception()  # waits; the ingest's own error is the one to report
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def add(self, kind: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        self.pending.setdefault(kind, []).append(frame)
        self.rows[kind] = self.rows.get(kind, 0) + frame.height
        if self.rows[kind] >= self.limit:
            self.wait()
            self._flush_kind(kind)

    def flush(self) -> None:
        self.wait()
        self.start_direct_round()
        self.wait()
        for kind in list(self.pending):
            self._flush_kind(kind)
        rows_all = [
            (
                r.path, r.sha256, r.kind, r.store_id, r.rows_read, r.rows_staged,
                r.rows_duplicate, r.rows_quarantined, r.status, r.message, now,
                None if r.status == STATUS_FAILED else seq, r.layout, r.match_score,
                r.runner_up, r.runner_up_score, r.unused_columns,
            )
            for r, seq, now in self.files
        ]  # fmt: skip
        for start in range(0, len(rows_all), 200):
            rows = rows_all[start : start + 200]
            marks = ", ".join(["(" + ", ".join("?" * len(FILE_COLUMNS)) + ")"] * len(rows))
            self.con.execute(
                f"insert into ops.ingested_files ({', '.join(FILE_COLUMNS)}) values {marks}",
                [value for row in rows for value in row],
            )
        self.files = []

    def _settle(self, batch: DirectBatch, kept: dict[int, int], back: list[DirectFile]) -> None:
        for seq, rows in kept.items():
            self.direct_results.pop(seq).rows_read = rows
        for file in back:
            result = self.direct_results.pop(file.file_seq)
            try:
                data = _read_again(file.plan.path, result.sha256)
                _land_file(self, file.plan.path, result, file.file_seq, file.ingested_at, data)
            except FileProblem as exc:
                _fail(self, result, str(exc), file.ingested_at, record=False)

    def _flush_kind(self, kind: str) -> None:
        frames = self.pending.pop(kind, [])
        self.rows.pop(kind, None)
        if frames:
            # Files of one kind may carry different subsets of its columns: the missing
            # ones are null, as an INSERT naming only the present columns would leave them.
            data = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
            cols = ", ".join(quote_ident(c) for c in data.columns)
            self.con.register("_sp_raw_batch", _ArrowStream(data))
            try:
                self.con.execute(
                    f"insert into {qualified('raw.' + kind)} ({cols}) select {cols} from _sp_raw_batch"
                )
            finally:
                self.con.unregister("_sp_raw_batch")


def _land_file(
    raw: RawWriter, path: Path, result: FileResult, file_seq: int, now: datetime, data: bytes
) -> None:
    """Parse one file and queue its rows for raw; fills `result` (raises FileProblem).

    Everything that can fail on odd input happens before anything is queued, so a
    file either lands completely or not at all (DuckDB has no savepoints).
    """
    try:
        landed = read_landed_file(path, data)
        layout = landed.layout
        result.judged_by(layout)
        result.rows_read = landed.frame.height
        frames, note = layout.map(landed.frame, result.path)
        meta = [
            pl.lit(result.store_id, pl.Utf8).alias("folder_store_id"),
            pl.lit(result.path).alias("source_file"),
            pl.lit(result.sha256).alias("file_sha256"),
            pl.lit(file_seq, pl.Int64).alias("file_seq"),
            pl.col(ROW).cast(pl.Int64).alias("row_number"),
            pl.lit(now, pl.Datetime("us")).alias("ingested_at"),
        ]
        ready = {}
        for kind, frame in frames.items():
            data = frame.with_columns(meta).drop(ROW)
            ready[kind] = data.with_columns(
                [pl.col(c).cast(pl.Utf8) for c in KIND_SPECS[kind].columns if c in data.columns]
            )
    except FileProblem:
        raise
    except LayoutError as exc:
        raise FileProblem(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - odd input must not stop the other files
        raise FileProblem(f"could not be read ({type(exc).__name__}: {exc})") from exc
    primary = ready["order_lines"] if layout.name == "shopify_orders" else ready[layout.kind]
    result.rows_read = primary.height
    result.message = note
    for kind, data in ready.items():
        raw.add(kind, data)


FILE_COLUMNS = (
    "path", "sha256", "kind", "store_id", "rows_read", "rows_staged", "rows_duplicate",
    "rows_quarantined", "status", "message", "ingested_at", "file_seq", "layout",
    "match_score", "runner_up", "runner_up_score", "unused_columns",
)  # fmt: skip


def _record_file(raw: RawWriter, result: FileResult, file_seq: int | None, now: datetime) -> None:
    """Queue the file's row of ops.ingested_files (written with the raw rows, one INSERT;
    its values are taken from `result` then)."""
    raw.files.append((result, file_seq, now))


def _duplicate(raw: RawWriter, result: FileResult, original: str, now: datetime) -> None:
    result.status = STATUS_DUPLICATE_FILE
    result.message = f"same content as {original}, already ingested; not read again"
    _record_file(raw, result, None, now)


def _read_again(path: Path, sha256: str) -> bytes:
    """The file's bytes once more (not kept in memory meanwhile), checked against its hash."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileProblem(f"cannot be read ({exc.strerror or exc})") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FileProblem("changed while it was being ingested; it is read next time")
    return data


def _fail(
    raw: RawWriter, result: FileResult, message: str, now: datetime, *, record: bool = True
) -> None:
    result.status, result.message = STATUS_FAILED, message
    result.rows_quarantined = result.rows_read
    if record:
        _record_file(raw, result, None, now)
    raw.wait()
    raw.con.execute(
        "insert into quarantine.rows (source_file, row_number, kind, store_id, reason, record,"
        " quarantined_at, level) values (?, null, ?, ?, ?, null, ?, 'file')",
        [result.path, result.kind, result.store_id, f"{result.path}: {message}", now],
    )


def ingest_landing(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    *,
    now: datetime | None = None,
    rebuild: bool = False,
) -> IngestReport:
    """Ingest new files of `landing_dir` and rebuild staging (one transaction).

    Returns an IngestReport with one FileResult per discovered file (status
    ingested / duplicate_file / failed for files seen the first time, skipped
    for files already recorded) and the staged row count of every staging table.
    When no file added rows to raw, staging is left as it is (it is a function of
    raw); `rebuild=True` rebuilds it anyway (after an upgrade of the staging rules).
    `now` (UTC, default the clock) stamps the run and bounds "future" dates.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    landing_dir = Path(landing_dir)
    report = IngestReport()
    candidates = discover(landing_dir) if landing_dir.exists() else []
    # Row order inside tables carries no meaning here (row_number does), and letting
    # DuckDB write in any order makes the big CREATE TABLE AS steps parallel.
    insertion_order = con.execute("select current_setting('preserve_insertion_order')").fetchall()[
        0
    ][0]
    con.execute("set preserve_insertion_order = false")
    try:
        with transaction(con):
            return _ingest(con, candidates, report, now, rebuild)
    finally:
        con.execute(f"set preserve_insertion_order = {'true' if insertion_order else 'false'}")


def _ingest(
    con: duckdb.DuckDBPyConnection,
    candidates: list[tuple[Path, str]],
    report: IngestReport,
    now: datetime,
    rebuild: bool,
) -> IngestReport:
    ensure_tables(con)
    landed_rows = False
    # Plain tuples, not a frame: the "nothing new" rerun then never needs pyarrow.
    seen = con.execute("select path, sha256, status, file_seq from ops.ingested_files").fetchall()
    seen_pairs = {(path, sha) for path, sha, _, _ in seen}
    ingested_by_sha = {sha: path for path, sha, status, _ in seen if status == STATUS_INGESTED}
    next_seq = max((seq for *_, seq in seen if seq is not None), default=0) + 1
    raw = RawWriter(con)
    # Files that need the general reader are parsed once every plain file is queued, so
    # that DuckDB reads the plain ones (in a worker thread) while polars parses these.
    # Each keeps the file_seq of its place in the landing order (a failed file leaves a
    # gap); a later file with the same content waits for its outcome.
    deferred: list[tuple[Path, FileResult, int, bytes | None]] = []
    waiting: set[str] = set()
    kept_bytes = 0
    try:
        for path, relative in candidates:
            # Read once: the bytes that are hashed are the bytes that are parsed.
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            result = FileResult(relative, None, _folder_store(relative), sha)
            report.files.append(result)
            if (relative, sha) in seen_pairs:
                result.status = STATUS_SKIPPED
                continue
            seen_pairs.add((relative, sha))
            if sha in ingested_by_sha:
                _duplicate(raw, result, ingested_by_sha[sha], now)
                continue
            plan = None if sha in waiting else direct_plan(path, data)
            if plan is not None:
                direct = DirectFile(plan, result.store_id, relative, sha, next_seq, now)
                raw.add_direct(direct, result)
                _record_file(raw, result, next_seq, now)
                ingested_by_sha[sha] = relative
                next_seq += 1
                landed_rows = True
                continue
            keep = kept_bytes + len(data) <= DEFERRED_BYTES
            kept_bytes += len(data) if keep else 0
            deferred.append((path, result, next_seq, data if keep else None))
            waiting.add(sha)
            next_seq += 1
        raw.start_direct_round()  # DuckDB reads the plain files meanwhile
        for path, result, file_seq, data in deferred:
            if result.sha256 in ingested_by_sha:
                _duplicate(raw, result, ingested_by_sha[result.sha256], now)
                continue
            try:
                if data is None:
                    data = _read_again(path, result.sha256)
                _land_file(raw, path, result, file_seq, now, data)
            except FileProblem as exc:
                _fail(raw, result, str(exc), now)
                continue
            _record_file(raw, result, file_seq, now)
            ingested_by_sha[result.sha256] = result.path
            landed_rows = True
        raw.flush()
    finally:
        raw.close()
    if landed_rows or rebuild or not _staging_complete(con):
        create_sql_macros(con)
        report.staged_rows = rebuild_staging(con, now)
        report.quarantined_rows = _rewrite_quarantine(con)
        _update_file_counts(con)
    else:
        report.staged_rows = {
            kind: scalar(con, f"select count(*) from {qualified('staging.' + kind)}")
            for kind in KINDS
        }
        report.quarantined_rows = scalar(
            con, "select count(*) from quarantine.rows where level = 'row'"
        )
    create_views(con)
    _fill_report(con, report)
    drop_work_tables(con)
    _pause_for_tests()
    return report


def _staging_complete(con: duckdb.DuckDBPyConnection) -> bool:
    present = scalar(
        con,
        "select count(*) from information_schema.tables where table_schema = 'staging'"
        f" and table_name in ({', '.join(chr(39) + k + chr(39) for k in KINDS)})",
    )
    return present == len(KINDS)


def _rewrite_quarantine(con: duckdb.DuckDBPyConnection) -> int:
    con.execute("delete from quarantine.rows where level is distinct from 'file'")
    # A file that failed and was later fixed (same path, new content) is resolved.
    con.execute(
        "delete from quarantine.rows q where level = 'file' and exists (select 1 from"
        " ops.ingested_files f where f.path = q.source_file and f.status = 'ingested'"
        " and f.ingested_at >= q.quarantined_at)"
    )
    kinds = built_kinds(con)
    if not kinds:
        return 0
    selects = " union all ".join(quarantine_select(kind) for kind in kinds)
    con.execute(
        "insert into quarantine.rows (source_file, row_number, kind, store_id, reason, record,"
        f" quarantined_at, level) select *, 'row' from ({selects}) order by source_file, row_number, kind, reason"
    )
    return con.execute("select count(*) from quarantine.rows where level = 'row'").fetchall()[0][0]


def _update_file_counts(con: duckdb.DuckDBPyConnection) -> None:
    """Per file, each raw row once: quarantined if any record of it was, else duplicate, else staged."""
    kinds = built_kinds(con)
    severity = (
        "case when _outcome in ('quarantined', 'conflict') then 3"
        " when _outcome in ('duplicate', 'superseded') then 2 else 1 end"
    )
    outcomes = (
        " union all ".join(
            f"select _file_seq as file_seq, _row_number as row_number, {severity} as severity"
            f" from ({outcome_select(kind)})"
            for kind in kinds
        )
        or "select null::bigint as file_seq, null::bigint as row_number, null::integer as severity limit 0"
    )
    # A raw row has one record per kind it feeds; only a file that feeds several kinds
    # (a Shopify export: orders and order lines) has rows to merge, so only its rows are
    # grouped (grouping every row of every kind is the costly part).
    shared = (
        "select file_seq from ("
        + " union all ".join(f"select distinct _file_seq as file_seq from typed_{k}" for k in kinds)
        + ") group by file_seq having count(*) > 1"
        if len(kinds) > 1
        else "select null::bigint as file_seq limit 0"
    )
    con.execute(
        f"""
        create or replace temp table file_counts as
        with outcomes as ({outcomes}), shared as ({shared}),
        per_row as (
            select file_seq, row_number, max(severity) as severity
            from outcomes where file_seq in (select file_seq from shared)
            group by file_seq, row_number
            union all
            select file_seq, row_number, severity
            from outcomes where file_seq not in (select file_seq from shared)
        )
        select file_seq,
            count(*) filter (where severity = 1) as staged,
            count(*) filter (where severity = 2) as duplicate,
            count(*) filter (where severity = 3) as quarantined
        from per_row group by file_seq
        """
    )
    con.execute(
        """
        update ops.ingested_files f set rows_staged = coalesce(c.staged, 0),
            rows_duplicate = coalesce(c.duplicate, 0), rows_quarantined = coalesce(c.quarantined, 0)
        from (select i.file_seq, fc.staged, fc.duplicate, fc.quarantined from ops.ingested_files i
              left join file_counts fc on fc.file_seq = i.file_seq
              where i.status = 'ingested') c
        where f.file_seq = c.file_seq and f.status = 'ingested'
          and (f.rows_staged is distinct from coalesce(c.staged, 0)
               or f.rows_duplicate is distinct from coalesce(c.duplicate, 0)
               or f.rows_quarantined is distinct from coalesce(c.quarantined, 0))
        """
    )


def _fill_report(con: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
    names = (
        "path", "sha256", "kind", "store_id", "rows_read", "rows_staged", "rows_duplicate",
        "rows_quarantined", "status", "message", "layout", "match_score", "runner_up",
        "runner_up_score", "unused_columns",
    )  # fmt: skip
    recorded = con.execute(f"select {', '.join(names)} from ops.ingested_files").fetchall()
    by_key = {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in recorded}
    for result in report.files:
        row = by_key.get((result.path, result.sha256))
        if row is None:
            continue
        for name in (
            "kind",
            "store_id",
            "rows_read",
            "rows_staged",
            "rows_duplicate",
            "rows_quarantined",
            "layout",
            "match_score",
            "runner_up",
            "runner_up_score",
            "unused_columns",
        ):
            setattr(result, name, row[name])
        if result.status != STATUS_SKIPPED:
            result.message = row["message"] or ""


def _pause_for_tests() -> None:
    marker = settings.ingest_pause_file()
    if marker:
        Path(marker).write_text("inside the ingest transaction\n")
        time.sleep(120)
