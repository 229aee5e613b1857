"""Per-store exports: destination rules, consent, formula safety, isolation, atomic sets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from test_publish_fixtures import AS_OF, FORMULA_NAME, STORE_A, STORE_B, build_warehouse

from storepulse.publish import latest_set, publish_history, publish_store, verify_set
from storepulse.publish import report as report_module
from storepulse.publish.destinations import (
    KLAVIYO_HEADER,
    KLAVIYO_PROPERTIES_HEADER,
    MAILCHIMP_HEADER,
    META_HEADER,
    iso_country,
    neutralise_formula,
    slugify,
)
from storepulse.warehouse import ensure_schemas, replace_table


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


@pytest.fixture
def con():
    connection = duckdb.connect()
    build_warehouse(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Both stores published once for the module (read-only for the tests):
    (export root, {store: set folder})."""
    connection = duckdb.connect()
    build_warehouse(connection)
    root = tmp_path_factory.mktemp("published") / "exports"
    results = {s: publish_store(connection, s, AS_OF, root) for s in (STORE_A, STORE_B)}
    connection.close()
    return root, {s: r.path for s, r in results.items()}


def test_klaviyo_file_has_email_first_and_only_consenting_customers(published):
    _, sets = published
    champions = read_csv(sets[STORE_A] / "segments" / "champions.klaviyo.csv")
    assert tuple(champions.columns) == KLAVIYO_HEADER
    assert champions.columns[0] == "Email"
    # Champions are c1 (consent), c3 (no e-mail consent) and c6 (ads consent only).
    assert champions["Email"].to_list() == ["alice.smith@example.com"]
    row = champions.row(0, named=True)
    assert row["First Name"] == "Alice"  # trimmed
    assert row["Country"] == "GB"  # 'UK' in the data: ISO-3166 alpha-2 is GB
    assert row["Phone Number"] == "447700900123"
    assert row["RFM Segment"] == "Champions"
    assert (row["Churn Risk"], row["Churn Risk Score"]) == ("low", "20")
    assert float(row["Predicted CLV"]) == pytest.approx(3 * 180.0)
    assert row["Expected Date Of Next Order"] == (AS_OF + timedelta(days=10)).isoformat()


def test_klaviyo_properties_file_imports_under_klaviyos_rules(published):
    """customers.klaviyo_properties.csv: Email first, then the four properties; e-mail
    consent only; dates YYYY-MM-DD; Churn Risk low/medium/high; text that would run as
    a spreadsheet formula is neutralised; one row per e-mail."""
    _, sets = published
    props = read_csv(sets[STORE_A] / "customers.klaviyo_properties.csv")
    assert tuple(props.columns) == KLAVIYO_PROPERTIES_HEADER
    consented = {"alice.smith@example.com", "bob@example.com", "eve@example.com"}
    assert set(props["Email"]) <= consented and props["Email"].is_unique().all()
    assert "carol@example.com" not in set(props["Email"])  # no e-mail consent
    assert set(props["Churn Risk"].drop_nulls()) <= {"low", "medium", "high"}
    for day in props["Expected Date Of Next Order"].drop_nulls():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day)
    assert not any(
        str(v).startswith(("=", "+", "-", "@")) for col in props.columns for v in props[col]
    )
    manifest = json.loads((sets[STORE_A] / "manifest.json").read_text())
    assert "customers.klaviyo_properties.csv" in {f["path"] for f in manifest["files"]}
    b = read_csv(sets[STORE_B] / "customers.klaviyo_properties.csv")
    assert not set(b["Email"]) & consented  # never another store's customers


def test_mailchimp_header_tags_and_formula_cells_are_neutralised(published):
    _, sets = published
    frame = read_csv(sets[STORE_A] / "segments" / "cant-lose-them.mailchimp.csv")
    assert tuple(frame.columns) == MAILCHIMP_HEADER
    row = frame.row(0, named=True)
    assert row["Email Address"] == "bob@example.com"
    assert row["First Name"] == "'" + FORMULA_NAME
    assert row["Last Name"] == "'-Jones"
    assert row["Tags"].split(",") == ["Can't Lose Them", "high_value"]
    raw = (sets[STORE_A] / "segments" / "cant-lose-them.mailchimp.csv").read_text()
    assert ",=HYPERLINK" not in raw and ',"=HYPERLINK' not in raw


