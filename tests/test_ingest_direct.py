"""Plain canonical CSV read by DuckDB straight into raw (storepulse/ingest/direct.py)
gives exactly what the general reader gives: raw rows and row numbers, quarantine
reasons, staging and per-file counts. Files it cannot vouch for take the general path."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

import storepulse.ingest.engine as engine
from storepulse.ingest import ingest_landing
from storepulse.ingest.direct import DirectBatch, direct_plan
from storepulse.ingest.kinds import KINDS
from storepulse.warehouse import ensure_schemas

NOW = datetime(2025, 6, 1, 12, 0, 0)
ORDERS_HEADER = "order_id,customer_id,email,created_at,currency,total,refunded_amount\n"
PLAIN_ORDERS = ORDERS_HEADER + (
    "A1,c1,a@example.com,2025-03-05 10:00:00,USD,100,\n"
    "A2,c2,b@example.com,2025-03-06 11:00:00,USD,50.5,0\n"
    "A2,c2,b@example.com,2025-03-06 11:00:00,USD,50.5,0\n"  # duplicate
    "A3,c3,not-an-email,2025-03-07 09:00:00,USD,-4,\n"  # quarantined (negative total)
    "A4, c4 ,d@example.com,2025-13-40,EUR,7,\n"  # quarantined (date), spaces kept
    "A1,c1,a@example.com,2025-03-05 10:00:00,USD,101,\n"  # conflict with row 1
)


def put(landing: Path, relative: str, data: str | bytes) -> Path:
    target = landing / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    return target


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Every table ingest writes, rows sorted (order inside a table carries no meaning)."""
    tables = [f"raw.{k}" for k in KINDS] + [f"staging.{k}" for k in KINDS]
    tables += ["quarantine.rows", "ops.ingested_files"]
    return {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr) for t in tables}


def run(landing: Path, *, direct: bool, monkeypatch) -> tuple[dict, object, list]:
    """Ingest `landing` into a fresh warehouse with or without the direct path; also
    returns (file, kept) for every file the direct path read."""
    read: list[tuple[str, bool]] = []
    original = DirectBatch.insert

    def spy(self, con):
        kept, back = original(self, con)
        read.extend((f.source_file, f.file_seq in kept) for f in self.files)
        return kept, back

    with monkeypatch.context() as patch:
        patch.setattr(DirectBatch, "insert", spy)
        if not direct:
            patch.setattr(engine, "direct_plan", lambda path, data: None)
        con = duckdb.connect(":memory:")
        ensure_schemas(con)
        report = ingest_landing(con, landing, now=NOW)
    return snapshot(con), report, read


