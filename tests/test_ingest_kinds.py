"""A file's kind is never guessed into data loss (issue #16).

Each test lands one more file beside a generated store's customers.csv (tiny sample
data, so the customers carry dirt: stray spaces and capitals in e-mails, mixed
phone formats) and compares staging.customers field by field with the landing
that lacks it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from storepulse.ingest import detect_kind, ingest_landing
from storepulse.warehouse import ensure_schemas, query

STORE = "luma-home-de"
CUSTOMER_COLUMNS = (
    "store_id, customer_id, email, email_sha256, phone, first_name, last_name, country, "
    "created_at, accepts_email_marketing, accepts_sms_marketing, ad_personalization_consent"
)


def copy_landing(tiny_sample: Path, target: Path) -> Path:
    shutil.copytree(tiny_sample, target, ignore=shutil.ignore_patterns("_truth"))
    return target


def add_file(landing: Path, name: str, frame: pl.DataFrame | str) -> Path:
    """Write a file into the store's folder, landed after every other file."""
    path = landing / STORE / name
    if isinstance(frame, str):
        path.write_text(frame)
    else:
        frame.write_csv(path)
    newest = max(p.stat().st_mtime for p in landing.rglob("*") if p.is_file())
    os.utime(path, (newest + 60, newest + 60))
    return path


def ingest(landing: Path):
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    report = ingest_landing(con, landing)
    return con, report


def customers(con) -> pl.DataFrame:
    return query(con, f"select {CUSTOMER_COLUMNS} from staging.customers order by 1, 2")


@pytest.fixture(scope="module")
def base(tiny_sample, tmp_path_factory):
    """The generated landing and its staging.customers, as the reference."""
    landing = copy_landing(tiny_sample, tmp_path_factory.mktemp("base") / "landing")
    con, _ = ingest(landing)
    reference = customers(con)
    source = pl.read_csv(landing / STORE / "customers.csv", infer_schema=False)
    return landing, reference, source


def with_extra(base, tmp_path: Path, name: str, frame) -> tuple[duckdb.DuckDBPyConnection, object]:
    landing = copy_landing(base[0], tmp_path / "landing")
    add_file(landing, name, frame)
    return ingest(landing)


def assert_customers_intact(con, reference: pl.DataFrame) -> None:
    assert_frame_equal(customers(con), reference)


def sample(source: pl.DataFrame, n: int = 300) -> pl.DataFrame:
    return source.filter(pl.col("email").is_not_null()).head(n)


def test_ab_tool_assignments_are_assignments_not_customers(base, tmp_path):
    """The file of the issue: store_id, experiment_id, variant, customer_id, assigned_at."""
    people = sample(base[2])
    assignments = people.select(
        "store_id",
        pl.lit("welcome-10").alias("experiment_id"),
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.lit("A"))
        .otherwise(pl.lit("B"))
        .alias("variant"),
        "customer_id",
        pl.lit("2025-01-05 10:00:00").alias("assigned_at"),
        pl.lit("Welcome offer 10 %").alias("experiment_name"),
    )
    con, report = with_extra(base, tmp_path, "ab_assignments.csv", assignments)
    result = report.file(f"{STORE}/ab_assignments.csv")
    assert (result.status, result.kind, result.match_score) == (
        "ingested",
        "experiment_assignments",
        1.0,
    )
    assert_customers_intact(con, base[1])
    # (the sample's own A/B test is there too: count this file's experiment)
    staged = query(
        con,
        "select variant, count(*) as n from staging.experiment_assignments"
        " where experiment_id = 'welcome-10' group by 1 order by 1",
    )
    assert staged.rows() == [("A", 150), ("B", 150)]


