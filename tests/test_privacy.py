"""Deletion requests: recorded by hash, applied everywhere, per store, atomically."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import duckdb
import polars as pl
import pytest
from test_publish_fixtures import AS_OF, STORE_A, STORE_B, build_warehouse

from storepulse import privacy
from storepulse.privacy import apply_privacy_requests, request_deletion
from storepulse.publish import latest_set, publish_store
from storepulse.warehouse import append_rows, ensure_schemas, query, replace_table, scalar

ALICE = "alice.smith@example.com"
ALICE_HASH = hashlib.sha256(ALICE.encode()).hexdigest()


@pytest.fixture
def con():
    connection = duckdb.connect()
    build_warehouse(connection)
    # Raw as landed: a Shopify-style table with 'Email' and no store column, and a
    # raw customers table with a store column; a quarantined row holding the e-mail.
    replace_table(
        connection,
        "raw.shopify_orders",
        pl.DataFrame(
            {
                "Name": ["#1001", "#1002"],
                "Email": [" ALICE.SMITH@example.com", "carol@example.com"],
                "source_file": ["landing/store-a/orders.csv"] * 2,
                "row_number": [1, 2],
            }
        ),
    )
    replace_table(
        connection,
        "raw.customers",
        pl.DataFrame(
            {
                "store_id": [STORE_A, STORE_A, STORE_B],
                "customer_id": ["c1", "c3", "c1"],
                "email": [ALICE, "carol@example.com", "zed@other-store.com"],
            }
        ),
    )
    append_rows(
        connection,
        "quarantine.rows",
        pl.DataFrame(
            {
                "source_file": ["orders.csv", "orders.csv"],
                "row_number": [7, 8],
                "kind": ["orders", "orders"],
                "store_id": [STORE_A, STORE_A],
                "reason": ["total is not a number", "total is not a number"],
                "record": [
                    json.dumps({"Email": "Alice.Smith@Example.com", "total": "abc"}),
                    json.dumps({"Email": "carol@example.com", "total": "x"}),
                ],
            }
        ),
    )
    yield connection
    connection.close()


def tables_mentioning(con, text: str, *, skip_temp: bool = False) -> dict[str, int]:
    """{table: rows} of every table in every schema whose row text contains `text`;
    skip_temp leaves out this connection's temp tables (for a file warehouse)."""
    where = (
        "table_catalog not in ('temp', 'system')"
        if skip_temp
        else "table_schema not in ('information_schema', 'pg_catalog')"
    )
    names = query(
        con,
        "select table_schema || '.' || table_name as name from information_schema.tables "
        f"where table_type = 'BASE TABLE' and {where}",
    )["name"].to_list()
    found = {}
    for name in names:
        schema, table = name.split(".")
        rows = scalar(
            con,
            f'select count(*) from "{schema}"."{table}" t where lower(cast(t as varchar)) like ?',
            [f"%{text.lower()}%"],
        )
        if rows:
            found[name] = rows
    return found


def test_request_needs_an_identifier_and_a_valid_store(con):
    with pytest.raises(ValueError, match="needs an e-mail or a customer id"):
        request_deletion(con, STORE_A)
    with pytest.raises(ValueError, match="store id"):
        request_deletion(con, "../other", email=ALICE)
    assert scalar(con, "select count(*) from ops.privacy_log") == 0


def test_the_log_keeps_the_hash_not_the_email(con):
    request_deletion(con, STORE_A, email=" Alice.Smith@Example.com ")
    log = query(con, "select * from ops.privacy_log")
    assert log["email_sha256"].to_list() == [ALICE_HASH]
    assert log["source"].to_list() == ["cli"]
    assert ALICE not in str(log.rows())


