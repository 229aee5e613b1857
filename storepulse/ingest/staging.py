"""Rebuild every staging table from raw, in SQL, with row-level validation.

Per kind: parse the raw strings (`p`), check each row (the first failed check
becomes its quarantine reason), convert money to USD with the nearest earlier FX
rate, then resolve versions and duplicates:

- group key (an order for order lines, else the row key): only the latest file
  that contains the group is current; rows of older files that the current
  version no longer has are *superseded* (counted as duplicates);
- row key: the current content is the last row of the current file; the earliest
  row with exactly that content is staged, other identical rows are duplicates,
  a different row in the same current file is a conflict (quarantined), a
  different row in an older file is superseded.

Rows read = staged + duplicates + quarantined per file follows from this: each
raw row gets exactly one outcome.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from storepulse.ingest.channels import channel_sql
from storepulse.ingest.kinds import KIND_SPECS, STAGING_SCHEMAS
from storepulse.ingest.specs import kind_sql, lit, raw_cols
from storepulse.warehouse import qualified, quote_ident, read_sql, scalar

# Order of rebuild: later kinds look up earlier ones (rates, stores, customers, orders).
BUILD_ORDER = (
    "fx_rates", "stores", "customers", "products", "orders", "order_lines", "inventory",
    "ad_spend", "sessions", "privacy_requests", "lift_tests", "partners",
    "experiment_assignments",
)  # fmt: skip


# Views over the staging tables (sql/staging/<name>.sql), in dependency order: the one
# definition of a valid order, and of each customer's order number.
STAGING_VIEWS = ("valid_orders", "ranked_orders")


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the staging views; needs staging.orders (every ingest calls it)."""
    for name in STAGING_VIEWS:
        con.execute(f"create or replace view staging.{name} as {read_sql(f'staging/{name}.sql')}")


def _case(checks: list[tuple[str, str]]) -> str:
    return "case " + " ".join(f"when {cond} then {msg}" for cond, msg in checks) + " end"