def test_plain_file_is_read_directly_and_equals_the_general_path(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    put(landing, "shop_a/orders.csv", PLAIN_ORDERS)
    direct, report, read = run(landing, direct=True, monkeypatch=monkeypatch)
    general, _, none = run(landing, direct=False, monkeypatch=monkeypatch)
    assert read == [("shop_a/orders.csv", True)] and none == []
    assert direct == general
    result = report.file("shop_a/orders.csv")
    assert (result.kind, result.layout, result.rows_read) == ("orders", "orders", 6)
    assert result.rows_read == result.rows_staged + result.rows_duplicate + result.rows_quarantined
    assert (result.rows_staged, result.rows_duplicate, result.rows_quarantined) == (2, 1, 3)
    # Row numbers, values as written (spaces kept, empty fields null) and the reasons.
    raw = direct["raw.orders"]
    assert [(r[1], r[-2]) for r in sorted(raw, key=lambda r: r[-2])][:2] == [("A1", 1), ("A2", 2)]
    row5 = next(r for r in raw if r[1] == "A4")
    assert row5[2] == " c4 " and row5[-2] == 5
    reasons = sorted((r[1], r[4]) for r in direct["quarantine.rows"])
    assert [n for n, _ in reasons] == [1, 4, 5]
    assert "total -4 is negative" in reasons[1][1]


def test_row_numbers_follow_the_file_on_a_large_file(tmp_path, monkeypatch):
    lines = [f"L{i},c{i % 97},{i % 13}.5,2025-01-02" for i in range(1, 30001)]
    text = "order_id,customer_id,total,created_at\n" + "\n".join(lines) + "\n"
    landing = tmp_path / "landing"
    put(landing, "shop_a/orders.csv", text)
    direct, _, read = run(landing, direct=True, monkeypatch=monkeypatch)
    assert read == [("shop_a/orders.csv", True)]
    numbers = {r[1]: r[-2] for r in direct["raw.orders"]}
    assert len(numbers) == 30000
    assert all(numbers[f"L{i}"] == i for i in range(1, 30001))


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        # Refused before reading (direct_plan is None).
        ("quoted.csv", ORDERS_HEADER + 'A1,c1,a@example.com,"2025-03-05 10:00:00",USD,100,\n'),
        ("crlf.csv", PLAIN_ORDERS.replace("\n", "\r\n")),
        ("bom.csv", "\ufeff" + PLAIN_ORDERS),
        ("blank_line.csv", PLAIN_ORDERS + "\n" + "A9,c9,e@example.com,2025-03-08,USD,1,\n"),
        ("no_final_newline.csv", PLAIN_ORDERS.rstrip("\n")),
        ("header_only.csv", ORDERS_HEADER),
        (
            "cp1252.csv",
            (ORDERS_HEADER + "A1,c1,zoë@example.com,2025-03-05,USD,1,\n").encode("cp1252"),
        ),
        ("title_line.csv", "Orders report\n" + PLAIN_ORDERS),
        ("twice.csv", "order_id,total,customer_id,total,created_at\nA1,5,c1,5,2025-03-05\n"),
        # Read, then sent back to the general path by the row count or a _tidy probe.
        ("ragged_long.csv", ORDERS_HEADER + "A1,c1,a@example.com,2025-03-05,USD,100,,extra\n"),
        (
            "ragged_short.csv",
            ORDERS_HEADER + "A1,c1,a@example.com,2025-03-05\nA2,c2,b@x.com,2025-03-06,USD,5,\n",
        ),
        ("apostrophe.csv", ORDERS_HEADER + "'0012,c1,a@example.com,2025-03-05,USD,100,\n"),
        (
            "decimal_comma.csv",
            ORDERS_HEADER.replace(",", ";") + "A1;c1;a@x.com;2025-03-05;EUR;12,50;\n",
        ),
        ("slash_dates.csv", ORDERS_HEADER + "A1,c1,a@example.com,13/03/2025,USD,100,\n"),
        ("guest.csv", ORDERS_HEADER + "A1,0,a@example.com,2025-03-05,USD,100,\n"),
        ("excel_id.csv", ORDERS_HEADER + "1.79E+15,c1,a@example.com,2025-03-05,USD,100,\n"),
        (
            "woo_status.csv",
            "order_id,customer_id,created_at,total,financial_status\nA1,c1,2025-03-05,9,wc-completed\n",
        ),
    ],
)
def test_unusual_files_take_the_general_path_with_the_same_result(
    tmp_path, monkeypatch, name, payload
):
    landing = tmp_path / "landing"
    path = put(landing, f"shop_a/{name}", payload)
    put(landing, "shop_b/orders.csv", PLAIN_ORDERS)  # read directly alongside
    direct, report, read = run(landing, direct=True, monkeypatch=monkeypatch)
    general, _, _ = run(landing, direct=False, monkeypatch=monkeypatch)
    assert ("shop_b/orders.csv", True) in read
    assert (f"shop_a/{name}", True) not in read
    if direct_plan(path, path.read_bytes()) is not None:
        assert (f"shop_a/{name}", False) in read  # read, checked, sent back
    assert direct == general
    result = report.file(f"shop_a/{name}")
    if result.status == "ingested":
        assert result.rows_read == (
            result.rows_staged + result.rows_duplicate + result.rows_quarantined
        )