def test_deleted_customer_leaves_no_trace_in_tables_or_newer_exports(con, tmp_path):
    root = tmp_path / "exports"
    before = publish_store(con, STORE_A, AS_OF, root)
    assert ALICE in (before.path / "segments" / "champions.klaviyo.csv").read_text()
    assert set(tables_mentioning(con, ALICE)) >= {
        "staging.customers",
        "staging.orders",
        "raw.shopify_orders",
        "raw.customers",
        "quarantine.rows",
    }

    request_deletion(con, STORE_A, email=ALICE)
    summary = apply_privacy_requests(con)

    assert tables_mentioning(con, ALICE) == {}
    # Her id 'c1' was resolved from the e-mail and erased from the model tables too.
    for table in ("marts.customer_rfm", "scores.churn", "staging.customers"):
        ids = query(con, f"select customer_id from {table} where store_id = ?", [STORE_A])
        assert "c1" not in ids["customer_id"].to_list(), table
    assert summary.rows_deleted["staging.orders"] == 3
    assert summary.rows_deleted["raw.shopify_orders"] == 1
    assert summary.rows_deleted["quarantine.rows"] == 1
    assert summary.rows_deleted["marts.customer_rfm"] == 1
    log = query(con, "select * from ops.privacy_log").row(0, named=True)
    assert log["applied_at"] is not None
    assert json.loads(log["resolved_customer_ids"]) == ["c1"]
    assert json.loads(log["tables_touched"])["scores.churn"] == 1

    after = publish_store(con, STORE_A, AS_OF + timedelta(days=1), root)
    assert latest_set(root / STORE_A) == after.path.resolve()
    for path in after.path.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".html", ".json"):
            text = path.read_text(encoding="utf-8").lower()
            assert ALICE not in text and ALICE_HASH not in text, path
    scores = pl.read_parquet(after.path / "scores.parquet")
    assert "c1" not in scores["customer_id"].to_list()


def test_exports_leave_out_a_requested_customer_even_before_erasure(con, tmp_path):
    # Run order safety: the request is logged but the model tables still hold her.
    request_deletion(con, STORE_A, email=ALICE)
    request_deletion(con, STORE_A, customer_id="c6")
    result = publish_store(con, STORE_A, AS_OF, tmp_path / "exports")
    for path in result.path.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".html", ".json"):
            text = path.read_text(encoding="utf-8").lower()
            assert ALICE not in text and ALICE_HASH not in text, path
            assert "frank@example.com" not in text, path
    scores = pl.read_parquet(result.path / "scores.parquet")
    assert "c6" not in scores["customer_id"].to_list()
    assert "c1" not in scores["customer_id"].to_list()  # her id, found through the e-mail
    assert "c2" in scores["customer_id"].to_list()
    assert tables_mentioning(con, ALICE)  # erasure itself is apply_privacy_requests' job


def test_deletion_is_scoped_to_the_requesting_store(con):
    request_deletion(con, STORE_A, email=ALICE)
    apply_privacy_requests(con)
    # store-b also has a customer "c1" (another person): untouched.
    for table in ("marts.customer_rfm", "scores.churn", "staging.customers", "raw.customers"):
        ids = query(con, f"select customer_id from {table} where store_id = ?", [STORE_B])
        assert "c1" in ids["customer_id"].to_list(), table
    assert scalar(con, "select count(*) from staging.customers where store_id = ?", [STORE_A]) == 4


def test_staged_request_is_applied_and_later_files_cannot_bring_the_customer_back(con):
    requested = datetime(2025, 6, 1, 9, 0)
    replace_table(
        con,
        "staging.privacy_requests",
        pl.DataFrame(
            {
                "requested_at": [requested],
                "store_id": [STORE_A],
                "email": ["Carol@Example.com"],
                "customer_id": [None],
                "kind": ["delete"],
            },
            schema_overrides={"customer_id": pl.String},
        ),
    )
    first = apply_privacy_requests(con)
    assert first.imported_from_landing == 1
    assert tables_mentioning(con, "carol@example.com") == {}  # incl. the request rows themselves
    # A later file lands the same customer again (staging rebuilt without the request).
    append_rows(
        con,
        "staging.customers",
        pl.DataFrame(
            {
                "store_id": [STORE_A],
                "customer_id": ["c3"],
                "email": ["carol@example.com"],
                "accepts_email_marketing": [True],
            }
        ),
    )
    append_rows(
        con,
        "marts.customer_rfm",
        pl.DataFrame({"store_id": [STORE_A], "customer_id": ["c3"], "segment": ["Champions"]}),
    )
    second = apply_privacy_requests(con)
    assert second.imported_from_landing == 0
    assert second.rows_deleted == {"marts.customer_rfm": 1, "staging.customers": 1}
    assert tables_mentioning(con, "carol@example.com") == {}
    log = query(con, "select source, requested_at, rows_deleted from ops.privacy_log")
    assert log["source"].to_list() == ["landing"]
    assert log["requested_at"].to_list() == [requested]
    assert log["rows_deleted"].to_list() == [first.total_rows_deleted + 2]


