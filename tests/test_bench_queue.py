"""The scaling bench's work queue (benchmarks.publish_worker): workers sharing a claims
folder take every store exactly once, the largest first."""

from __future__ import annotations

import threading

import duckdb

from benchmarks.publish_worker import claimed_stores, stores_largest_first, wait_at_start_line


def test_two_workers_take_every_store_once(tmp_path):
    """Two claimers racing over one folder (threads here; the claim is a file created
    with O_EXCL, which holds the same between processes)."""
    stores = [f"s{i:03d}" for i in range(500)]
    start = threading.Barrier(2)
    taken: list[list[str]] = [[], []]

    def claim(i: int) -> None:
        start.wait()
        for store in claimed_stores(stores, tmp_path / "claims"):
            taken[i].append(store)

    workers = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert sorted(taken[0] + taken[1]) == stores  # each store once, none lost
    # a worker keeps the queue's order among the stores it took
    assert all(t == sorted(t) for t in taken)


def test_a_claimed_store_is_not_taken_again(tmp_path):
    claims = tmp_path / "claims"
    assert list(claimed_stores(["a", "b"], claims)) == ["a", "b"]
    assert list(claimed_stores(["a", "b", "c"], claims)) == ["c"]


def test_stores_come_largest_first_with_storeless_orders_last():
    con = duckdb.connect()
    con.sql("create schema staging")
    con.sql("create table staging.orders as select * from (values "
            "('small', 1), ('big', 1), ('big', 2), ('big', 3), ('mid', 1), ('mid', 2)) "
            "t(store_id, order_id)")  # fmt: skip
    con.sql("create table staging.stores as select * from (values ('mid'), ('new')) t(store_id)")
    assert stores_largest_first(con) == ["big", "mid", "small", "new"]


def test_a_set_up_worker_waits_at_the_start_line_for_the_go(tmp_path):
    """The stage times the stores' work from one go: a worker says it is ready, then
    takes no store before the go exists."""
    passed = threading.Event()
    worker = threading.Thread(target=lambda: (wait_at_start_line(tmp_path), passed.set()))
    worker.start()
    for _ in range(500):
        if list(tmp_path.glob("ready-*")):
            break
        passed.wait(0.01)
    assert len(list(tmp_path.glob("ready-*"))) == 1
    assert not passed.wait(0.2)  # ready, but no go yet
    (tmp_path / "go").touch()
    worker.join(timeout=30)
    assert passed.is_set()
    wait_at_start_line(None)  # no start line: go at once