def build_kind(con: duckdb.DuckDBPyConnection, kind: str, now: str) -> None:
    """Replace staging.<kind> (with working columns until `finish_kind`); leaves temp
    tables typed_<kind> and careful_<kind> for reporting."""
    raw = qualified(f"raw.{kind}")
    gaps = kind != "order_lines" or bool(
        scalar(con, f"select exists (select 1 from {raw} where sp_text(line_no) is null)")
    )
    spec = kind_sql(kind, now, line_no_gaps=gaps)
    fx_select, fx_join = "", ""
    if spec.fx:
        currency, fx_date = spec.fx
        # USD is 1; otherwise the nearest earlier rate, or the earliest known one when
        # the data starts before the rate table (better than dropping the row).
        fx_select = (
            f", fr.first_rate, case when p.{currency} = 'USD' then 1.0"
            " else coalesce(fx.usd_per_unit, fr.first_rate) end as fx_rate"
        )
        fx_join = (
            f" left join fx_daily fx on fx.currency = p.{currency} and fx.date = p.{fx_date}"
            f" left join fx_first fr on fr.currency = p.{currency}"
        )
    elif kind == "order_lines":
        fx_select = ", 1.0 as first_rate"
    else:
        fx_select = ", 1.0 as first_rate, 1.0 as fx_rate"
    outputs = ", ".join(f"{expr} as {quote_ident(col)}" for col, expr in spec.output.items())
    typed_hash = (
        "hash("
        + ", ".join(quote_ident(c) for c in spec.output if c not in ("source_file", "row_number"))
        + ")"
    )
    group_cols = _key_sql(spec.group_key)
    row_cols = _key_sql(spec.row_key)
    # Only what every row needs is kept per row: the content hash (`typed_hash`) is
    # computed for the few careful rows only, the group hash only when the group is not
    # the row key, and the file's name and time are looked up in raw when quarantined.
    separate_groups = spec.group_key != spec.row_key
    group_hash = f", hash({group_cols}) as _group_hash" if separate_groups else ""
    # The typed rows are written once, into staging.<kind> itself with a few working
    # columns at the end (the typed-only outputs and the row's file, number, reason and
    # key hashes); `finish_kind` later deletes the rows that are not staged and drops
    # those columns. typed_<kind> keeps only what reporting needs of every row.
    contract = STAGING_SCHEMAS[kind]
    columns = ", ".join(
        f"cast({quote_ident(c)} as {t}) as {quote_ident(c)}" for c, t in contract.items()
    )
    extras = "".join(f", {quote_ident(c)}" for c in spec.output if c not in contract)
    con.execute(
        f"""
        create or replace table {qualified("staging." + kind)} as
        with p as (
            select {", ".join(spec.parsed)}, {", ".join(raw_cols(kind))},
                r.source_file, r.row_number, r.file_seq, r.ingested_at
            from {raw} r {spec.joins}
        ), checked as (
            select p.*{fx_select} from p {fx_join}
        ), typed as (
            select {outputs}, row_number as _row_number, file_seq as _file_seq,
                {_case([("sp_text(r_row_problem) is not null", "r_row_problem"), *spec.checks])} as _reason
            from checked
        )
        select {columns}{extras}, _row_number, _file_seq, _reason,
            hash({row_cols}) as _key_hash{group_hash}
        from typed
        """
    )
    store = ", store_id" if "store_id" in contract else ""
    order_id = ", order_id" if kind == "orders" else ""
    con.execute(
        f"create or replace temp table typed_{kind} as select _file_seq, _row_number, _reason"
        f"{store}{order_id} from {qualified('staging.' + kind)}"
    )
    # Fast path: a valid row whose key occurs once, in a group (an order) that only one
    # file has, is simply staged. The rest (usually few rows) is ranked on the real key
    # columns in `careful_<kind>`; a hash collision only sends rows down that path.
    careful = "_key_hash in (select _key_hash from valid group by _key_hash having count(*) > 1)"
    if separate_groups:
        careful += (
            " or _group_hash in (select _group_hash from valid group by _group_hash"
            " having count(distinct _file_seq) > 1)"
        )
    order = "(_file_seq * 10000000000 + _row_number)"
    con.execute(
        f"""
        create or replace temp table careful_{kind} as
        with valid as (select * from {qualified("staging." + kind)} where _reason is null),
        versioned as (
            select *, max(_file_seq) over (partition by {group_cols}) as _version_seq,
                {typed_hash} as _hash
            from valid where {careful}
        ),
        judged as (
            select *,
                arg_max(_hash, {order}) filter (where _file_seq = _version_seq) over w as _winner_hash,
                arg_max(_row_number, {order}) filter (where _file_seq = _version_seq) over w as _winner_row,
                row_number() over (partition by {row_cols}, _hash order by {order}) as _copy_no
            from versioned
            window w as (partition by {row_cols})
        )
        select _file_seq, _row_number, _winner_row, case
                when _winner_hash is null then 'superseded'
                when _hash = _winner_hash and _copy_no = 1 then 'staged'
                when _hash = _winner_hash then 'duplicate'
                when _file_seq = _version_seq then 'conflict'
                else 'superseded'
            end as _outcome
        from judged
        """
    )
    if spec.merge_columns:
        _collect_merge(con, kind, spec.row_key, spec.merge_columns, order)
    con.execute(
        f"delete from {qualified('staging.' + kind)} where _reason is not null"
        " or (_file_seq, _row_number) in"
        f" (select _file_seq, _row_number from careful_{kind} where _outcome <> 'staged')"
    )
    if spec.merge_columns:
        _apply_merge(con, kind, spec.row_key, spec.merge_columns)


def _collect_merge(con, kind: str, key: tuple[str, ...], columns: tuple[str, ...], order: str):
    """Per row key seen in more than one valid row: the newest non-null value of each
    merged column (rows quarantined as conflicts do not count)."""
    keys = ", ".join(quote_ident(k) for k in key)
    newest = ", ".join(
        f"arg_max({quote_ident(c)}, {order}) filter (where {quote_ident(c)} is not null)"
        f" as {quote_ident(c)}"
        for c in columns
    )
    con.execute(
        f"create or replace temp table merged_{kind} as select {keys}, {newest}"
        f" from {qualified('staging.' + kind)} s join careful_{kind} c using (_file_seq, _row_number)"
        f" where s._reason is null and c._outcome <> 'conflict' group by {keys}"
    )