def test_request_by_customer_id(con):
    request_deletion(con, STORE_A, customer_id="c3")
    summary = apply_privacy_requests(con)
    assert summary.rows_deleted["staging.orders"] == 2
    assert summary.rows_deleted["marts.customer_rfm"] == 1
    remaining = query(con, "select customer_id from scores.churn where store_id = ?", [STORE_A])
    assert "c3" not in remaining["customer_id"].to_list()
    assert "c1" in remaining["customer_id"].to_list()


def test_email_used_as_customer_id_is_matched_and_not_logged(con):
    request_deletion(con, STORE_A, customer_id="EVE@example.com")
    apply_privacy_requests(con)
    assert tables_mentioning(con, "eve@example.com") == {}
    log = query(con, "select customer_id, resolved_customer_ids from ops.privacy_log").row(0)
    assert log[0] is None
    assert "eve@" not in log[1]
    # The customers row had its own id, resolved through the e-mail.
    assert json.loads(log[1]) == ["cust-eve"]


def test_apply_is_all_or_nothing(con, monkeypatch):
    request_deletion(con, STORE_A, email=ALICE)

    def fail(*args, **kwargs):
        raise RuntimeError("crash while logging")

    monkeypatch.setattr(privacy, "_update_log", fail)
    with pytest.raises(RuntimeError, match="crash while logging"):
        apply_privacy_requests(con)
    assert "staging.orders" in tables_mentioning(con, ALICE)
    assert scalar(con, "select count(*) from ops.privacy_log where applied_at is not null") == 0


def test_generated_data_deletion_survives_a_later_file(tiny_sample, tiny_warehouse, tmp_path):
    """Ingest the tiny sample, forget a Shopify-export customer (store from the folder),
    land a later file that names them again, and check nothing anywhere holds them."""
    import shutil

    from homes import copy_warehouse

    from storepulse.ingest import ingest_landing

    landing = tmp_path / "landing"
    shutil.copytree(tiny_sample, landing, ignore=shutil.ignore_patterns("_truth"))
    # The landing, ingested: the session's copy of the same ingest (conftest).
    con = duckdb.connect(str(copy_warehouse(tiny_warehouse, tmp_path / "warehouse.duckdb")))
    ensure_schemas(con)
    store = "luma-home-de"
    target = query(
        con,
        "select c.email, c.customer_id from staging.customers c join staging.orders o "
        "using (store_id, customer_id) where c.store_id = ? and c.email is not null "
        "group by all order by count(*) desc, c.email limit 1",
        [store],
    ).row(0, named=True)
    email = target["email"]
    assert {"raw.orders", "staging.orders", "staging.customers"} <= set(
        tables_mentioning(con, email, skip_temp=True)
    )

    request_deletion(con, store, email=email.upper())
    apply_privacy_requests(con)
    assert tables_mentioning(con, email, skip_temp=True) == {}

    later = landing / store / "later_orders.csv"
    later.write_text(
        "store_id,order_id,customer_id,email,created_at,currency,total\n"
        f"{store},LATE-1,{target['customer_id']}, {email.title()} ,2026-01-05T10:00:00,EUR,10.0\n"
    )
    ingest_landing(con, landing)
    assert "staging.orders" in tables_mentioning(
        con, email, skip_temp=True
    )  # the file brought them back
    apply_privacy_requests(con)
    assert tables_mentioning(con, email, skip_temp=True) == {}
    ids = query(con, "select customer_id from staging.orders where store_id = ?", [store])
    assert target["customer_id"] not in ids["customer_id"].to_list()

    result = publish_store(con, store, AS_OF, tmp_path / "exports")
    digest = hashlib.sha256(email.encode()).hexdigest()
    for path in result.path.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".html", ".json"):
            text = path.read_text(encoding="utf-8").lower()
            assert email not in text and digest not in text, path
    con.close()