def test_assignments_without_their_kind_columns_are_quarantined_whole(base, tmp_path):
    """Only store_id and customer_id are customers columns: no kind fits, nothing loads."""
    people = sample(base[2], 50)
    odd = people.select(
        "store_id", "customer_id", pl.lit("exp-7").alias("test_bucket_ref"),
        pl.lit("blue").alias("arm_colour"), pl.lit("2025-01-05").alias("bucketed_on"),
    )  # fmt: skip
    con, report = with_extra(base, tmp_path, "bucket_export.csv", odd)
    result = report.file(f"{STORE}/bucket_export.csv")
    assert (result.status, result.kind) == ("failed", None)
    assert "fit no kind well enough" in result.message and "customers (score 0.40" in result.message
    assert (result.runner_up, result.runner_up_score) == ("customers", 0.4)
    quarantined = query(
        con, "select level, reason from quarantine.rows where source_file like '%bucket_export.csv'"
    )
    assert quarantined["level"].to_list() == ["file"]
    assert_customers_intact(con, base[1])


def test_klaviyo_profile_export_keeps_every_customer_field(base, tmp_path):
    """Klaviyo's copies (country names, the date the profile reached Klaviyo, its own
    phone format) never overwrite the store's; its consents say the same as the
    store's here, so nothing changes."""
    people = sample(base[2])
    consent = {"true": "SUBSCRIBED", "false": "NEVER_SUBSCRIBED"}
    klaviyo = people.select(
        pl.col("email").str.strip_chars().str.to_lowercase().alias("Email"),
        pl.col("first_name").str.to_uppercase().alias("First Name"),
        pl.col("last_name").alias("Last Name"),
        pl.lit("+49 30 000000").alias("Phone Number"),
        pl.lit("").alias("Organization"),
        pl.lit("Berlin").alias("City"),
        pl.lit("Germany").alias("Country"),
        pl.lit("Shopify").alias("Source"),
        pl.col("accepts_email_marketing").replace_strict(consent).alias("Email Marketing Consent"),
        pl.col("accepts_sms_marketing").replace_strict(consent).alias("SMS Marketing Consent"),
        pl.lit("2025-06-01 08:00:00").alias("Profile Created On"),
        pl.lit("2025-06-02 08:00:00").alias("Last Active"),
        pl.format("01HX{}", pl.int_range(pl.len())).alias("Klaviyo ID"),
    )
    con, report = with_extra(base, tmp_path, "klaviyo_segment_export.csv", klaviyo)
    result = report.file(f"{STORE}/klaviyo_segment_export.csv")
    assert (result.status, result.kind, result.layout) == (
        "ingested",
        "customers",
        "klaviyo_profiles",
    )
    assert result.rows_quarantined == 0
    assert_customers_intact(con, base[1])


def test_klaviyo_unsubscribe_turns_that_consent_off_and_nothing_else(base, tmp_path):
    people = sample(base[2], 40).filter(pl.col("accepts_email_marketing") == "true").head(5)
    klaviyo = people.select(
        pl.col("email").alias("Email"),
        pl.lit("UNSUBSCRIBED").alias("Email Marketing Consent"),
        pl.lit("2025-06-02").alias("Last Active"),
        pl.format("01HX{}", pl.int_range(pl.len())).alias("Klaviyo ID"),
    )
    con, _ = with_extra(base, tmp_path, "klaviyo_unsubscribes.csv", klaviyo)
    after = customers(con)
    changed = set(people["customer_id"].to_list())
    mine = (pl.col("store_id") == STORE) & pl.col("customer_id").is_in(changed)
    assert after.filter(mine)["accepts_email_marketing"].to_list() == [False] * 5
    expected = base[1].with_columns(
        pl.when(mine)
        .then(False)
        .otherwise(pl.col("accepts_email_marketing"))
        .alias("accepts_email_marketing")
    )
    assert_frame_equal(after, expected)


def test_loyalty_points_file_is_quarantined_with_the_candidates_named(base, tmp_path):
    people = sample(base[2], 80)
    loyalty = people.select(
        "customer_id", "email",
        (pl.int_range(pl.len()) * 37 % 900).alias("points_balance"),
        pl.lit("silver").alias("tier"), pl.lit(1200).alias("lifetime_points"),
        pl.lit("2025-05-01").alias("last_activity_at"),
    )  # fmt: skip
    assert_kind_refused(tmp_path, loyalty, "customers (score 0.33: 2 of 6 columns")
    con, report = with_extra(base, tmp_path, "loyalty_points.csv", loyalty)
    result = report.file(f"{STORE}/loyalty_points.csv")
    assert result.status == "failed" and result.rows_staged == 0
    assert "not: points_balance, tier, lifetime_points, last_activity_at" in result.message
    assert "rename its columns" in result.message
    assert_customers_intact(con, base[1])