def _apply_merge(con, kind: str, key: tuple[str, ...], columns: tuple[str, ...]) -> None:
    """The staged row (the newest version) keeps its values and takes the newest
    non-null value of every column it leaves empty."""
    fill = ", ".join(
        f"{quote_ident(c)} = coalesce(s.{quote_ident(c)}, m.{quote_ident(c)})" for c in columns
    )
    match = " and ".join(f"s.{quote_ident(k)} = m.{quote_ident(k)}" for k in key)
    con.execute(
        f"update {qualified('staging.' + kind)} s set {fill} from merged_{kind} m where {match}"
    )
    con.execute(f"drop table temp.merged_{kind}")


def finish_kind(con: duckdb.DuckDBPyConnection, kind: str) -> None:
    """Drop the working columns `build_kind` left at the end of staging.<kind>."""
    table = qualified("staging." + kind)
    present = [
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = 'staging'"
            " and table_name = ? order by ordinal_position",
            [kind],
        ).fetchall()
    ]
    for column in present:
        if column not in STAGING_SCHEMAS[kind]:
            con.execute(f"alter table {table} drop column {quote_ident(column)}")


def outcome_select(kind: str) -> str:
    """Every raw row of `kind` once, with its outcome: staged, duplicate, superseded,
    conflict (quarantined: same key, other values, same file) or quarantined."""
    return (
        "select t.*, c._winner_row, case when t._reason is not null then 'quarantined'"
        " else coalesce(c._outcome, 'staged') end as _outcome"
        f" from typed_{kind} t left join careful_{kind} c using (_file_seq, _row_number)"
    )


def _key_sql(key: tuple[str, ...]) -> str:
    """Key columns (quoted) or expressions over them, e.g. coalesce(campaign_id, campaign_name)."""
    return ", ".join(k if "(" in k else quote_ident(k) for k in key)


def prepare_lookups(con: duckdb.DuckDBPyConnection, now: str) -> None:
    """Rate lookups: the first rate per currency, and the nearest earlier rate for every
    day from a currency's first rate to just after `now` (an equi-join is much cheaper
    than an ASOF join per row), and the channel of every distinct UTM pair."""
    con.execute(
        "create or replace temp table fx_first as select currency, arg_min(usd_per_unit, date) as first_rate"
        " from staging.fx_rates group by currency"
    )
    con.execute(
        f"""
        create or replace temp table fx_daily as
        with days as (
            select currency, cast(unnest(generate_series(min(date), greatest(
                (select max(date) from staging.fx_rates), cast(timestamp {lit(now)} as date) + 2),
                interval 1 day)) as date) as date
            from staging.fx_rates group by currency
        )
        select d.currency, d.date, r.usd_per_unit
        from days d asof join staging.fx_rates r on r.currency = d.currency and r.date <= d.date
        """
    )
    con.execute(
        f"""
        create or replace temp table utm_channels as
        select src, med, {channel_sql("nullif(src, '')", "nullif(med, '')")} as channel
        from (select distinct coalesce(sp_text(utm_source), '') as src,
                coalesce(sp_text(utm_medium), '') as med from raw.orders)
        """
    )


def prepare_customer_lookup(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace temp table customer_by_email as select store_id, email, min(customer_id) as customer_id"
        " from staging.customers where email is not null group by store_id, email"
    )


def rebuild_staging(con: duckdb.DuckDBPyConnection, now: datetime) -> dict[str, int]:
    """Rebuild every staging table (and the temp typed_/careful_<kind> tables of the
    kinds that have raw rows, listed by `built_kinds`); returns staged row counts."""
    now_text = now.strftime("%Y-%m-%d %H:%M:%S")
    counts: dict[str, int] = {}
    for kind in BUILD_ORDER:
        if kind == "customers":
            prepare_customer_ids(con)
        if kind == "orders":
            prepare_customer_lookup(con)
        built = bool(scalar(con, f"select count(*) > 0 from {qualified('raw.' + kind)}"))
        if built:
            build_kind(con, kind, now_text)
        else:
            _empty_staging(con, kind)
        if kind == "fx_rates":
            prepare_lookups(con, now_text)
        if kind == "orders":
            prepare_quarantined_orders(con)
            finish_customers(con, orders_built=built)
        if built:
            finish_kind(con, kind)
    for kind in BUILD_ORDER:
        counts[kind] = scalar(con, f"select count(*) from {qualified('staging.' + kind)}")
    return counts


