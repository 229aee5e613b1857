"""kill -9 in the middle of one store's publish run (the per-store partition's code,
storepulse.publish.publish_store, in its own process): that store keeps its previous
complete set as `latest`, the other store's set and the warehouse are untouched, and
rerunning the store completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import duckdb
from test_publish_fixtures import AS_OF, STORE_A, STORE_B, build_warehouse

from storepulse.publish import latest_set, publish_store, verify_set

# Publishes STORE_A as of the next day in a child process that stops (for the kill) once
# its segment files are written and the report is being drawn.
CHILD = """
import sys, time
from datetime import date
from pathlib import Path
import duckdb
from storepulse.publish import exports, report

def stall(*args, **kwargs):
    Path(sys.argv[4]).touch()
    time.sleep(600)

report.render_report = stall
con = duckdb.connect(sys.argv[1], read_only=True)
exports.publish_store(con, sys.argv[2], date.fromisoformat(sys.argv[3]), sys.argv[5])
"""


def test_a_killed_store_run_leaves_every_complete_set_and_the_warehouse_as_they_were(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        build_warehouse(con)
    exports = tmp_path / "exports"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = {s: publish_store(con, s, AS_OF, exports).path for s in (STORE_A, STORE_B)}
        tables_before = con.sql("select table_schema, table_name from information_schema.tables"
                                " order by 1, 2").fetchall()  # fmt: skip
    ready = tmp_path / "drawing-the-report"
    next_day = AS_OF + timedelta(days=1)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(warehouse),
            STORE_A,
            next_day.isoformat(),
            str(ready),
            str(exports),
        ],  # fmt: skip
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert child.poll() is None, "the child publish ended before the kill"
        assert time.monotonic() < deadline, "the child never reached the report"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    folder = exports / STORE_A
    assert latest_set(folder) == before[STORE_A]  # the killed run never moved latest
    assert not (folder / next_day.isoformat()).exists()
    assert [p.name for p in folder.glob(".tmp-*")], "the killed run left its temp folder"
    for store in (STORE_A, STORE_B):
        assert verify_set(latest_set(exports / store)) == []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables_after = con.sql("select table_schema, table_name from information_schema.tables"
                               " order by 1, 2").fetchall()  # fmt: skip
        assert tables_after == tables_before
        rerun = publish_store(con, STORE_A, next_day, exports)
    assert latest_set(folder) == rerun.path and verify_set(rerun.path) == []
    assert latest_set(exports / STORE_B) == before[STORE_B]