def test_meta_file_hashes_normalised_identifiers_like_meta_asks(published):
    _, sets = published
    meta = read_csv(sets[STORE_A] / "segments" / "champions.meta.csv")
    assert tuple(meta.columns) == META_HEADER
    # c1 and c6 granted ad personalization; c3 did not.
    expected = {
        (
            sha("alice.smith@example.com"),
            sha("447700900123"),
            sha("alice"),
            sha("smith"),
            sha("gb"),
        ),
        (
            sha("frank@example.com"),
            sha("4915112345678"),
            sha("frank"),
            sha("ocean"),
            sha("de"),
        ),
    }
    assert set(meta.iter_rows()) == expected
    assert all(len(v) == 64 for row in meta.iter_rows() for v in row)


def test_meta_leaves_missing_identifiers_blank_instead_of_hashing_nothing(published):
    _, sets = published
    meta = read_csv(sets[STORE_A] / "segments" / "hibernating.meta.csv")
    # Eve has no phone: the cell is empty, not sha256('').
    assert meta["email"].to_list() == [sha("eve@example.com")]
    assert meta["phone"].to_list() == [None]
    assert sha("") not in meta.to_pandas().to_string()


def test_customer_without_customers_row_is_in_no_audience_file(published):
    _, sets = published
    # c4 (At Risk) has scores but no staging.customers row: no consent by default.
    for suffix in ("klaviyo", "mailchimp", "meta"):
        assert read_csv(sets[STORE_A] / "segments" / f"at-risk.{suffix}.csv").height == 0
    scores = pl.read_parquet(sets[STORE_A] / "scores.parquet")
    assert "c4" in scores["customer_id"].to_list()


def test_orders_keyed_by_email_still_find_their_customer_row(published):
    _, sets = published
    hibernating = read_csv(sets[STORE_A] / "segments" / "hibernating.klaviyo.csv")
    assert hibernating["Email"].to_list() == ["eve@example.com"]
    assert hibernating["Country"].to_list() == ["DE"]


def test_win_back_and_repurchase_lists(published):
    _, sets = published
    segments = sets[STORE_A] / "segments"
    # High risk and high value: c2 (e-mail consent) and c6 (ads consent only).
    assert read_csv(segments / "win-back-high-value.klaviyo.csv")["Email"].to_list() == [
        "bob@example.com"
    ]
    assert read_csv(segments / "win-back-high-value.meta.csv")["email"].to_list() == [
        sha("frank@example.com")
    ]
    tags = read_csv(segments / "win-back-high-value.mailchimp.csv")["Tags"][0]
    assert "win-back-high-value" in tags.split(",")
    # c1 orders every 30 days and last ordered 40 days ago; c3 ordered 5 days ago.
    assert read_csv(segments / "repurchase-due.klaviyo.csv")["Email"].to_list() == [
        "alice.smith@example.com"
    ]


def test_store_folder_never_holds_another_stores_customers(published):
    _, sets = published
    other_store_markers = ["zed@other-store.com", "yan@other-store.com"]
    other_store_markers += [sha(m) for m in other_store_markers]
    for path in sets[STORE_A].rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".html", ".json"):
            text = path.read_text(encoding="utf-8")
            for marker in other_store_markers:
                assert marker not in text, f"{marker} leaked into {path}"
    for name in ("scores.parquet", "forecast.parquet"):
        frame = pl.read_parquet(sets[STORE_A] / name)
        assert set(frame["store_id"].to_list()) <= {STORE_A}
    # Both stores have a customer "c1": store-a's file must carry store-a's scores.
    scores = pl.read_parquet(sets[STORE_A] / "scores.parquet").filter(pl.col("customer_id") == "c1")
    assert scores["segment"].to_list() == ["Champions"]
    assert scores["monetary_usd"].to_list() == [900.0]
    for name in ("reorder_plan.csv", "budget_plan.csv"):
        assert set(read_csv(sets[STORE_A] / name)["store_id"].to_list()) == {STORE_A}
    b_klaviyo = read_csv(sets[STORE_B] / "segments" / "champions.klaviyo.csv")
    assert b_klaviyo["Email"].to_list() == ["zed@other-store.com"]


