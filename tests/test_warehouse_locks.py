"""One DuckDB file, several processes: writers and read-only steps wait for each
other's lock instead of failing, and give up with a message that says why."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from storepulse.warehouse import Warehouse, connect, scalar


def _hold_writer(path, seconds: float) -> subprocess.Popen:
    """Another process holding the file read-write for `seconds`; returns once it holds it."""
    code = textwrap.dedent(
        f"""
        import sys, time, duckdb
        con = duckdb.connect({str(path)!r})
        con.execute("create table if not exists t as select 42 as x")
        con.execute("checkpoint")
        print("holding", flush=True)
        time.sleep({seconds})
        con.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_reader_waits_for_a_writer_in_another_process(tmp_path):
    path = tmp_path / "w.duckdb"
    writer = _hold_writer(path, 1.5)
    started = time.monotonic()
    try:
        with Warehouse(path).reader() as con:
            waited = time.monotonic() - started
            assert scalar(con, "select x from t") == 42
    finally:
        writer.wait(timeout=30)
    assert waited > 0.3, "the reader should have had to wait for the writer's lock"


def test_gives_up_after_the_wait_with_a_message_that_names_the_file(tmp_path):
    path = tmp_path / "w.duckdb"
    writer = _hold_writer(path, 5)
    try:
        with pytest.raises(duckdb.IOException, match="STOREPULSE_LOCK_WAIT_SECONDS") as info:
            connect(path, read_only=True, wait_seconds=0.3)
        assert str(path) in str(info.value)
    finally:
        writer.kill()
        writer.wait(timeout=30)


def test_other_errors_are_not_retried(tmp_path):
    missing = tmp_path / "nope" / "w.duckdb"
    started = time.monotonic()
    with pytest.raises(duckdb.Error):
        connect(missing, read_only=True, wait_seconds=30)
    assert time.monotonic() - started < 5


def test_writer_writes_row_groups_small_enough_to_stage_on_every_core(tmp_path):
    # DuckDB scans one row group per thread: a 100k-row table (a small store's orders)
    # must not be a single row group, or staging it uses one core.
    path = tmp_path / "w.duckdb"
    with Warehouse(path).writer() as con:
        con.execute("create table staging.t as select range as x from range(100000)")
    with Warehouse(path).reader() as con:
        groups = scalar(
            con, "select count(distinct row_group_id) from pragma_storage_info('staging.t')"
        )
        assert scalar(con, "select count(*) from staging.t") == 100_000
    assert groups >= 3


def _null_order(warehouse: Warehouse) -> str:
    with warehouse.reader() as con:
        return scalar(con, "select current_setting('default_null_order')")


def test_a_pin_shares_one_instance_until_unpinned_or_a_writer_opens(tmp_path):
    from storepulse import warehouse as wh

    path = tmp_path / "w.duckdb"
    warehouse = Warehouse(path)
    with warehouse.writer() as con:
        con.execute("create table staging.t as select 1 as x")
    default = _null_order(warehouse)
    warehouse.pin()
    try:
        # A global setting made on the pinned instance is what every reader sees: they
        # join it instead of opening the file again.
        wh._PINS[path.resolve()].execute(
            "set global default_null_order = 'nulls_first_on_asc_last_on_desc'"
        )
        assert (
            _null_order(warehouse).lower() == "nulls_first_on_asc_last_on_desc" != default.lower()
        )
        # A writer in the same process drops the pin first (read-only and read-write
        # instances of one file cannot coexist), and then writes.
        with warehouse.writer() as con:
            con.execute("insert into staging.t values (2)")
        assert path.resolve() not in wh._PINS
        assert _null_order(warehouse) == default
        warehouse.pin()
        with warehouse.reader() as con:
            assert scalar(con, "select sum(x) from staging.t") == 3
    finally:
        wh.unpin_all()
    assert not wh._PINS
    # Unpinned, another process can write again.
    writer = _hold_writer(path, 0.1)
    assert writer.wait(timeout=60) == 0
