"""Privacy deletion requests: record them, then erase the customer everywhere.

`request_deletion` files a request in ops.privacy_log (the CLI's
`storepulse forget --store S --email E`); requests can also arrive as
privacy_requests files in the landing folder (staging.privacy_requests).
`apply_privacy_requests` runs after every ingest: for every request ever made it
deletes the customer's rows from raw, staging, marts, scores and quarantine, in one
transaction, so a file that arrives later cannot bring the customer back.

The log never holds the e-mail itself, only its SHA-256 (of the trimmed, lower-case
address), plus the customer ids the e-mail resolved to (ids that are e-mails are
matched by hash instead, so they are not kept either).

How a table's rows are matched (column names compared case-insensitively):
- store columns (`store_id`, raw's `folder_store_id`: the first that is set) scope
  every match to the request's store; raw and quarantine rows without any store are
  matched on the e-mail too (they cannot be attributed, and erasing is safer), and so
  are raw tables without a store column;
- text columns whose name contains "email" (not "sha"): hash of the normalised value;
- `email_sha256`-style columns: equal to the request's hash;
- `customer_id` columns: one of the resolved ids, or an id that is the e-mail;
- JSON columns (quarantine.rows.record): any value that is the e-mail, or a
  customer_id key holding a resolved id.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import polars as pl

from storepulse.ingest.normalise import email_sha256, safe_store_id
from storepulse.warehouse import append_rows, query, quote_ident, table_exists, transaction

ERASED_SCHEMAS = ("raw", "staging", "marts", "scores", "quarantine")
JSON_VALUE = "e.value ->> '$'"  # a json_each value as text
DELETE_KINDS = ("delete", "deletion", "erase", "erasure", "forget", "")

# Columns added to the ops.privacy_log of storepulse.warehouse.OPS_DDL.
LOG_EXTRA_COLUMNS = {
    "request_id": "varchar",
    "kind": "varchar",
    "resolved_customer_ids": "varchar",  # JSON list
    "rows_deleted": "bigint",
    "last_checked_at": "timestamp",
}


@dataclass
class PrivacySummary:
    requests: int = 0
    imported_from_landing: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    by_request: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total_rows_deleted(self) -> int:
        return sum(self.rows_deleted.values())


def ensure_privacy_log(con: duckdb.DuckDBPyConnection) -> None:
    for column, sql_type in LOG_EXTRA_COLUMNS.items():
        con.execute(
            f"alter table ops.privacy_log add column if not exists {quote_ident(column)} {sql_type}"
        )


def request_deletion(
    con: duckdb.DuckDBPyConnection,
    store_id: str,
    email: str | None = None,
    customer_id: str | None = None,
    source: str = "cli",
    requested_at: datetime | None = None,
) -> str:
    """Record a deletion request for one store's customer; returns its request id.

    Give the e-mail, the store's customer id, or both. Nothing is deleted until
    `apply_privacy_requests` runs (after every ingest).
    """
    sid = safe_store_id(store_id)
    customer_id = (str(customer_id).strip() or None) if customer_id is not None else None
    if customer_id and "@" in customer_id and not email:
        # An id that is an e-mail (orders without customer ids): keep only its hash.
        email, customer_id = customer_id, None
    email_hash = email_sha256(email)
    if not email_hash and not customer_id:
        raise ValueError(
            f"deletion request for store {sid!r} needs an e-mail or a customer id "
            "(storepulse forget --store S --email E)"
        )
    request_id = uuid.uuid4().hex
    with transaction(con):
        ensure_privacy_log(con)
        con.execute(
            "insert into ops.privacy_log (request_id, store_id, email_sha256, customer_id, "
            "requested_at, source, kind, rows_deleted) values (?, ?, ?, ?, ?, ?, 'delete', 0)",
            [
                request_id,
                sid,
                email_hash,
                customer_id,
                requested_at or datetime.now(UTC).replace(tzinfo=None),
                source,
            ],
        )
    return request_id


def apply_privacy_requests(con: duckdb.DuckDBPyConnection) -> PrivacySummary:
    """Erase every requested customer from raw, staging, marts, scores and quarantine.

    Idempotent and cheap to repeat: it runs after every ingest so later files cannot
    bring a customer back. One transaction: all of it or none of it.
    """
    summary = PrivacySummary()
    now = datetime.now(UTC).replace(tzinfo=None)
    with transaction(con):
        ensure_privacy_log(con)
        summary.imported_from_landing = _import_staged_requests(con, now)
        con.execute(
            "update ops.privacy_log set request_id = md5(random()::varchar || "
            "coalesce(store_id, '') || coalesce(email_sha256, '') || coalesce(customer_id, '')) "
            "where request_id is null"
        )
        requests = query(
            con,
            "select request_id, store_id, email_sha256, customer_id, resolved_customer_ids "
            "from ops.privacy_log where coalesce(lower(kind), 'delete') in "
            f"({', '.join(repr(k) for k in DELETE_KINDS)})",
        )
        summary.requests = requests.height
        if requests.is_empty():
            return summary
        con.register("_sp_requests", requests.to_arrow())
        try:
            con.execute(
                "create or replace temp table sp_privacy_hashes as "
                "select distinct request_id, store_id, email_sha256 from _sp_requests "
                "where email_sha256 is not null"
            )
            known_ids = _known_ids(requests)
            con.register("_sp_known_ids", known_ids.to_arrow())
            con.execute(
                "create or replace temp table sp_privacy_ids as "
                "select distinct request_id, store_id, customer_id from _sp_known_ids"
            )
        finally:
            con.unregister("_sp_requests")
            con.unregister("_sp_known_ids")
        tables = _identifying_tables(con)
        _resolve_customer_ids(con, tables)
        for table in tables:
            touched = _erase(con, table)
            for request_id, rows in touched.items():
                summary.rows_deleted[table.name] = summary.rows_deleted.get(table.name, 0) + rows
                summary.by_request.setdefault(request_id, {})[table.name] = rows
        _update_log(con, requests, summary, now)
    return summary


# ---------------------------------------------------------------- requests


def _import_staged_requests(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Copy staged deletion requests into the log (by hash) once; returns how many were new."""
    if not table_exists(con, "staging.privacy_requests"):
        return 0
    columns = set(
        query(
            con,
            "select lower(column_name) as c from information_schema.columns "
            "where table_schema = 'staging' and table_name = 'privacy_requests'",
        )["c"].to_list()
    )
    if "store_id" not in columns:
        return 0

    def col(name: str, sql_type: str = "varchar") -> str:
        return f"cast({name} as {sql_type})" if name in columns else f"cast(null as {sql_type})"

    email, customer = col("email"), col("customer_id")
    staged = query(
        con,
        f"""
        select distinct
            cast(store_id as varchar) as store_id,
            case
                when nullif(lower(trim({email})), '') is not null then sha256(lower(trim({email})))
                when {customer} like '%@%' then sha256(lower(trim({customer})))
            end as email_sha256,
            case when {customer} not like '%@%' then nullif(trim({customer}), '') end
                as customer_id,
            coalesce({col("requested_at", "timestamp")}, ?) as requested_at
        from staging.privacy_requests
        where lower(trim(coalesce({col("kind")}, 'delete'))) in
            ({", ".join(repr(k) for k in DELETE_KINDS)})
          and store_id is not null
        """,
        [now],
    ).filter(pl.col("email_sha256").is_not_null() | pl.col("customer_id").is_not_null())
    if staged.is_empty():
        return 0
    con.register("_sp_staged", staged.to_arrow())
    try:
        new = query(
            con,
            """
            select s.* from _sp_staged s
            where not exists (
                select 1 from ops.privacy_log l
                where l.store_id = s.store_id
                  and coalesce(l.email_sha256, '') = coalesce(s.email_sha256, '')
                  and coalesce(l.customer_id, '') = coalesce(s.customer_id, '')
            )
            """,
        )
    finally:
        con.unregister("_sp_staged")
    if new.is_empty():
        return 0
    new = new.with_columns(
        pl.Series("request_id", [uuid.uuid4().hex for _ in range(new.height)]),
        pl.lit("landing").alias("source"),
        pl.lit("delete").alias("kind"),
        pl.lit(0, dtype=pl.Int64).alias("rows_deleted"),
    )
    return append_rows(con, "ops.privacy_log", new)