def test_manifest_lists_every_file_with_rows_and_sha256(published, tmp_path):
    _, sets = published
    folder = shutil.copytree(sets[STORE_A], tmp_path / "copy")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["store_id"] == STORE_A and manifest["as_of"] == AS_OF.isoformat()
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(listed) == on_disk
    for required in ("scores.parquet", "forecast.parquet", "reorder_plan.csv", "budget_plan.csv"):
        assert required in listed
    for path, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256((folder / path).read_bytes()).hexdigest()
    assert listed["reorder_plan.csv"]["rows"] == 3
    assert listed["forecast.parquet"]["rows"] == 3 * 28
    assert listed["segments/champions.klaviyo.csv"]["rows"] == 1
    assert verify_set(folder) == []
    (folder / "budget_plan.csv").write_text("tampered\n")
    assert verify_set(folder) == ["budget_plan.csv changed after publishing (sha256 differs)"]


def test_reorder_and_budget_csv_neutralise_text_but_keep_numbers(published):
    _, sets = published
    reorder = read_csv(sets[STORE_A] / "reorder_plan.csv")
    assert "'-SKU-DASH" in reorder["sku"].to_list()
    budget = read_csv(sets[STORE_A] / "budget_plan.csv")
    # A negative number is a number, not a formula: it stays as it is.
    assert "-1170.0" in budget["expected_revenue_change_usd"].to_list()


