"""Read one landed file into a frame of strings, whatever its encoding and shape.

CSV with any common delimiter (',', ';', tab, '|'), UTF-8 with or without BOM,
UTF-16 with BOM, cp1252/latin-1, optionally gzip-compressed; Parquet. Title lines
above the header (Google Ads) are skipped by looking for the first line that is a
known header. Every problem is a `FileProblem` with a message a person can act on.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from storepulse.ingest.layouts import PROBLEM, ROW, Layout, detect_layout

DELIMITERS = (",", ";", "\t", "|")
HEADER_SEARCH_LINES = 30
HEADER_SEARCH_BYTES = 256 * 1024
# A blank line, or one of only delimiters (spreadsheets leave these at the end).
BLANK_LINE = re.compile(rb"\n[,;\t| ]*\r?\n|\n[,;\t|]+\s*$")
# Extra header names appended to the real header, so that a row with more fields than
# the header (an unquoted delimiter inside a value) is seen instead of silently cut.
EXTRA_FIELDS = tuple(f"__extra_{i}" for i in range(1, 9))
LONE_CR = re.compile(rb"\r(?!\n)")


class FileProblem(Exception):
    """A file that cannot be ingested at all (empty, binary, unknown header…)."""


@dataclass
class LandedFile:
    layout: Layout
    frame: pl.DataFrame  # original columns as strings, plus ROW (1 = first data row)
    encoding: str
    delimiter: str | None
    header_line: int  # 0-based line of the header (title lines above it are skipped)


def _decompress(data: bytes, path: Path) -> bytes:
    if not data:
        return data  # a 0-byte file is 'empty', whatever its name says
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileProblem(f"gzip data is corrupt ({exc}); upload the file again") from exc
    if path.suffix.lower() == ".gz":
        raise FileProblem("named .gz but not gzip-compressed; upload the original file")
    return data


def _transcode(data: bytes) -> tuple[bytes, str, str]:
    """(UTF-8 payload for the CSV reader, its first HEADER_SEARCH_BYTES as text, encoding).

    UTF-8 files are not decoded in full here (the CSV reader validates them; see
    `_parse`); BOM-marked UTF-16 and non-UTF-8 files are transcoded to UTF-8.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        return data, _head_text(data), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
        return text.encode("utf-8"), text[:HEADER_SEARCH_BYTES], "utf-16"
    utf16 = _bomless_utf16(data)
    if utf16:
        text = data.decode(utf16, errors="replace")
        return text.encode("utf-8"), text[:HEADER_SEARCH_BYTES], utf16
    if b"\x00" in data[:8192]:
        raise FileProblem("binary content, not a CSV or Parquet file; export it as CSV")
    if b"\x00" in data:
        raise FileProblem(_nul_message(data))
    try:
        return data, _head_text(data), "utf-8"
    except UnicodeDecodeError:
        return _legacy(data)


