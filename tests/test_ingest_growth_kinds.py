"""lift_tests, partners and experiment_assignments: typed, validated, quarantined with
reasons (DESIGN §3; issues #14 and #17). Hand-written files, one store in EUR."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from storepulse.ingest import ingest_landing
from storepulse.warehouse import ensure_schemas, query

STORES = "store_id,store_name,country,currency\nshop,Shop,DE,EUR\n"
FX = "date,currency,usd_per_unit\n2024-01-01,EUR,1.10\n2025-01-01,EUR,1.05\n"
CUSTOMERS = "customer_id,email,first_name\n" + "".join(
    f"c{i},c{i}@example.com,N{i}\n" for i in range(1, 9)
)
ORDERS = (
    "order_id,customer_id,created_at,total,discount_code\n"
    "o1,c1,2025-02-01 10:00:00,50,MIA10\n"
    "o2,guest@example.com,2025-02-02 10:00:00,30,\n"
)
AD_SPEND = "date,platform,spend\n2025-01-01,meta,100\n2025-01-01,snapchat,50\n"
LIFT_HEADER = "channel,start_date,end_date,test_spend,incremental_revenue,std_error,ci_low,ci_high,scope,source\n"
PARTNER_HEADER = (
    "partner_id,partner_name,kind,discount_code,utm_campaign,fixed_fee,commission_rate\n"
)
ASSIGN_HEADER = "experiment_id,variant,customer_id,email,assigned_at\n"


def land(tmp_path: Path, files: dict[str, str]) -> duckdb.DuckDBPyConnection:
    landing = tmp_path / "landing"
    (landing / "shop").mkdir(parents=True)
    base = {"stores.csv": STORES, "fx_rates.csv": FX, "shop/customers.csv": CUSTOMERS,
            "shop/orders.csv": ORDERS, "shop/ad_spend.csv": AD_SPEND}  # fmt: skip
    for index, (name, text) in enumerate({**base, **files}.items()):
        path = landing / name
        path.write_text(text)
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    ingest_landing(con, landing)
    return con


def reasons(con, kind: str) -> dict[int, str]:
    rows = query(
        con, "select row_number, reason from quarantine.rows where kind = ? order by 1", [kind]
    ).rows()
    return {row: reason.split(": ", 1)[1] for row, reason in rows}


def test_lift_tests_typed_with_std_error_from_a_90_percent_interval(tmp_path):
    con = land(tmp_path, {"shop/lift.csv": LIFT_HEADER
        + "Facebook,2025-03-01,2025-03-28,10000,25000,4000,,,total,meta_conversion_lift\n"
        + "google,2025-04-01,2025-04-21,8000,9000,,-1000,19000,,google_geo\n"
        + "snapchat,2025-05-01,2025-05-14,2000,-9000,3000,,,immediate,tiktok_lift\n"})  # fmt: skip
    rows = query(
        con,
        "select channel, std_error, round(incremental_revenue_usd, 2) as usd, scope, source,"
        " significantly_negative from staging.lift_tests order by start_date",
    ).rows()
    assert rows == [
        ("meta", 4000.0, 26250.0, "total", "meta_conversion_lift", False),
        (
            "google",
            pytest.approx(20000 / (2 * 1.6448536269514722)),
            9450.0,
            "total",
            "google_geo",
            False,
        ),
        # a channel the store spends on, although no known platform; below zero at 90 %
        ("snapchat", 3000.0, -9450.0, "immediate", "other", True),
    ]


def test_bad_lift_tests_are_quarantined_with_reasons(tmp_path):
    con = land(tmp_path, {
        "shop/lift.csv": LIFT_HEADER
        + "carrier_pigeon,2025-03-01,2025-03-28,100,250,40,,,,\n"
        + "meta,2025-03-28,2025-03-01,100,250,40,,,,\n"
        + "meta,2025-03-01,2025-03-28,100,250,-40,,,,\n"
        + "meta,2025-03-01,2025-03-28,100,250,,,,,\n"
        + "meta,2025-03-01,2025-03-28,100,250,40,,,lifetime,\n",
        "shop/lift_chf.csv": "channel,start_date,end_date,currency,incremental_revenue,std_error\n"
        + "meta,2025-03-01,2025-03-28,CHF,250,40\n",
    })  # fmt: skip
    assert query(con, "select count(*) as n from staging.lift_tests")["n"][0] == 0
    got = query(
        con,
        "select source_file, row_number, reason from quarantine.rows where kind = 'lift_tests'"
        " order by 1, 2",
    ).rows()
    assert [reason.split(": ", 1)[1] for *_, reason in got] == [
        "channel 'carrier_pigeon' is neither a known ad channel nor one this store spends on; "
        "use the platform name of its ad_spend rows (meta, google, tiktok…)",
        "end_date 2025-03-01 is before start_date 2025-03-28; correct the dates",
        "std_error -40 is negative; a standard error is positive",
        "neither std_error nor both ci_low and ci_high are filled; add the standard error of "
        "the measured lift (or its 90 % interval)",
        "scope 'lifetime' is not 'immediate' or 'total' (does the lift include sales after the "
        "test window?)",
        "currency 'CHF' has no rate in fx_rates; add its rates to fx_rates.csv (date, currency, usd_per_unit) or correct the currency code",
    ]


def test_partners_typed_and_a_duplicate_code_quarantined(tmp_path):
    con = land(tmp_path, {"shop/partners.csv": PARTNER_HEADER
        + "p1,Mia,Influencer,mia10,,500,12%\n"
        + "p2,DealHub,affiliate,DEALS,,0,0.08\n"
        + "p3,Copycat,affiliate,DEALS,,0,0.05\n"
        + "p4,NoLink,kol,,,100,0.1\n"
        + "p5,Greedy,kol,G5,,0,15\n"})  # fmt: skip
    staged = query(
        con,
        "select partner_id, kind, discount_code, fixed_fee_usd, commission_rate"
        " from staging.partners order by 1",
    ).rows()
    assert staged == [("p1", "kol", "MIA10", pytest.approx(525.0), 0.12)]
    assert reasons(con, "partners") == {
        2: "discount code 'DEALS' is given to several partners in this file (p2, p3); give "
        "each partner its own code",
        3: "discount code 'DEALS' is given to several partners in this file (p2, p3); give "
        "each partner its own code",
        4: "neither discount_code nor utm_campaign is filled; orders cannot be linked to this "
        "partner",
        5: "commission_rate 15 is not a share between 0 and 1 (write 0.12 or 12%)",
    }
    # The order's code is kept (upper-case) for the scorecard to link.
    assert query(con, "select discount_code from staging.orders where order_id = 'o1'").rows() == [
        ("MIA10",)
    ]


def test_assignments_unknown_customer_two_variants_and_single_variant(tmp_path):
    con = land(tmp_path, {
        "shop/ab.csv": ASSIGN_HEADER
        + "welcome,A,c1,,2025-01-02 10:00:00\n"
        + "welcome,B,,C2@Example.com,2025-01-02 10:00:00\n"
        + "welcome,A,c3,,2025-01-02 10:00:00\n"
        + "welcome,B,c3,,2025-01-03 10:00:00\n"
        + "welcome,B,nobody,,2025-01-02 10:00:00\n"
        + "welcome,A,,guest@example.com,2025-01-02 10:00:00\n"
        + "solo,A,c4,,2025-01-02 10:00:00\n"
        + "solo,A,c5,,2025-01-02 10:00:00\n",
    })  # fmt: skip
    staged = query(
        con,
        "select experiment_id, variant, customer_id from staging.experiment_assignments"
        " order by 1, 3",
    ).rows()
    # c2 found by e-mail; the guest is a customer from their order
    assert staged == [
        ("welcome", "A", "c1"),
        ("welcome", "B", "c2"),
        ("welcome", "A", "guest@example.com"),
    ]
    two = (
        "customer 'c3' is in variants A and B of experiment 'welcome'; a customer must stay "
        "in one variant, so the readout leaves them out"
    )
    solo = (
        "experiment 'solo' has only variant 'A'; a test needs at least two variants (check "
        "that the export holds every variant)"
    )
    assert reasons(con, "experiment_assignments") == {
        3: two,
        4: two,
        5: "customer 'nobody' is not a customer of store 'shop' (not in its customers or "
        "orders); add them to the customers file or correct the id",
        7: solo,
        8: solo,
    }


def test_gx_suites_pass_on_the_staged_rows_and_block_a_duplicate_key(tmp_path):
    from storepulse.quality import validate_frame, validate_table

    con = land(tmp_path, {
        "shop/lift.csv": LIFT_HEADER + "meta,2025-03-01,2025-03-28,100,250,40,,,,\n",
        "shop/partners.csv": PARTNER_HEADER + "p1,Mia,kol,MIA10,,500,0.1\n",
        "shop/ab.csv": ASSIGN_HEADER + "w,A,c1,,2025-01-02\nw,B,c2,,2025-01-02\n",
    })  # fmt: skip
    for kind in ("lift_tests", "partners", "experiment_assignments"):
        result = validate_table(con, kind)
        assert result.rows > 0 and result.success, result.describe()
        frame = query(con, f"select * from staging.{kind}")
        doubled = validate_frame(kind, frame.vstack(frame.head(1)))
        assert [o.expectation for o in doubled.blocking_failures] == [
            "ExpectCompoundColumnsToBeUnique"
        ]
