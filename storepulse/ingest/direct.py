"""Plain canonical CSV straight into raw with DuckDB's reader (no polars frames).

Most landed bytes are canonical exports with nothing to repair: UTF-8, no quotes, no
carriage returns, no blank lines, a known header on the first line. For such a file
the general reader (`readers.read_landed_file` + `Layout.map`) amounts to "split on the
delimiter and keep the mapped columns", so DuckDB reads it into `raw.<kind>` itself.

A file is only sent this way when that equivalence is certain before reading
(`direct_plan`), and only kept when the result proves it after reading
(`DirectBatch.insert`): one raw row per data line, and none of the per-file
conventions of `conventions.tidy` (Excel's apostrophe, `wc-` statuses, guest id 0, ids
mangled by Excel, decimal commas, slashed dates) present. Otherwise its rows are
removed again and the file goes through the general path, so both paths give the
same raw rows, row numbers, quarantine reasons and counts (tests/test_ingest_direct.py).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from storepulse.ingest.conventions import EXCEL_NUMBERED, TEXT_GUARDED
from storepulse.ingest.frames import PROBLEM, ROW
from storepulse.ingest.kinds import KIND_SPECS, STAGING_SCHEMAS
from storepulse.ingest.layouts import Layout
from storepulse.ingest.readers import (
    BLANK_LINE,
    EXTRA_FIELDS,
    HEADER_SEARCH_LINES,
    FileProblem,
    _find_header,
    _head_text,
    _looks_binary,
)
from storepulse.warehouse import qualified, quote_ident

# Characters DuckDB would read as a glob in a file name (such files take the general path).
GLOB_CHARS = set("*?[]{}")
TWIN = re.compile(r".+_duplicated_\d+")


@dataclass
class DirectPlan:
    """How to read one plain canonical file: its kind, delimiter, width, and which
    field (0-based) feeds which raw column."""

    path: Path
    kind: str
    delimiter: str
    width: int
    fields: dict[str, int]  # raw column -> field index
    lines: int  # data lines (= rows the general reader gives)
    layout: Layout  # how the header was judged (score, runner-up, unused columns)


def direct_plan(path: Path, data: bytes) -> DirectPlan | None:
    """A plan when `data` (the whole file) is a plain canonical CSV, else None."""
    if (
        not data
        or path.suffix.lower() == ".gz"
        or GLOB_CHARS & set(str(path))
        or data.startswith((b"\x1f\x8b", b"PAR1", b"PK\x03\x04", b"\xef\xbb\xbf", b"\xff\xfe"))
        or data.startswith(b"\xfe\xff")
        or not data.endswith(b"\n")
        or b'"' in data
        or b"\r" in data
        or b"\x00" in data
    ):
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    head = _head_text(data)
    if _looks_binary(head):
        return None
    lines = head.split("\n")[:HEADER_SEARCH_LINES]
    try:
        header_line, delimiter, layout = _find_header(lines)
    except FileProblem:
        return None
    match = layout.match
    if (
        header_line != 0
        or match is None
        or not layout.usable
        or not match.complete
        or match.fallbacks
        or match.header_currency is not None
    ):
        return None
    names = [
        f.replace("\ufeff", "").strip() for f in next(csv.reader([lines[0]], delimiter=delimiter))
    ]
    reserved = {ROW, PROBLEM, *EXTRA_FIELDS}
    if (
        len(set(names)) != len(names)
        or any(not n or n in reserved or TWIN.fullmatch(n) for n in names)
        or set(match.mapping) - set(names)
    ):
        return None
    body = len(data) - (data.index(b"\n") + 1)
    if body == 0 or BLANK_LINE.search(data):
        return None  # header only, or blank lines the general reader drops
    fields = {dst: names.index(src) for src, dst in match.mapping.items()}
    return DirectPlan(
        path, layout.kind, delimiter, len(names), fields, data.count(b"\n") - 1, layout
    )


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _tidy_probes(kind: str, columns: list[str]) -> list[str]:
    """SQL twins of the probes `conventions.tidy` decides its per-file fixes by; any true
    one sends the file to the general path (which applies the fix)."""
    types = STAGING_SCHEMAS.get(kind, {})
    probes = [f"starts_with({quote_ident(c)}, '''')" for c in TEXT_GUARDED if c in columns]
    if kind == "orders" and "financial_status" in columns:
        probes.append(
            "starts_with(financial_status, 'wc-') or starts_with(financial_status, 'WC-')"
        )
    if kind in ("orders", "customers") and "customer_id" in columns:
        probes.append("starts_with(customer_id, '0') or starts_with(customer_id, '''0')")
    probes += [f"contains({quote_ident(c)}, 'E+')" for c in EXCEL_NUMBERED if c in columns]
    # (The general path samples the first rows for these two; any row is stricter.)
    probes += [
        f"contains({quote_ident(c)}, ',')"
        for c in columns
        if types.get(c) in ("double", "integer", "bigint")
    ]
    probes += [
        f"contains({quote_ident(c)}, '/')" for c in columns if types.get(c) in ("date", "timestamp")
    ]
    return probes


@dataclass
class DirectFile:
    plan: DirectPlan
    folder_store_id: str | None
    source_file: str
    sha256: str
    file_seq: int
    ingested_at: datetime


@dataclass
class DirectBatch:
    """Plain files of one kind, read into raw by one INSERT."""

    kind: str
    files: list[DirectFile] = field(default_factory=list)

    def insert(self, con: duckdb.DuckDBPyConnection) -> tuple[dict[int, int], list[DirectFile]]:
        """Append the files to raw.<kind>: (rows per kept file_seq, files sent back)."""
        spec = KIND_SPECS[self.kind]
        columns = [c for c in spec.columns if any(c in f.plan.fields for f in self.files)]
        meta = ["folder_store_id", "source_file", "file_sha256", "file_seq", "row_number",
                "ingested_at"]  # fmt: skip
        selects = []
        for f in self.files:
            plan = f.plan
            spec_cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(plan.width))
            reader = (
                f"read_csv({_lit(str(plan.path))}, columns={{{spec_cols}}}, header=true,"
                f" auto_detect=false, delim={_lit(plan.delimiter)}, quote='\"', escape='\"',"
                " strict_mode=true, ignore_errors=true, null_padding=false, parallel=false,"
                " compression='none', encoding='utf-8')"
            )
            values = [
                f"c{plan.fields[c]}" if c in plan.fields else "null::varchar" for c in columns
            ]
            values += [
                _lit(f.folder_store_id) if f.folder_store_id is not None else "null::varchar",
                _lit(f.source_file),
                _lit(f.sha256),
                f"{f.file_seq}::bigint",
                # One thread reads the file (parallel=false), so rows arrive in file order.
                "row_number() over ()",
                f"{_lit(f.ingested_at.isoformat(sep=' '))}::timestamp",
            ]
            selects.append(f"select {', '.join(values)} from {reader}")
        target = ", ".join(quote_ident(c) for c in [*columns, *meta])
        raw = qualified("raw." + self.kind)
        con.execute(f"insert into {raw} ({target}) {' union all '.join(selects)}")
        # Each file: one row per data line, and no per-file convention to repair.
        probes = _tidy_probes(self.kind, columns)
        problem = " or ".join(f"coalesce(bool_or({p}), false)" for p in probes) or "false"
        seqs = ", ".join(str(f.file_seq) for f in self.files)
        found = {
            seq: (rows, bad)
            for seq, rows, bad in con.execute(
                f"select file_seq, count(*), {problem} from {raw}"
                f" where file_seq in ({seqs}) group by file_seq"
            ).fetchall()
        }
        kept, back = {}, []
        for f in self.files:
            rows, bad = found.get(f.file_seq, (0, False))
            if rows == f.plan.lines and not bad:
                kept[f.file_seq] = rows
            else:
                back.append(f)
        if back:
            con.execute(
                f"delete from {raw} where file_seq in ({', '.join(str(f.file_seq) for f in back)})"
            )
        return kept, back


__all__ = ["DirectBatch", "DirectFile", "DirectPlan", "direct_plan"]