def assert_kind_refused(tmp_path: Path, frame: pl.DataFrame, candidate: str) -> None:
    path = tmp_path / "probe.csv"
    frame.write_csv(path)
    with pytest.raises(ValueError, match="fit no kind well enough") as refused:
        detect_kind(path)
    assert candidate in str(refused.value)


def test_partial_customers_file_with_email_and_consent_only(base, tmp_path):
    """E-mail and consent only, the same answers as customers.csv: it belongs to the
    customers those e-mails name (their ids), and erases none of their fields."""
    people = sample(base[2], 400)
    partial = people.select(
        pl.col("email").str.strip_chars().str.to_lowercase(), "accepts_email_marketing"
    )
    con, report = with_extra(base, tmp_path, "newsletter_consents.csv", partial)
    result = report.file(f"{STORE}/newsletter_consents.csv")
    assert (result.status, result.kind, result.rows_quarantined) == ("ingested", "customers", 0)
    assert_customers_intact(con, base[1])


def test_partial_file_updates_only_the_columns_it_has(base, tmp_path):
    people = sample(base[2], 60).filter(pl.col("accepts_sms_marketing") == "false").head(3)
    partial = people.select("customer_id", pl.lit("yes").alias("accepts_sms_marketing"))
    con, _ = with_extra(base, tmp_path, "sms_optins.csv", partial)
    ids = set(people["customer_id"].to_list())
    expected = base[1].with_columns(
        pl.when(pl.col("customer_id").is_in(ids) & (pl.col("store_id") == STORE))
        .then(True)
        .otherwise(pl.col("accepts_sms_marketing"))
        .alias("accepts_sms_marketing")
    )
    assert_frame_equal(customers(con), expected)


def test_partners_file_is_taken_as_partners(base, tmp_path):
    partners = (
        "store_id,partner_id,partner_name,kind,platform,discount_code,utm_campaign,fixed_fee,"
        "commission_rate,currency,start_date,end_date\n"
        f"{STORE},p1,Mia Style,kol,instagram,MIA10,mia_spring,500,0.1,EUR,2025-01-01,2025-06-30\n"
        f"{STORE},p2,DealHub,affiliate,web,DEALHUB,,0,12%,EUR,2025-01-01,\n"
    )
    con, report = with_extra(base, tmp_path, "partners.csv", partners)
    assert report.file(f"{STORE}/partners.csv").kind == "partners"
    # (the sample's other store has partners of its own)
    rows = query(
        con,
        "select partner_id, discount_code, commission_rate from staging.partners"
        " where store_id = ? order by 1",
        [STORE],
    )
    assert rows.rows() == [("p1", "MIA10", 0.1), ("p2", "DEALHUB", 0.12)]
    assert_customers_intact(con, base[1])


def test_every_decision_is_recorded_and_a_rerun_changes_nothing(base, tmp_path):
    landing = copy_landing(base[0], tmp_path / "landing")
    add_file(
        landing, "loyalty_points.csv", "customer_id,email,points_balance,tier\nc1,a@b.co,10,gold\n"
    )
    add_file(
        landing,
        "extra_cols.csv",
        "customer_id,email,first_name,favourite_colour\nc0000001,,Clara,green\n",
    )
    con = duckdb.connect(":memory:")
    ensure_schemas(con)
    first = ingest_landing(con, landing)
    files = query(
        con,
        "select path, kind, status, match_score, runner_up, unused_columns from ops.ingested_files"
        f" where path like '{STORE}/%' and (path like '%loyalty%' or path like '%extra_cols%'"
        " or path like '%/customers.csv')"
        " order by path",
    )
    assert files.rows() == [
        (f"{STORE}/customers.csv", "customers", "ingested", 1.0, "orders", None),
        # orders names three of its four columns too: the runner-up, as close as it came
        (f"{STORE}/extra_cols.csv", "customers", "ingested", 0.75, "orders", "favourite_colour"),
        (f"{STORE}/loyalty_points.csv", None, "failed", None, "customers", None),
    ]
    assert first.attention == [
        f"{STORE}/loyalty_points.csv: not loaded: "
        + first.file(f"{STORE}/loyalty_points.csv").message,
        f"{STORE}/extra_cols.csv: loaded as customers, but these columns were not recognised "
        "and not loaded: favourite_colour",
    ]
    tables = ("staging.customers", "staging.orders", "quarantine.rows", "ops.ingested_files")
    before = {t: query(con, f"select * from {t} order by all") for t in tables}
    again = ingest_landing(con, landing)
    assert {f.status for f in again.files} == {"skipped"} and again.attention == []
    for table in tables:
        assert_frame_equal(query(con, f"select * from {table} order by all"), before[table])