def _bomless_utf16(data: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' for UTF-16 text saved without a byte-order mark."""
    sample = data[:4096]
    if len(sample) < 4 or len(sample) % 2:
        sample = sample[: len(sample) - len(sample) % 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    half = len(sample) // 2
    if odd.count(0) > 0.9 * half and even.count(0) < 0.1 * half:
        return "utf-16-le"
    if even.count(0) > 0.9 * half and odd.count(0) < 0.1 * half:
        return "utf-16-be"
    return None


def strip_nul_padding(data: bytes) -> tuple[bytes, int]:
    """Text followed by a run of NUL bytes (a copy or sync cut short): the text, and how
    many NULs were removed. NULs anywhere else are left for the caller to refuse."""
    stripped = data.rstrip(b"\x00")
    return stripped, len(data) - len(stripped)


def _nul_message(data: bytes) -> str:
    offset = data.index(b"\x00")
    line = data.count(b"\n", 0, offset) + 1
    return (
        f"contains NUL bytes (first at byte {offset}, line {line}): the file is damaged or "
        "not a text export; export it again as CSV"
    )


def _head_text(data: bytes) -> str:
    # An incremental decoder tolerates a character cut at the end of the slice.
    return codecs.getincrementaldecoder("utf-8")().decode(data[:HEADER_SEARCH_BYTES], final=False)


def _legacy(data: bytes) -> tuple[bytes, str, str]:
    """Windows exports: cp1252 (a superset of latin-1 for printable text), else latin-1."""
    try:
        text, encoding = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "latin-1"
    return text.encode("utf-8"), text[:HEADER_SEARCH_BYTES], encoding


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    if not sample:
        return False
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\r\n\t")
    return control / len(sample) > 0.05


def _find_header(lines: list[str]) -> tuple[int, str, Layout]:
    """The first line that is a complete known header (else the best partial one)."""
    partial: tuple[int, int, str, Layout] | None = None
    for index, line in enumerate(lines):
        counts = sorted(((line.count(d), d) for d in DELIMITERS), reverse=True)
        for count, delimiter in counts:
            if count == 0:
                continue
            fields = next(csv.reader([line], delimiter=delimiter))
            layout = detect_layout([f.strip() for f in fields])
            if layout is None:
                continue
            if layout.usable:
                return index, delimiter, layout
            score = len(layout.match.mapping)
            if partial is None or score > partial[0]:
                partial = (score, index, delimiter, layout)
    if partial is not None:
        _, index, delimiter, layout = partial
        return index, delimiter, layout
    shown = lines[0][:200] if lines else ""
    raise FileProblem(
        f"header not recognised (first line: {shown!r}); expected the columns of one of the "
        "kinds in DESIGN §3 (e.g. orders: order_id, customer_id or email, created_at, total) "
        "or a Shopify/Meta/Google/TikTok export"
    )


def read_landed_file(path: Path, data: bytes | None = None) -> LandedFile:
    """Parse `path` into strings (`data`: its bytes when the caller has read them
    already). Raises FileProblem for anything that is not usable."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FileProblem(f"cannot be read ({exc.strerror or exc})") from exc
    data = _decompress(data, path)
    notes: list[str] = []
    if data[:4] != b"PAR1" and not _bomless_utf16(data):
        data, padding = strip_nul_padding(data)
        if padding:
            notes.append(
                f"removed {padding} NUL bytes of padding at the end; check that the file is complete"
            )
    if not data or data.isspace():  # (no copy of a big file, unlike strip())
        raise FileProblem("empty file (no header, no rows)")
    if data[:4] == b"PAR1":
        return _read_parquet(data)
    if data[:4] == b"PK\x03\x04":
        raise FileProblem("a zip/Excel workbook, not CSV; export the sheet as CSV")
    payload, head, encoding = _transcode(data)
    if _looks_binary(head):
        raise FileProblem("binary content, not a CSV or Parquet file; export it as CSV")
    if b"\r" in payload and LONE_CR.search(payload):
        # Old-Mac or mixed line endings: a lone CR ends a line too (polars would glue
        # the two lines into one row).
        payload = LONE_CR.sub(b"\n", payload)
        head = head.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip("\r") for line in head.split("\n")[:HEADER_SEARCH_LINES]]
    header_line, delimiter, layout = _find_header(lines)
    payload, width = _widen_header(payload, header_line, delimiter)
    try:
        frame = _parse(payload, delimiter)
    except pl.exceptions.ComputeError as exc:
        if "utf-8" not in str(exc).lower() or encoding != "utf-8":
            raise _parse_problem(delimiter, exc) from exc
        # Valid UTF-8 at the top, not further down: a Windows export after all.
        payload, _, encoding = _legacy(payload)
        try:
            frame = _parse(payload, delimiter)
        except (pl.exceptions.PolarsError, ValueError) as retry_exc:
            raise _parse_problem(delimiter, retry_exc) from retry_exc
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise _parse_problem(delimiter, exc) from exc
    frame = _mark_ragged_rows(frame, width, delimiter)
    frame, cut_note = _mark_cut_last_row(frame, payload, width, delimiter)
    notes += [cut_note] if cut_note else []
    frame = _strip_header_names(frame)
    if BLANK_LINE.search(payload):
        frame = _drop_blank_rows(frame)
    if frame.height == 0:
        notes.append("header only, no data rows")
    layout = replace(layout, notes=tuple(notes))
    return LandedFile(layout, frame, encoding, delimiter, header_line)


def _widen_header(payload: bytes, header_line: int, delimiter: str) -> tuple[bytes, int]:
    """Drop the title lines above the header and append EXTRA_FIELDS to the header, so
    fields beyond the header's width land in those columns. Returns (payload, width)."""
    start = 0
    for _ in range(header_line):
        start = payload.find(b"\n", start) + 1
    end = payload.find(b"\n", start)
    end = len(payload) if end < 0 else end
    header = payload[start:end].rstrip(b"\r")
    width = len(next(csv.reader([header.decode("utf-8", errors="replace")], delimiter=delimiter)))
    extra = "".join(delimiter + name for name in EXTRA_FIELDS).encode()
    # One copy of the body (a join over a memoryview), not two.
    return b"".join((header, extra, memoryview(payload)[end:])), width


def _mark_ragged_rows(frame: pl.DataFrame, width: int, delimiter: str) -> pl.DataFrame:
    """Rows with filled fields beyond the header get a PROBLEM (quarantined, not cut)."""
    extras = [c for c in EXTRA_FIELDS if c in frame.columns]
    # null_count is known without a scan: the usual file (nothing beyond the header)
    # costs nothing here.
    used = [c for c in extras if frame[c].null_count() < frame.height]
    filled = [pl.col(c).is_not_null() & (pl.col(c).str.strip_chars() != "") for c in used]
    if filled:
        problem = pl.when(pl.any_horizontal(filled)).then(
            pl.format(
                "row has more fields than the header's {} (a value probably contains an "
                "unquoted {}); put that value in quotes or re-export the file",
                pl.lit(width),
                pl.lit(repr(delimiter)),
            )
        )
        frame = frame.with_columns(problem.alias(PROBLEM))
    else:
        frame = frame.with_columns(pl.lit(None, pl.Utf8).alias(PROBLEM))
    return frame.drop(extras)


def _mark_cut_last_row(
    frame: pl.DataFrame, payload: bytes, width: int, delimiter: str
) -> tuple[pl.DataFrame, str]:
    """A file that ends without a line break inside a short last row was cut off
    (an interrupted upload or copy): that row is marked, not staged half-empty. A full
    last row without a line break may have lost the end of its last value: a note."""
    if frame.height == 0 or payload.endswith((b"\n", b"\r")):
        return frame, ""
    last = payload[payload.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
    if last.count('"') % 2:
        return frame, ""  # inside a quoted multi-line value; the parser judged it
    fields = len(next(csv.reader([last], delimiter=delimiter), []))
    last_row = frame[ROW].max()
    if fields >= width:
        return frame, (
            f"the file does not end with a line break; if it was cut off, check row {last_row}"
        )
    message = (
        f"row is cut off ({fields} of {width} fields and the file ends without a line break): "
        "the file is incomplete; upload the complete export again"
    )
    frame = frame.with_columns(
        pl.when(pl.col(ROW) == last_row)
        .then(pl.lit(message))
        .otherwise(pl.col(PROBLEM))
        .alias(PROBLEM)
    )
    return frame, ""


def _parse(payload: bytes, delimiter: str) -> pl.DataFrame:
    return pl.read_csv(
        io.BytesIO(payload),
        separator=delimiter,
        has_header=True,
        infer_schema=False,
        quote_char='"',
        truncate_ragged_lines=True,
        raise_if_empty=False,
        row_index_name=ROW,
        row_index_offset=1,
    )


def _parse_problem(delimiter: str, exc: Exception) -> FileProblem:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return FileProblem(
        f"could not be parsed as CSV with delimiter {delimiter!r} ({detail}); "
        "check for an unclosed quote or re-export the file"
    )


def _strip_header_names(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.rename(
        {c: c.replace("\ufeff", "").strip() for c in frame.columns if c not in (ROW, PROBLEM)}
    )


def _drop_blank_rows(frame: pl.DataFrame) -> pl.DataFrame:
    data_columns = [c for c in frame.columns if c not in (ROW, PROBLEM)]
    if not data_columns:
        return frame
    blank = pl.all_horizontal(
        [pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in data_columns]
    )
    return frame.filter(~blank)


def _read_parquet(data: bytes) -> LandedFile:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any parquet failure is a file-level problem
        raise FileProblem(f"Parquet file could not be read ({exc}); upload it again") from exc
    layout = detect_layout(frame.columns)
    if layout is None:
        raise FileProblem(
            f"Parquet columns {frame.columns[:12]} match no known kind; use the canonical "
            "column names of DESIGN §3"
        )
    frame = frame.select(
        [pl.col(c).cast(pl.Utf8).alias(c.strip()) for c in frame.columns]
    ).with_row_index(ROW, offset=1)
    frame = frame.with_columns(pl.col(ROW).cast(pl.Int64))
    return LandedFile(layout, _drop_blank_rows(frame), "parquet", None, 0)
