"""Publish a slice of the stores with a read-only warehouse connection (one process).

Used by the `publish_scaling` bench stage: the per-store work is what would run in
parallel past one machine (docs/scaling.md), so it is timed with 1 and 2 processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from storepulse.publish import publish_store, store_ids
from storepulse.warehouse import Warehouse, query


def slice_arguments(out_flag: str) -> argparse.Namespace:
    """A worker's arguments: the warehouse, where to write, as_of, and the folder of
    claims the workers share (see `claimed_stores`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument(out_flag, type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--claims", type=Path, required=True)
    parser.add_argument(
        "--start-line",
        type=Path,
        help="wait here, set up, for the stage's start (see wait_at_start_line)",
    )
    return parser.parse_args()


def wait_at_start_line(start_line: Path | None) -> None:
    """A set-up worker (imports, instance, connection) says it is ready and waits for the
    stage's go, so the stage times the stores' work from one start for every process,
    as for long-lived workers (Celery's) taking runs; the stage also times the whole
    processes. No start line: go at once."""
    if start_line is None:
        return
    (start_line / f"ready-{os.getpid()}").touch()
    while not (start_line / "go").exists():
        time.sleep(0.002)


def stores_largest_first(con) -> list[str]:
    """Every store (`store_ids`), the one with the most orders first: what a run queue
    given the stores in that order would start first, so no worker is left with a big
    store at the end while the other idles."""
    counts = dict(
        query(
            con, "select store_id, count(*) as n from staging.orders group by store_id"
        ).iter_rows()
    )
    return sorted(store_ids(con), key=lambda store: (-counts.get(store, 0), store))


def claimed_stores(stores: list[str], claims: Path) -> Iterator[str]:
    """The stores this process takes, one at a time: a store is this process's when it
    creates the store's claim file first (O_EXCL), so workers sharing `claims` take the
    next free store as each finishes, like runs taken from a queue."""
    claims.mkdir(parents=True, exist_ok=True)
    for store in stores:
        try:
            os.close(os.open(claims / store, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        yield store


def main() -> int:
    args = slice_arguments("--out")
    with Warehouse(args.warehouse).reader() as con:
        stores = stores_largest_first(con)
        wait_at_start_line(args.start_line)
        for store_id in claimed_stores(stores, args.claims):
            publish_store(con, store_id, args.as_of, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