def test_the_run_summary_and_asset_metadata_name_the_files_to_look_at(base, sp_home):
    """What `storepulse run` prints and the UI shows the same night."""
    from storepulse.runner import run_job

    landing = copy_landing(base[0], sp_home / "landing")
    add_file(
        landing, "loyalty_points.csv", "customer_id,email,points_balance,tier\nc1,a@b.co,10,gold\n"
    )
    result = run_job("ingest")
    assert result.success, result.failures
    line = f"{STORE}/loyalty_points.csv: not loaded: the columns fit no kind well enough"
    assert [a[: len(line)] for a in result.attention] == [line]
    assert "files needing attention:\n    " + line in result.summary()
    import dagster as dg

    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "landing_files"]))
    shown = event.asset_materialization.metadata["files_needing_attention"].value
    assert shown.startswith(f"- {line}")


def test_a_returns_file_never_replaces_the_order_lines(base, tmp_path):
    """Half of its columns are order-line columns: loading it would make each returned
    order's lines the returned quantities (the newest file of an order wins)."""
    lines = pl.read_csv(base[0] / "nova-gadgets-us" / "order_lines.csv", infer_schema=False)
    returns = lines.head(20).select(
        "order_id", "sku", "quantity", pl.lit("too small").alias("reason"),
        pl.lit("19.90").alias("refund_amount"), pl.lit("2025-06-01").alias("created_at"),
    )  # fmt: skip
    reference = duckdb.connect(":memory:")
    ensure_schemas(reference)
    ingest_landing(reference, base[0])
    before = query(reference, "select * from staging.order_lines order by all")
    landing = copy_landing(base[0], tmp_path / "landing")
    path = landing / "nova-gadgets-us" / "returns.csv"
    returns.write_csv(path)
    con, report = ingest(landing)
    assert report.file("nova-gadgets-us/returns.csv").status == "failed"
    after = query(con, "select * from staging.order_lines order by all")
    assert_frame_equal(after, before)


@pytest.mark.parametrize(
    ("header", "decision"),
    [
        # WooCommerce customers export: more order-like aliases than customer ones once,
        # now a complete customers header
        ("customer_id,username,email,first_name,last_name,date_created,orders_count,"
         "total_spent,billing_country,billing_phone", "customers"),
        # GA4 exploration export
        ("Date,Session default channel group,Device category,Sessions,Engaged sessions,"
         "Add to carts,Checkouts,Purchases", "sessions"),
        # Mailchimp audience export: a list of contacts, mostly Mailchimp's own fields
        ("Email Address,First Name,Last Name,Address,Phone Number,Birthday,MEMBER_RATING,"
         "OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,"
         "TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS", None),
        ("product_sku,rating,review_title,review_body,reviewer_email,created_at", None),
    ],
)  # fmt: skip
def test_exports_of_other_tools(tmp_path, header, decision):
    path = tmp_path / "export.csv"
    path.write_text(header + "\n" + ",".join("x" for _ in header.split(",")) + "\n")
    if decision is None:
        with pytest.raises(ValueError, match="fit no kind well enough"):
            detect_kind(path)
    else:
        assert detect_kind(path) == decision
