"""Re-ingest, re-exports, duplicates, kill -9 mid-run, and the tiny generated sample."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from storepulse.ingest import ingest_landing
from storepulse.settings import INGEST_PAUSE_VARIABLE as PAUSE_ENV
from storepulse.warehouse import Warehouse, ensure_schemas, query

NOW = datetime(2025, 6, 1, 12, 0, 0)
REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
STORES = "store_id,store_name,country,currency,timezone\nshop_a,Shop A,DE,EUR,Europe/Berlin\n"
FX = "date,currency,usd_per_unit\n2025-01-01,EUR,1.10\n2025-01-01,GBP,1.25\n"
ORDERS = (
    "order_id,customer_id,email,created_at,total,refunded_amount,financial_status\n"
    "1,c1,a@example.com,2025-03-05 10:00:00,100,0,paid\n"
    "2,c2,b@example.com,2025-03-06 10:00:00,50,0,paid\n"
    "3,c3,c@example.com,2025-03-07 10:00:00,70,0,paid\n"
)
LINES = "order_id,line_no,sku,quantity,unit_price\n1,1,S1,2,50\n2,1,S2,1,50\n3,1,S3,1,70\n"


def write(landing: Path, relative: str, text: str, mtime: float | None = None) -> Path:
    target = landing / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return target


def base_landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    write(landing, "stores.csv", STORES, 1_000_000)
    write(landing, "fx_rates.csv", FX, 1_000_001)
    write(landing, "shop_a/orders.csv", ORDERS, 1_000_002)
    write(landing, "shop_a/order_lines.csv", LINES, 1_000_003)
    return landing


def snapshot(con) -> dict[str, list[tuple]]:
    """Every table of the ingest schemas, rows sorted (so equal content compares equal)."""
    tables = query(
        con,
        "select table_schema || '.' || table_name as name from information_schema.tables"
        " where table_schema in ('raw', 'staging', 'quarantine', 'ops') and table_type = 'BASE TABLE'"
        " order by 1",
    )["name"].to_list()
    return {
        name: sorted(con.execute(f"select * from {name}").fetchall(), key=repr) for name in tables
    }


def counts_add_up(con) -> None:
    files = query(
        con,
        "select path, rows_read, rows_staged, rows_duplicate, rows_quarantined from ops.ingested_files",
    )
    for row in files.iter_rows(named=True):
        staged = row["rows_staged"] + row["rows_duplicate"] + row["rows_quarantined"]
        assert row["rows_read"] == staged, row


def test_second_run_over_the_same_landing_changes_nothing(tmp_path):
    landing = base_landing(tmp_path)
    write(landing, "shop_a/bad.csv", "order_id,customer_id,created_at,total\n9,c9,2025-13-40,5\n")
    write(landing, "shop_a/empty.csv", "")
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    first = ingest_landing(con, landing, now=NOW)
    before = snapshot(con)
    second = ingest_landing(con, landing, now=datetime(2025, 6, 2, 12, 0, 0))
    assert snapshot(con) == before
    assert {f.status for f in second.files} == {"skipped"}
    assert second.staged_rows == first.staged_rows
    assert [(f.path, f.rows_staged) for f in second.files] == [
        (f.path, f.rows_staged) for f in first.files
    ]


def test_same_content_under_another_name_is_recorded_not_ingested(tmp_path):
    landing = base_landing(tmp_path)
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    ingest_landing(con, landing, now=NOW)
    write(landing, "shop_a/orders_copy.csv", ORDERS)
    report = ingest_landing(con, landing, now=NOW)
    copy = report.file("shop_a/orders_copy.csv")
    assert copy.status == "duplicate_file"
    assert copy.message == "same content as shop_a/orders.csv, already ingested; not read again"
    assert copy.rows_read == 0
    assert query(con, "select count(*) from raw.orders").item() == 3
    assert query(con, "select count(*) from staging.orders").item() == 3
    statuses = query(con, "select path, status from ops.ingested_files order by path").rows()
    assert ("shop_a/orders_copy.csv", "duplicate_file") in statuses


def test_reexport_with_refund_updates_the_order(tmp_path):
    landing = base_landing(tmp_path)
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    ingest_landing(con, landing, now=NOW)
    # The merchant re-exports the same file name: order 2 now carries a refund.
    refunded = ORDERS.replace(
        "2025-03-06 10:00:00,50,0,paid", "2025-03-06 10:00:00,50,20,partially_refunded"
    )
    write(landing, "shop_a/orders.csv", refunded, 1_000_100)
    report = ingest_landing(con, landing, now=NOW)
    assert report.file("shop_a/orders.csv").status == "ingested"
    orders = query(
        con,
        "select order_id, refunded_amount, refunded_amount_usd, financial_status from staging.orders order by 1",
    )
    assert orders.rows() == [
        ("1", 0.0, 0.0, "paid"),
        ("2", 20.0, pytest.approx(22.0), "partially_refunded"),
        ("3", 0.0, 0.0, "paid"),
    ]
    versions = query(
        con,
        "select rows_read, rows_staged, rows_duplicate, rows_quarantined from ops.ingested_files"
        " where path = 'shop_a/orders.csv' order by file_seq",
    ).rows()
    # First version: 1 and 3 stay staged from it (identical rows keep their first copy),
    # order 2 is superseded. Second version: order 2 staged, 1 and 3 are duplicates.
    assert versions == [(3, 2, 1, 0), (3, 1, 2, 0)]
    counts_add_up(con)


def test_exact_duplicate_rows_are_counted_once_across_files(tmp_path):
    landing = base_landing(tmp_path)
    write(landing, "shop_a/orders_more.csv", ORDERS.splitlines()[0] + "\n" + ORDERS.splitlines()[1] + "\n"
          "4,c4,d@example.com,2025-03-08 10:00:00,10,0,paid\n", 1_000_010)  # fmt: skip
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    report = ingest_landing(con, landing, now=NOW)
    more = report.file("shop_a/orders_more.csv")
    assert (more.rows_read, more.rows_staged, more.rows_duplicate) == (2, 1, 1)
    assert query(con, "select count(*) from staging.orders").item() == 4
    assert (
        query(con, "select source_file from staging.orders where order_id = '1'").item()
        == "shop_a/orders.csv"
    )
    counts_add_up(con)


def test_shopify_reexport_replaces_the_order_lines(tmp_path):
    landing = base_landing(tmp_path)
    export = (FIXTURES / "shopify_orders_export.csv").read_text()
    write(landing, "shop_a/orders_export.csv", export, 1_000_020)
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    ingest_landing(con, landing, now=NOW)
    # Re-export on another day: #1001 lost its tote line and got a refund.
    header, first, _tote, *rest = list(csv.reader(io.StringIO(export)))
    first[header.index("Refunded Amount")] = "30.00"
    first[header.index("Financial Status")] = "partially_refunded"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, first, *rest])
    write(landing, "shop_a/orders_export_2.csv", out.getvalue(), 1_000_030)
    report = ingest_landing(con, landing, now=NOW)
    assert report.file("shop_a/orders_export_2.csv").status == "ingested"
    refunded = query(
        con, "select refunded_amount from staging.orders where order_id = '#1001'"
    ).item()
    assert refunded == 30.0
    lines = query(
        con, "select sku from staging.order_lines where order_id = '#1001' order by line_no"
    )
    assert lines["sku"].to_list() == ["LS-M"]
    counts_add_up(con)


KILL_SCRIPT = """
import sys
from datetime import datetime
from pathlib import Path
from storepulse.ingest import ingest_landing
from storepulse.warehouse import Warehouse
with Warehouse(sys.argv[1]).writer() as con:
    ingest_landing(con, Path(sys.argv[2]), now=datetime(2025, 6, 1, 12))