def test_latest_points_at_the_newest_set_and_only_moves_forward(con, tmp_path):
    root = tmp_path / "exports"
    store = root / STORE_A
    publish_store(con, STORE_A, AS_OF, root)
    later = AS_OF + timedelta(days=1)
    publish_store(con, STORE_A, later, root)
    assert (store / "latest").is_symlink()
    assert os.readlink(store / "latest") == later.isoformat()
    assert (store / "LATEST").read_text().strip() == later.isoformat()
    # Republishing an older day replaces that set but leaves `latest` on the newer one.
    result = publish_store(con, STORE_A, AS_OF, root)
    assert result.latest_pointer == "unchanged"
    assert latest_set(store) == (store / later.isoformat()).resolve()
    leftovers = [p.name for p in store.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_publish_keeps_the_previous_complete_set(con, tmp_path, monkeypatch):
    root = tmp_path / "exports"
    first = publish_store(con, STORE_A, AS_OF, root)
    before = (first.path / "manifest.json").read_text()

    def broken_report(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "render_report", broken_report)
    with pytest.raises(RuntimeError, match="disk full"):
        publish_store(con, STORE_A, AS_OF + timedelta(days=1), root)
    store = root / STORE_A
    assert latest_set(store) == first.path.resolve()
    assert sorted(p.name for p in store.iterdir()) == [AS_OF.isoformat(), "LATEST", "latest"]
    assert (first.path / "manifest.json").read_text() == before


@pytest.mark.parametrize("bad_id", ["../evil", "a/b", "", ".hidden", "x" * 65, "a b", "/tmp"])
def test_store_ids_that_could_escape_the_export_folder_are_refused(con, tmp_path, bad_id):
    root = tmp_path / "exports"
    root.mkdir()
    with pytest.raises(ValueError, match="store id"):
        publish_store(con, bad_id, AS_OF, root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"]
    assert list(root.iterdir()) == []


def test_missing_model_tables_still_give_a_complete_set(tmp_path):
    con = duckdb.connect()
    ensure_schemas(con)
    replace_table(
        con,
        "staging.orders",
        pl.DataFrame({"store_id": ["solo"], "customer_id": ["x"], "order_date": [AS_OF]}),
    )
    result = publish_store(con, "solo", AS_OF, tmp_path / "exports")
    assert verify_set(result.path) == []
    names = {f["path"] for f in result.files}
    assert {"scores.parquet", "forecast.parquet", "reorder_plan.csv", "budget_plan.csv"} <= names
    assert "segments/win-back-high-value.klaviyo.csv" in names
    assert read_csv(result.path / "budget_plan.csv").columns == [
        "store_id",
        "channel",
        "current_spend_usd",
        "recommended_spend_usd",
        "expected_revenue_change_usd",
    ]
    html = (result.path / "report.html").read_text()
    # seven analysis sections, the next experiment (#14), partners, A/B tests and orders
    # to review (#17)
    assert html.count("not been built yet") == 11
    assert "<svg" not in html
    assert any("scores.demand_forecast is not built yet" in n for n in result.notes)


def test_report_shows_customer_value_by_segment_and_who_is_due_next(published):
    _, sets = published
    a_html = (sets[STORE_A] / "report.html").read_text()
    assert "Predicted value of the next 12 months, by segment" in a_html
    assert "Customers expected to order next, week by week" in a_html
    # The win-back list is sized in predicted value at risk, not in counts alone.
    assert re.search(r"win-back list of high-value customers at risk has <strong>\d+</strong> "
                     r"customers \(\$[\d,]+ of value at risk\)", a_html)  # fmt: skip


def test_report_says_which_method_made_the_numbers_for_this_store_only(published):
    _, sets = published
    a_html = (sets[STORE_A] / "report.html").read_text()
    b_html = (sets[STORE_B] / "report.html").read_text()
    line = "scored with BG/NBD because LightGBM: too little history"
    assert "<strong>Churn risk</strong> (done with a simpler method): " + line in a_html
    assert (
        line not in b_html and "<strong>Churn risk</strong> (done): scored with LightGBM" in b_html
    )


def test_report_explains_empty_sections_and_escapes_merchant_data(published):
    _, sets = published
    a_html = (sets[STORE_A] / "report.html").read_text()
    assert "Alpha &lt;Goods&gt; &amp; Co" in a_html and "<Goods>" not in a_html
    assert a_html.count("<svg") == 7  # one plot per analysis section
    assert "Revenue grew 30%" in a_html
    # Self-contained: nothing to fetch, nothing to run.
    for needle in ("<script", "<link", 'src="http', 'href="http', "@import"):
        assert needle not in a_html
    assert re.search(r"url\((?!#)", a_html) is None  # only in-document references
    b_html = (sets[STORE_B] / "report.html").read_text()
    assert "This store has no ad spend in the data" in b_html
    assert "needs order lines" in b_html
    assert b_html.count("<svg") == 3  # KPIs, segments, churn


def test_history_snapshots_every_marts_and_scores_table(con, tmp_path):
    root = tmp_path / "exports"
    counts = publish_history(con, AS_OF, root)
    folder = root / "_history" / AS_OF.isoformat()
    assert counts["marts.customer_rfm"] == 8
    assert counts["scores.demand_forecast"] == 84
    assert set(counts) == {
        "marts.kpi_daily",
        "marts.customer_rfm",
        "marts.reorder_plan",
        "marts.channel_roi",
        "marts.budget_plan",
        "scores.churn",
        "scores.clv",
        "scores.demand_forecast",
    }
    for name, rows in counts.items():
        assert pl.read_parquet(folder / f"{name}.parquet").height == rows
    assert json.loads((folder / "manifest.json").read_text())["tables"] == counts


@pytest.mark.parametrize(
    ("raw", "iso"),
    [("UK", "GB"), ("gb", "GB"), (" United Kingdom ", "GB"), ("usa", "US"), ("DE", "DE")],
)
def test_iso_country(raw, iso):
    assert iso_country(raw) == iso


def test_iso_country_rejects_unknown_names():
    assert iso_country("Atlantis") is None
    assert iso_country("") is None


@pytest.mark.parametrize("cell", ["=1+1", "+44 20", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_prefixes_are_neutralised(cell):
    assert neutralise_formula(cell) == "'" + cell


def test_plain_text_and_numbers_are_left_alone():
    assert neutralise_formula("Alice") == "Alice"
    assert neutralise_formula(-3.5) == -3.5


def test_slugify_segment_names():
    assert slugify("Can't Lose Them") == "cant-lose-them"
    assert slugify("Champions") == "champions"
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("!!!") == "segment"


def test_channel_roi_shows_the_longest_latest_window_once_per_channel(con):
    from storepulse.publish.data import load_store_data
    from storepulse.publish.media import channel_section

    quarters = con.sql(
        "select * replace (period_start + interval 60 day as period_start, "
        "spend_usd / 3 as spend_usd, 9.9 as incremental_roas) from marts.channel_roi"
    ).pl()
    replace_table(
        con,
        "marts.channel_roi",
        pl.concat(
            [con.sql("select * from marts.channel_roi").pl(), quarters], how="vertical_relaxed"
        ),
    )
    section = channel_section(load_store_data(con, STORE_A, AS_OF))
    assert section.body.count(">meta</td>") == 1
    assert "9.90×" not in section.body  # the shorter window is not shown
    assert "$4,500" in section.body  # the whole window's spend, not a quarter's


def test_report_survives_hostile_product_names_without_touching_global_plot_settings(con, tmp_path):
    import matplotlib.pyplot as plt

    # Unbalanced math with an unknown command: mathtext would raise on this label.
    hostile = "$5 off <b>x</b> & \\nosuchcmd{ $"
    con.execute(
        "insert into scores.demand_forecast (store_id, sku, date, p10, p50, p90, model_version) "
        "values (?, ?, ?, 100, 200, 300, 'v')",
        [STORE_A, hostile, AS_OF],
    )
    parse_math_before = plt.rcParams["text.parse_math"]
    result = publish_store(con, STORE_A, AS_OF, tmp_path / "exports")
    html = (result.path / "report.html").read_text()
    assert "could not be drawn" not in html
    assert "$5 off &lt;b&gt;x&lt;/b&gt; &amp;" in html and "<b>x</b>" not in html
    assert plt.rcParams["text.parse_math"] == parse_math_before


def test_ad_roi_sections_show_calibration_tangled_channels_and_the_next_test(con):
    """With lift tests: calibrated and uncalibrated ROAS side by side, each test's z-score;
    channels the data cannot split are named with their joint ROAS; the next experiment
    is one sentence a merchant can act on; a kept plan says why."""
    from storepulse.publish.data import load_store_data
    from storepulse.publish.media import budget_section, channel_section, lift_plan_section

    roi = con.sql("select * from marts.channel_roi").pl().with_columns(
        pl.lit(1.0).alias("uncalibrated_roas"),
        pl.lit(1, dtype=pl.Int64).alias("lift_tests_used"),
        pl.lit(False).alias("identified"),
        pl.when(pl.col("channel") == "meta").then(pl.lit("google")).otherwise(pl.lit("meta"))
        .alias("confounded_with"),
        pl.lit(1.8).alias("group_roas"),
        pl.lit(1.2).alias("group_roas_p10"),
        pl.lit(2.5).alias("group_roas_p90"),
    )  # fmt: skip
    replace_table(con, "marts.channel_roi", roi)
    replace_table(
        con,
        "marts.lift_test_results",
        pl.DataFrame(
            {
                "store_id": [STORE_A], "channel": ["meta"], "start_date": [AS_OF - timedelta(60)],
                "end_date": [AS_OF - timedelta(40)], "measured_lift_usd": [3000.0],
                "effective_std_error_usd": [800.0], "model_lift_usd": [900.0],
                "calibrated_lift_usd": [2500.0], "z_score": [2.6], "status": ["used"],
            }
        ),
    )  # fmt: skip
    reason = "Hold out 20 % of meta audiences for 28 days: it settles whether meta pays."
    replace_table(
        con,
        "marts.lift_plan",
        pl.DataFrame(
            {
                "store_id": [STORE_A], "channel": ["meta"], "reason": [reason],
                "holdout_share": [0.2], "duration_days": [28], "expected_std_error": [650.0],
                "expected_value_usd": [1200.0],
            }
        ),
    )  # fmt: skip
    plan = con.sql("select * from marts.budget_plan").pl()
    replace_table(
        con,
        "marts.budget_plan",
        plan.with_columns(
            pl.col("current_spend_usd").alias("recommended_spend_usd"),
            pl.lit(0.0).alias("expected_revenue_change_usd"),
            pl.lit("spend kept as is: the gain is not clear").alias("flag"),
        ),
    )
    data = load_store_data(con, STORE_A, AS_OF)
    channels = channel_section(data)
    assert "Incremental ROAS (calibrated by lift tests)" in channels.body
    assert "Without the lift tests" in channels.body and "1.00×" in channels.body
    assert "+2.6" in channels.body and "$3,000" in channels.body
    assert "meta and google rose and fell together" in channels.advice
    assert "together they return 1.80× (likely 1.20× to 2.50×)" in channels.advice
    assert "Keep the current split: the gain is not clear." == budget_section(data).advice
    nxt = lift_plan_section(data)
    assert nxt.advice == reason
    assert "20%" in nxt.body and "$1,200" in nxt.body


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("ok", "scored with the no-media baseline: its own backtest", "did not forecast"),
        (
            "fallback",
            "scored with the no-media baseline because only 100 days of history; ad ROI "
            "needs at least 120",
            "No media model could be fitted for this store yet (only 100 days of history",
        ),
    ],
)
def test_channel_advice_says_why_there_is_no_incremental_roas(con, status, message, expected):
    from storepulse.publish.data import load_store_data
    from storepulse.publish.media import channel_section

    roi = con.sql("select * from marts.channel_roi").pl()
    replace_table(
        con, "marts.channel_roi", roi.with_columns(pl.lit(None).alias("incremental_roas"))
    )
    data = load_store_data(con, STORE_A, AS_OF)
    data.status = pl.DataFrame(
        {"step": ["ad_roi"], "status": [status], "method": ["none"], "message": [message]}
    )
    advice = channel_section(data).advice
    assert advice.startswith("Incremental ROAS is not available yet") and expected in advice


def test_publishing_the_same_data_twice_gives_the_same_bytes(con, tmp_path):
    """Ties in a report's sorted tables break the same way every run (rows are read in
    a fixed order, sorts are stable): the export set is reproducible."""
    from datetime import UTC, datetime

    at = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)
    first = publish_store(con, STORE_A, AS_OF, tmp_path / "one", generated_at=at)
    # The same rows stored in another physical order must not change anything.
    for table in ("marts.reorder_plan", "scores.demand_forecast", "marts.channel_roi"):
        shuffled = con.sql(f"select * from {table}").pl().sample(fraction=1.0, shuffle=True, seed=3)
        replace_table(con, table, shuffled)
    second = publish_store(con, STORE_A, AS_OF, tmp_path / "two", generated_at=at)
    files = sorted(p.relative_to(first.path) for p in first.path.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(second.path) for p in second.path.rglob("*") if p.is_file()
    )
    for name in files:
        assert (first.path / name).read_bytes() == (second.path / name).read_bytes(), name


@pytest.mark.parametrize("growth", [1.3, 0.7], ids=["grew", "fell"])
def test_kpi_advice_points_only_at_what_the_store_has(con, growth):
    """A store without ads gets no ad-spend card and no advice to move budget; one
    without a forecast is not sent to check the stock of top sellers; a figure that was
    zero in both 30-day windows says so instead of 'new'."""
    from storepulse.publish.data import load_store_data
    from storepulse.publish.report import kpi_section

    con.execute(
        "update marts.kpi_daily set new_customers = 0, gmv_usd = case when date >= ? "
        "then 200 * ? else 200 end",
        [AS_OF - timedelta(days=30), growth],
    )
    con.execute("delete from scores.demand_forecast where store_id = ?", [STORE_B])
    ads = kpi_section(load_store_data(con, STORE_A, AS_OF))
    plain = kpi_section(load_store_data(con, STORE_B, AS_OF))
    assert "Ad spend (30 days)" in ads.body and "Ad spend (30 days)" not in plain.body
    assert "none in either 30 days" in plain.body and ">new<" not in plain.body
    if growth < 1:
        assert "fell 30%" in ads.advice and "fell 30%" in plain.advice
        assert "move budget" in ads.advice and "move budget" not in plain.advice
    else:
        assert "grew 30%" in ads.advice and "grew 30%" in plain.advice
        assert "top sellers" in ads.advice and "top sellers" not in plain.advice


@pytest.mark.parametrize(
    ("consents", "expected"),
    [
        ([True, True], "Send the 2 customers on the win-back list"),
        ([True, False], "Send the 1 of the 2 customers who accept e-mail"),
        ([False, None], "None of the 2 customers on the win-back list can be e-mailed"),
    ],
)
def test_win_back_advice_counts_only_who_can_be_emailed(con, consents, expected):
    """An orders-only store has no e-mail consent: the advice says so rather than asking
    the merchant to e-mail a list nobody on it can receive."""
    from storepulse.publish.data import load_store_data
    from storepulse.publish.report import churn_section

    win_back = pl.DataFrame(
        {
            "customer_id": ["w1", "w2"],
            "accepts_email_marketing": consents,
            "predicted_clv_usd": [300.0, 100.0],
            "churn_probability": [0.9, 0.5],
            "segment": ["At Risk", "At Risk"],
        },
        schema_overrides={"accepts_email_marketing": pl.Boolean},
    )
    section = churn_section(
        load_store_data(con, STORE_A, AS_OF), win_back, {"win-back-high-value": win_back}
    )
    assert expected in section.advice
    assert "$320" in section.advice  # 300 x 0.9 + 100 x 0.5 at risk either way


def test_forecast_section_adds_expected_units_not_daily_medians(con):
    """A slow mover's daily p50 and p90 are 0, yet it sells about 5 units in 28 days: the
    report shows the sum of the daily expected units (and ranks by it), not 0 up to 0."""
    from storepulse.publish.data import load_store_data
    from storepulse.publish.report import forecast_section

    rows = [
        {"store_id": STORE_A, "sku": sku, "date": AS_OF + timedelta(days=d), "p10": 0.0,
         "p50": p50, "p90": p50, "expected_units": expected, "model_version": "v"}
        for sku, p50, expected in (("SLOW-BIKE", 0.0, 0.18), ("STEADY-CUP", 1.0, 0.9))
        for d in range(28)
    ]  # fmt: skip
    replace_table(con, "scores.demand_forecast", pl.DataFrame(rows))
    section = forecast_section(load_store_data(con, STORE_A, AS_OF))
    assert "STEADY-CUP is expected to sell the most (about 25 units" in section.advice
    assert "check the reorder alerts below" in section.advice  # the fixture has a plan
    con.execute("delete from marts.reorder_plan where store_id = ?", [STORE_A])
    section = forecast_section(load_store_data(con, STORE_A, AS_OF))
    assert "add inventory snapshots to get reorder alerts" in section.advice
    # 28 x 0.18 = 5.0 expected (the daily medians add up to 0), in a band of 2 to 8.
    assert (
        'SLOW-BIKE</td><td class="num">2</td><td class="num">5.0</td><td class="num">8<'
        in section.body
    )


def test_kpi_advice_says_when_a_store_stopped_sending_orders(con):
    """Orders until 60 days before as_of, then none: not 'the first month of data' but a
    feed that may have stopped, with the last order's day."""
    from storepulse.publish.data import load_store_data
    from storepulse.publish.report import kpi_section

    con.execute(
        "update marts.kpi_daily set orders = 0, gmv_usd = 0 where store_id = ? and date >= ?",
        [STORE_A, AS_OF - timedelta(days=60)],
    )
    advice = kpi_section(load_store_data(con, STORE_A, AS_OF)).advice
    last = AS_OF - timedelta(days=61)
    assert f"No orders in the last 60 days; the last was on {last:%d %b %Y}" in advice
    assert "first month" not in advice
