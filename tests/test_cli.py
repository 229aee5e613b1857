"""The `storepulse` command line: forget, and its refusals."""

import shutil

import pytest
from homes import copy_warehouse

from storepulse.cli import main
from storepulse.ingest import email_sha256
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query


@pytest.fixture
def ingested_home(tiny_sample, tiny_warehouse, sp_home):
    paths = Paths.from_env().ensure()
    shutil.copytree(tiny_sample, paths.landing, dirs_exist_ok=True)
    copy_warehouse(tiny_warehouse, paths.warehouse)  # the landing, ingested
    with Warehouse(paths.warehouse).writer() as con:
        customer = query(
            con,
            "select store_id, email from staging.customers where email is not null "
            "order by store_id, customer_id limit 1",
        ).row(0, named=True)
    return paths, customer


def test_forget_now_erases_the_customer_and_logs_only_a_hash(ingested_home, capsys):
    paths, customer = ingested_home
    # Typed the way a person would: capitals and spaces.
    typed = f"  {customer['email'].upper()} "
    assert main(["forget", "--store", customer["store_id"], "--email", typed, "--now"]) == 0
    assert "Erased now" in capsys.readouterr().out
    with Warehouse(paths.warehouse).reader() as con:
        log = query(con, "select store_id, email_sha256, source from ops.privacy_log")
        left = query(
            con,
            "select count(*) as n from staging.customers where store_id = ? and email = ?",
            [customer["store_id"], customer["email"]],
        )["n"][0]
        orders_left = query(
            con,
            "select count(*) as n from staging.orders where store_id = ? and email = ?",
            [customer["store_id"], customer["email"]],
        )["n"][0]
    assert log.rows() == [(customer["store_id"], email_sha256(customer["email"]), "cli")]
    assert customer["email"] not in str(log.rows()), "the log keeps the hash, never the address"
    assert left == 0 and orders_left == 0


def test_forget_without_now_only_records_the_request(ingested_home):
    paths, customer = ingested_home
    assert main(["forget", "--store", customer["store_id"], "--email", customer["email"]]) == 0
    with Warehouse(paths.warehouse).reader() as con:
        still_there = query(
            con,
            "select count(*) as n from staging.customers where email = ?",
            [customer["email"]],
        )["n"][0]
        requests = query(con, "select count(*) as n from ops.privacy_log")["n"][0]
    assert requests == 1
    assert still_there >= 1, "erasure happens at the next run unless --now is given"


def test_forget_refuses_a_store_id_that_could_escape_a_folder(sp_home, capsys):
    assert main(["forget", "--store", "../other-store", "--email", "a@example.com"]) == 2
    assert "store" in capsys.readouterr().err.lower()


def test_run_rejects_a_malformed_as_of(sp_home, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--as-of", "2025-13-40"])
    assert exit_info.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_steps_failing_for_one_reason_are_said_once_in_the_summary():
    from storepulse.runner import _grouped_failures

    failures = [
        "marts__kpi_daily: Failure: No orders staged",
        "scores__churn: Failure: No orders staged",
        "ad_roi_marts: Failure: something else",
        "store shop-a churn: failed: RuntimeError: boom",
    ]
    assert _grouped_failures(failures) == [
        "failure in 2 steps (marts__kpi_daily, scores__churn): Failure: No orders staged",
        "failure: ad_roi_marts: Failure: something else",
        "failure: store shop-a churn: failed: RuntimeError: boom",
    ]