def test_sent_back_rows_are_not_left_in_raw(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    put(landing, "shop_a/orders.csv", ORDERS_HEADER + "A1,c1,a@x.com,2025-03-05,USD,1,,extra\n")
    direct, report, read = run(landing, direct=True, monkeypatch=monkeypatch)
    assert read == [("shop_a/orders.csv", False)]
    # One raw row (from the general path), quarantined for the extra field.
    assert len(direct["raw.orders"]) == 1
    assert "more fields than the header" in direct["quarantine.rows"][0][4]
    assert report.file("shop_a/orders.csv").rows_quarantined == 1


def test_sample_landing_is_the_same_either_way_and_rerun_is_idempotent(
    tiny_sample, tmp_path, monkeypatch
):
    direct, report, read = run(tiny_sample, direct=True, monkeypatch=monkeypatch)
    general, _, _ = run(tiny_sample, direct=False, monkeypatch=monkeypatch)
    assert read and all(kept for _, kept in read)
    assert direct == general
    for result in report.new_files:
        assert result.rows_read == (
            result.rows_staged + result.rows_duplicate + result.rows_quarantined
        ), result.path
    # Same content again: nothing new, nothing changes.
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schemas(con)
    ingest_landing(con, tiny_sample, now=NOW)
    before = snapshot(con)
    again = ingest_landing(con, tiny_sample, now=NOW)
    assert again.new_files == []
    assert snapshot(con) == before


def test_a_plain_file_named_like_an_archive_is_read_as_text(tmp_path, monkeypatch):
    # DuckDB would otherwise decompress by extension (and fail inside the transaction).
    landing = tmp_path / "landing"
    put(landing, "shop_a/orders.zst", PLAIN_ORDERS)
    direct, report, read = run(landing, direct=True, monkeypatch=monkeypatch)
    general, _, _ = run(landing, direct=False, monkeypatch=monkeypatch)
    assert read == [("shop_a/orders.zst", True)]
    assert direct == general
    assert report.file("shop_a/orders.zst").rows_staged == 2


def _landed_in_order(landing: Path, files: list[tuple[str, str | bytes]]) -> None:
    """Files with increasing modification times (the landing order)."""
    import os

    for i, (relative, payload) in enumerate(files):
        path = put(landing, relative, payload)
        os.utime(path, ns=(1_700_000_000_000_000_000 + i * 10**9,) * 2)


@pytest.mark.parametrize("general_first", [True, False])
def test_the_later_file_wins_whichever_path_each_takes(tmp_path, monkeypatch, general_first):
    # A quoted file needs the general reader (parsed after the plain files are queued);
    # the landing order still decides which version of order A1 is current.
    general = ("shop_a/quoted.csv", ORDERS_HEADER + 'A1,c1,a@x.com,"2025-03-05",USD,10,\n')
    plain = ("shop_a/plain.csv", ORDERS_HEADER + "A1,c1,a@x.com,2025-03-05,USD,20,\n")
    landing = tmp_path / "landing"
    _landed_in_order(landing, [general, plain] if general_first else [plain, general])
    direct, report, read = run(landing, direct=True, monkeypatch=monkeypatch)
    general_path, _, _ = run(landing, direct=False, monkeypatch=monkeypatch)
    assert read == [("shop_a/plain.csv", True)]
    assert direct == general_path
    totals = [r[11] for r in direct["staging.orders"]]
    assert totals == ([20.0] if general_first else [10.0])
    later = "shop_a/plain.csv" if general_first else "shop_a/quoted.csv"
    assert report.file(later).rows_staged == 1


def test_same_content_as_a_failed_file_is_still_read(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    _landed_in_order(
        landing,
        [
            ("shop_a/a.csv.gz", PLAIN_ORDERS),  # not gzip: fails
            ("shop_a/b.csv", PLAIN_ORDERS),  # same bytes: read (it is not a duplicate)
            ("shop_a/c.csv", PLAIN_ORDERS),  # duplicate of b.csv
            ("shop_b/q1.csv", ORDERS_HEADER + 'Q1,c1,a@x.com,"2025-03-05",USD,10,\n'),
            ("shop_b/q2.csv", ORDERS_HEADER + 'Q1,c1,a@x.com,"2025-03-05",USD,10,\n'),
        ],
    )
    direct, report, _ = run(landing, direct=True, monkeypatch=monkeypatch)
    general, _, _ = run(landing, direct=False, monkeypatch=monkeypatch)
    assert direct == general
    status = {f.path: f.status for f in report.files}
    assert status == {
        "shop_a/a.csv.gz": "failed",
        "shop_a/b.csv": "ingested",
        "shop_a/c.csv": "duplicate_file",
        "shop_b/q1.csv": "ingested",
        "shop_b/q2.csv": "duplicate_file",
    }
    assert report.file("shop_a/b.csv").rows_staged == 2