"""


def test_kill_during_ingest_then_rerun_equals_a_clean_run(tmp_path):
    landing = base_landing(tmp_path)
    for name in ("meta_ads_manager.csv", "tiktok_ads_report.csv"):
        write(landing, f"shop_a/{name}", (FIXTURES / name).read_text(), 1_000_040)
    killed_db = tmp_path / "killed.duckdb"
    with Warehouse(killed_db).writer() as con:
        # A committed run first, on part of the landing folder.
        partial = tmp_path / "partial"
        write(partial, "stores.csv", STORES, 1_000_000)
        write(partial, "fx_rates.csv", FX, 1_000_001)
        ingest_landing(con, partial, now=NOW)
        committed = snapshot(con)

    marker = tmp_path / "inside_transaction"
    env = {**os.environ, PAUSE_ENV: str(marker), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(killed_db), str(landing)], env=env, cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, "ingest ended before reaching the pause"
            assert time.monotonic() < deadline, "ingest never reached the pause"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    with Warehouse(killed_db).writer() as con:
        # As if the killed run never started…
        assert snapshot(con) == committed
        ingest_landing(con, landing, now=NOW)
        after_rerun = snapshot(con)
    # …and the rerun equals a clean run of the same two steps.
    with Warehouse(tmp_path / "clean.duckdb").writer() as con:
        ingest_landing(con, partial, now=NOW)
        ingest_landing(con, landing, now=NOW)
        clean = snapshot(con)
    assert after_rerun == clean
    assert len(after_rerun["staging.ad_spend"]) == 6
    assert len(after_rerun["staging.orders"]) == 3


def test_tiny_sample_conservation_and_truth_never_read(tiny_sample):
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    report = ingest_landing(con, tiny_sample)
    assert report.files, "the sample has landing files"
    assert not any(part.startswith("_") for f in report.files for part in f.path.split("/"))
    for result in report.files:
        assert result.status == "ingested", result
        assert (
            result.rows_read == result.rows_staged + result.rows_duplicate + result.rows_quarantined
        )
    layouts = {f.layout for f in report.files}
    assert {"shopify_orders", "meta_ads", "google_ads", "tiktok_ads"} <= layouts
    counts_add_up(con)
    for kind in ("stores", "fx_rates", "customers", "orders", "order_lines", "ad_spend"):
        assert report.staged_rows[kind] > 0, kind

    # Every defect the generator planted (its _truth/dirt.csv, read here by the test only)
    # is either quarantined with a reason or normalised.
    dirt = pl.read_csv(tiny_sample / "_truth" / "dirt.csv")
    quarantined = query(con, "select source_file, row_number, reason from quarantine.rows")
    for item in dirt.filter(
        pl.col("kind").is_in(["unknown_currency", "negative_quantity"])
    ).iter_rows(named=True):
        hit = quarantined.filter(
            (pl.col("source_file") == item["file"]) & (pl.col("row_number") == item["row_number"])
        )
        assert hit.height >= 1, item
        expected = (
            "has no rate in fx_rates" if item["kind"] == "unknown_currency" else "is negative"
        )
        assert any(expected in reason for reason in hit["reason"]), (item, hit)
    duplicates = dirt.filter(pl.col("kind") == "duplicate_row")
    for file, group in duplicates.group_by("file"):
        assert report.file(file[0]).rows_duplicate >= group.height
    for item in dirt.filter(pl.col("kind").is_in(["email_format", "phone_format"])).iter_rows(
        named=True
    ):
        source = pl.read_csv(tiny_sample / item["file"], infer_schema=False)
        wanted = item["description"].split("'")[3].lstrip("+")
        column = "email" if item["kind"] == "email_format" else "phone"
        if "Name" in source.columns:  # Shopify export: the order carries the e-mail
            staged = query(
                con,
                f"select {column} from staging.orders where store_id = ? and order_id = ?",
                [item["store_id"], source["Name"][item["row_number"] - 1]],
            )
        else:
            staged = query(
                con,
                f"select {column} from staging.customers where store_id = ? and customer_id = ?",
                [item["store_id"], source["customer_id"][item["row_number"] - 1]],
            )
        assert staged.item() == wanted, item