def prepare_customer_ids(con: duckdb.DuckDBPyConnection) -> None:
    """(store, e-mail) -> customer_id as the files that name both say (customers files
    first, then orders; the newest row wins), for customer rows that give only an
    e-mail. Built only when such rows exist (it reads every raw order)."""
    needed = scalar(
        con,
        "select exists (select 1 from raw.customers"
        " where sp_text(customer_id) is null and sp_text(email) is not null)",
    )
    rows = (
        """
        select store_id, email, arg_max(customer_id, priority * 1e15 + seq) as customer_id
        from (
            select coalesce(sp_text(store_id), folder_store_id) as store_id,
                sp_email(email) as email, sp_text(customer_id) as customer_id, 2 as priority,
                file_seq * 1e10 + row_number as seq
            from raw.customers where sp_text(customer_id) is not null
            union all
            select coalesce(sp_text(store_id), folder_store_id), sp_email(email),
                sp_text(customer_id), 1, file_seq * 1e10 + row_number
            from raw.orders where sp_text(customer_id) is not null
        )
        where email is not null and store_id is not null
        group by store_id, email
        """
        if needed
        else "select null::varchar as store_id, null::varchar as email,"
        " null::varchar as customer_id limit 0"
    )
    con.execute(f"create or replace temp table customer_ids_by_email as {rows}")


def prepare_quarantined_orders(con: duckdb.DuckDBPyConnection) -> None:
    """Why each quarantined order was refused, so its lines can say so."""
    source = (
        "select store_id, order_id, min(_reason) as order_reason from typed_orders"
        " where _reason is not null and order_id is not null group by store_id, order_id"
        if "orders" in built_kinds(con)
        else "select null::varchar as store_id, null::varchar as order_id,"
        " null::varchar as order_reason limit 0"
    )
    con.execute(f"create or replace temp table quarantined_orders as {source}")


CONSENTS = ("accepts_email_marketing", "accepts_sms_marketing", "ad_personalization_consent")


def finish_customers(con: duckdb.DuckDBPyConnection, *, orders_built: bool) -> None:
    """Complete staging.customers from the staged orders, then settle the consents.

    Orders are evidence of customers too (a Shopify export is often all a merchant
    has): a customer who ordered but is in no customers file is added (first order
    date, latest known e-mail, phone, name, country and e-mail consent; no SMS or ad
    consent, nobody gave it), and what the customers files leave empty is filled
    from the orders. A consent no file gave is false."""
    if orders_built:
        con.execute(
            f"""
            create or replace temp table customers_from_orders as
            select store_id, customer_id,
                arg_max(email, created_at) filter (where email is not null) as email,
                arg_max(customer_phone, created_at) filter (where customer_phone is not null)
                    as phone,
                arg_max(customer_first_name, created_at)
                    filter (where customer_first_name is not null) as first_name,
                arg_max(customer_last_name, created_at)
                    filter (where customer_last_name is not null) as last_name,
                arg_max(ship_country, created_at) filter (where ship_country is not null)
                    as country,
                min(created_at) as created_at,
                arg_max(customer_accepts_email, created_at)
                    filter (where customer_accepts_email is not null) as accepts_email_marketing
            from ({staged_select("orders")})
            group by store_id, customer_id
            """
        )
        filled = ("email", "phone", "first_name", "last_name", "country", "created_at",
                  "accepts_email_marketing")  # fmt: skip
        con.execute(
            "update staging.customers c set "
            + ", ".join(f"{c} = coalesce(c.{c}, o.{c})" for c in filled)
            + " from customers_from_orders o"
            " where c.store_id = o.store_id and c.customer_id = o.customer_id"
        )
        con.execute(
            """
            insert into staging.customers (store_id, customer_id, email, phone, first_name,
                last_name, country, created_at, accepts_email_marketing)
            select o.store_id, o.customer_id, o.email, o.phone, o.first_name, o.last_name,
                o.country, o.created_at, o.accepts_email_marketing
            from customers_from_orders o anti join staging.customers c
                on c.store_id = o.store_id and c.customer_id = o.customer_id
            """
        )
        con.execute("drop table temp.customers_from_orders")
    con.execute(
        "update staging.customers set "
        + ", ".join(f"{c} = coalesce({c}, false)" for c in CONSENTS)
        + ", email_sha256 = case when email is not null then sha256(email) end"
    )


