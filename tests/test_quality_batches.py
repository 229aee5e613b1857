"""GX validates a staging table in batches of whole stores (issue #18: memory bounded by
the largest store, not the portfolio). The verdicts must be those of one whole batch."""

from __future__ import annotations

import duckdb
import pytest

from storepulse.quality import validate_table


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create schema staging")
    # Three stores of 40 customers; store b repeats one customer id (a blocking failure
    # only visible inside b), 3 of 120 e-mails are malformed (2.5 %: fails mostly=0.99
    # overall although store c alone has none), and one row has no store.
    con.execute(
        """
        create table staging.customers as
        select s.store_id, 'c' || i as customer_id,
               case when s.store_id = 'a' and i < 3 then 'broken' else 'x' || i || '@shop.com' end
                   as email,
               '6012345678' as phone
        from (values ('a'), ('b'), ('c')) s(store_id), range(40) r(i)
        union all select 'b', 'c7', 'dup@shop.com', '6012345678'
        union all select null, 'c99', 'nostore@shop.com', '6012345678'
        """
    )
    return con


def summary(result):
    return [
        (o.expectation, o.success, o.unexpected_count, round(o.unexpected_percent or 0, 6))
        for o in result.outcomes
    ]


def test_batches_of_stores_give_the_verdicts_of_one_batch(con):
    whole = validate_table(con, "customers")
    batched = validate_table(con, "customers", batch_rows=41)  # one store per batch
    assert whole.rows == batched.rows == 122
    assert summary(batched) == summary(whole)
    verdicts = {o.expectation + str(o.kwargs.get("column", "")): o.success for o in whole.outcomes}
    assert verdicts["ExpectCompoundColumnsToBeUnique"] is False  # the repeated id in b
    assert verdicts["ExpectColumnValuesToMatchRegexemail"] is False  # 2.5 % > 1 %
    assert verdicts["ExpectColumnValuesToNotBeNullcustomer_id"] is True
    emails = next(o for o in batched.outcomes if o.kwargs.get("column") == "email")
    assert emails.unexpected_count == 3 and set(emails.failing_values) == {"broken"}


def test_a_mostly_expectation_is_judged_on_the_whole_table(con):
    # One malformed e-mail left, in store a: 2.5 % of a, 0.8 % of the table -> passes.
    con.execute(
        "update staging.customers set email = 'ok@shop.com' where email = 'broken' and customer_id <> 'c0'"
    )
    batched = validate_table(con, "customers", batch_rows=41)
    emails = next(o for o in batched.outcomes if o.kwargs.get("column") == "email")
    assert emails.unexpected_count == 1 and emails.success
    assert summary(batched) == summary(validate_table(con, "customers"))


def test_order_totals_are_checked_store_batch_by_store_batch(monkeypatch):
    from storepulse import quality

    con = duckdb.connect()
    con.execute("create schema staging")
    con.execute(
        """
        create table staging.orders as
        select s.store_id, 'o' || i as order_id,
               case when s.store_id = 'b' and i = 0 then 12.0 else 10.0 end as total_usd,
               0.0 as discount_usd, 0.0 as shipping_usd, 0.0 as tax_usd
        from (values ('a'), ('b'), ('c')) s(store_id), range(100) r(i)
        """
    )
    con.execute(
        "create table staging.order_lines as select store_id, order_id, 10.0 as line_total_usd "
        "from staging.orders"
    )
    whole = quality.validate_order_totals(con)
    monkeypatch.setattr(quality, "VALIDATION_BATCH_ROWS", 100)  # one store per batch
    batched = quality.validate_order_totals(con)
    assert whole.rows == batched.rows == 300
    assert summary(batched) == summary(whole)
    (totals,) = batched.outcomes
    assert totals.unexpected_count == 1 and totals.success  # 1 of 300 is within mostly=0.995
    assert [float(v) for v in totals.failing_values] == [2.0]