def _known_ids(requests: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for row in requests.iter_rows(named=True):
        ids = set(json.loads(row["resolved_customer_ids"] or "[]"))
        if row["customer_id"]:
            ids.add(row["customer_id"])
        rows.extend(
            {"request_id": row["request_id"], "store_id": row["store_id"], "customer_id": i}
            for i in sorted(ids)
        )
    return pl.DataFrame(
        rows, schema={"request_id": pl.String, "store_id": pl.String, "customer_id": pl.String}
    )


# ---------------------------------------------------------------- tables


@dataclass
class _Table:
    name: str
    stores: list[str]
    emails: list[str]
    hashes: list[str]
    ids: list[str]
    jsons: list[str]

    @property
    def sql(self) -> str:
        schema, table = self.name.split(".")
        return f"{quote_ident(schema)}.{quote_ident(table)}"


def _identifying_tables(con: duckdb.DuckDBPyConnection) -> list[_Table]:
    columns = query(
        con,
        f"""
        select c.table_schema || '.' || c.table_name as name, c.column_name, c.data_type
        from information_schema.columns c
        join information_schema.tables t
          on t.table_schema = c.table_schema and t.table_name = c.table_name
        where c.table_schema in ({", ".join(repr(s) for s in ERASED_SCHEMAS)})
          and t.table_type = 'BASE TABLE'
        order by name, c.ordinal_position
        """,
    )
    tables = []
    for (name,), group in columns.group_by(["name"], maintain_order=True):
        stores, emails, hashes, ids, jsons = [], [], [], [], []
        for column, data_type in group.select("column_name", "data_type").iter_rows():
            key = re.sub(r"[^a-z0-9]", "", column.lower())
            if key.endswith("storeid"):
                stores.append(column)
            elif data_type.upper() == "JSON":
                jsons.append(column)
            elif "email" in key and "sha" in key:
                hashes.append(column)
            elif "email" in key and data_type.upper() == "VARCHAR":
                emails.append(column)
            elif key in ("customerid", "customer"):
                ids.append(column)
        if emails or hashes or ids or jsons:
            tables.append(_Table(name, stores, emails, hashes, ids, jsons))
    return tables


def _store_join(table: _Table, alias: str, strict: bool = False) -> str:
    """SQL condition tying row `t` to the request's store.

    strict (customer-id matches: ids are only unique within a store) requires the store;
    otherwise raw and quarantine rows with no store at all match on the e-mail alone.
    """
    lenient = not strict and table.name.split(".")[0] in ("raw", "quarantine")
    if not table.stores:
        return "false" if strict or not lenient else "true"
    parts = ", ".join(f"cast(t.{quote_ident(c)} as varchar)" for c in table.stores)
    store = f"coalesce({parts})" if len(table.stores) > 1 else parts
    condition = f"{store} = {alias}.store_id"
    return f"({condition} or {store} is null)" if lenient else condition


def _norm_hash(expr: str) -> str:
    return f"sha256(lower(trim(cast({expr} as varchar))))"


def _match_selects(table: _Table) -> list[str]:
    """SELECTs of (rid, request_id) for every way a row of `table` can match a request."""
    selects = []
    src = f"{table.sql} t"
    for column in table.emails:
        selects.append(
            f"select t.rowid as rid, h.request_id from {src} join sp_privacy_hashes h "
            f"on {_store_join(table, 'h')} and {_norm_hash('t.' + quote_ident(column))} = h.email_sha256"
        )
    for column in table.hashes:
        selects.append(
            f"select t.rowid as rid, h.request_id from {src} join sp_privacy_hashes h "
            f"on {_store_join(table, 'h')} and lower(cast(t.{quote_ident(column)} as varchar)) "
            "= h.email_sha256"
        )
    if table.stores:
        for column in table.ids:
            ref = f"t.{quote_ident(column)}"
            selects.append(
                f"select t.rowid as rid, i.request_id from {src} join sp_privacy_ids i "
                f"on {_store_join(table, 'i', strict=True)} "
                f"and cast({ref} as varchar) = i.customer_id"
            )
            selects.append(
                f"select t.rowid as rid, h.request_id from {src} join sp_privacy_hashes h "
                f"on {_store_join(table, 'h')} and {_norm_hash(ref)} = h.email_sha256"
            )
    for column in table.jsons:
        each = f"{src}, json_each(t.{quote_ident(column)}) e"
        selects.append(
            f"select t.rowid as rid, h.request_id from {each} join sp_privacy_hashes h "
            f"on {_store_join(table, 'h')} and {_norm_hash(JSON_VALUE)} "
            "= h.email_sha256"
        )
        if table.stores:
            selects.append(
                f"select t.rowid as rid, i.request_id from {each} join sp_privacy_ids i "
                f"on {_store_join(table, 'i', strict=True)} "
                "and regexp_replace(lower(e.key), '[^a-z]', '', 'g') = 'customerid' "
                "and (e.value ->> '$') = i.customer_id"
            )
    return selects


def _resolve_customer_ids(con: duckdb.DuckDBPyConnection, tables: list[_Table]) -> None:
    """Add the store's customer ids that the requested e-mails map to (orders, customers)."""
    found = []
    for table in tables:
        if not table.stores or not table.ids or not (table.emails or table.hashes):
            continue
        matches = " union ".join(
            f"select t.rowid as rid, h.request_id, h.store_id from {table.sql} t "
            f"join sp_privacy_hashes h on {_store_join(table, 'h', strict=True)} "
            f"and {expr} = h.email_sha256"
            for expr in [_norm_hash("t." + quote_ident(c)) for c in table.emails]
            + [f"lower(cast(t.{quote_ident(c)} as varchar))" for c in table.hashes]
        )
        for column in table.ids:
            found.append(
                f"select distinct m.request_id, m.store_id, "
                f"cast(t.{quote_ident(column)} as varchar) as customer_id "
                f"from ({matches}) m join {table.sql} t on t.rowid = m.rid "
                f"where t.{quote_ident(column)} is not null"
            )
    if found:
        con.execute("insert into sp_privacy_ids " + " union ".join(found))
        con.execute(
            "create or replace temp table sp_privacy_ids as select distinct * from sp_privacy_ids"
        )


def _erase(con: duckdb.DuckDBPyConnection, table: _Table) -> dict[str, int]:
    selects = _match_selects(table)
    if not selects:
        return {}
    con.execute(
        "create or replace temp table sp_privacy_matches as "
        f"select rid, min(request_id) as request_id from ({' union '.join(selects)}) group by rid"
    )
    counts = query(
        con,
        "select request_id, count(*)::bigint as n from sp_privacy_matches group by request_id",
    )
    if counts.is_empty():
        return {}
    con.execute(f"delete from {table.sql} where rowid in (select rid from sp_privacy_matches)")
    return dict(zip(counts["request_id"].to_list(), counts["n"].to_list(), strict=True))


def _update_log(
    con: duckdb.DuckDBPyConnection, requests: pl.DataFrame, summary: PrivacySummary, now
) -> None:
    ids = query(con, "select request_id, customer_id from sp_privacy_ids")
    for row in requests.iter_rows(named=True):
        request_id = row["request_id"]
        resolved = sorted(
            {
                cid
                for cid in ids.filter(pl.col("request_id") == request_id)["customer_id"].to_list()
                if cid and "@" not in cid  # an e-mail used as id is matched by its hash instead
            }
        )
        touched = summary.by_request.get(request_id, {})
        previous = query(
            con,
            "select tables_touched from ops.privacy_log where request_id = ?",
            [request_id],
        )["tables_touched"][0]
        merged = json.loads(previous) if previous else {}
        for name, rows in touched.items():
            merged[name] = merged.get(name, 0) + rows
        con.execute(
            """
            update ops.privacy_log set
                applied_at = coalesce(applied_at, ?),
                last_checked_at = ?,
                tables_touched = ?,
                rows_deleted = coalesce(rows_deleted, 0) + ?,
                resolved_customer_ids = ?
            where request_id = ?
            """,
            [
                now,
                now,
                json.dumps(merged, sort_keys=True),
                sum(touched.values()),
                json.dumps(resolved),
                request_id,
            ],
        )