def staged_select(kind: str) -> str:
    """The typed rows of `kind` that were staged, with the typed-only extra columns
    (between `build_kind` and `finish_kind`, staging.<kind> holds exactly those)."""
    return f"select * from {qualified('staging.' + kind)}"


def built_kinds(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Kinds whose typed_<kind> temp table exists (those with raw rows this run)."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_type = 'LOCAL TEMPORARY'"
        " and table_name like 'typed\\_%' escape '\\'"
    ).fetchall()
    present = {name.removeprefix("typed_") for (name,) in rows}
    return [kind for kind in BUILD_ORDER if kind in present]


def drop_work_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Free the temp tables of a rebuild (the connection usually lives on for later steps)."""
    names = [
        name
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_type = 'LOCAL TEMPORARY'"
        ).fetchall()
        if name.startswith(("typed_", "careful_"))
        or name in ("fx_first", "fx_daily", "utm_channels", "customer_by_email",
                    "customer_ids_by_email", "quarantined_orders", "file_counts",
                    "sp_calling_codes")
    ]  # fmt: skip
    for name in names:
        con.execute(f"drop table if exists temp.{quote_ident(name)}")


def _empty_staging(con: duckdb.DuckDBPyConnection, kind: str) -> None:
    """The contract's columns and types, no rows (downstream SQL never tests existence)."""
    columns = ", ".join(
        f"cast(null as {t}) as {quote_ident(c)}" for c, t in STAGING_SCHEMAS[kind].items()
    )
    con.execute(
        f"create or replace table {qualified('staging.' + kind)} as select {columns} limit 0"
    )
    con.execute(f"drop table if exists temp.typed_{kind}")
    con.execute(f"drop table if exists temp.careful_{kind}")


QUARANTINE_SQL = """
select r.source_file, _row_number as row_number, '{kind}' as kind, store_id,
    r.source_file || ' row ' || _row_number || ': ' || case _outcome
        when 'conflict' then format('{what} appears again in this file with different values; '
            'row {{}} (the last one) was kept, fix or remove the other', _winner_row)
        else _reason end as reason,
    to_json({record}) as record, r.ingested_at as quarantined_at
from ({outcomes}) o join {raw} r on r.file_seq = o._file_seq and r.row_number = o._row_number
where _outcome in ('quarantined', 'conflict')
"""


def quarantine_select(kind: str) -> str:
    label = {
        "lift_tests": "this channel and test window",
        "partners": "this partner_id",
        "experiment_assignments": "this experiment and customer",
        "orders": "this order_id",
        "customers": "this customer_id",
        "products": "this sku",
        "stores": "this store_id",
        "fx_rates": "this date and currency",
        "order_lines": "this order and line_no",
        "inventory": "this snapshot_date, sku and warehouse",
        "ad_spend": "this date, campaign and country",
        "sessions": "this date, channel and device",
        "privacy_requests": "this request",
    }[kind]
    store = "o.store_id" if "store_id" in STAGING_SCHEMAS[kind] else "null"
    record = (
        "struct_pack("
        + ", ".join(f"{quote_ident(c)} := r.{quote_ident(c)}" for c in KIND_SPECS[kind].columns)
        + ")"
    )
    sql = QUARANTINE_SQL.format(
        kind=kind,
        what=label,
        record=record,
        raw=qualified(f"raw.{kind}"),
        outcomes=outcome_select(kind),
    )
    return sql.replace("store_id,", f"{store} as store_id,", 1)
