"""Normalisers (Python and their SQL twins), store ids, channels."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from storepulse.ingest import (
    CHANNELS,
    channel_from_utm,
    email_sha256,
    normalise_email,
    normalise_phone,
    safe_store_id,
)
from storepulse.ingest.channels import channel_sql
from storepulse.ingest.normalise import create_sql_macros


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect(":memory:")
    create_sql_macros(connection)
    return connection


def test_email_is_trimmed_and_lower_cased():
    assert normalise_email("  Anna.Schmidt@Example.DE ") == "anna.schmidt@example.de"
    assert normalise_email("   ") is None
    assert normalise_email(None) is None
    assert email_sha256(" A@B.com") == hashlib.sha256(b"a@b.com").hexdigest()


PHONES = [
    ("+44 20 7946 0958", "GB", "442079460958"),
    ("020 7946 0958", "GB", "442079460958"),
    ("0049 30 1234567", "DE", "49301234567"),
    ("(415) 555-0100", "US", "14155550100"),
    ("1-415-555-0100", "US", "14155550100"),
    ("415.555.0100", "us", "14155550100"),
    ("+1 (415) 555-0100", None, "14155550100"),
    ("030 1234567", "DE", "49301234567"),
    ("81 234 5678", "TH", "66812345678"),
    ("08 1234 5678", "TH", "66812345678"),
    ("98765 43210", "IN", "919876543210"),
    ("5550100", None, "5550100"),
    ("n/a", "US", None),
    ("", "US", None),
]


@pytest.mark.parametrize(("raw", "country", "expected"), PHONES)
def test_phone_digits_with_country_code_python_and_sql_agree(con, raw, country, expected):
    assert normalise_phone(raw, country) == expected
    sql = con.execute(
        "select sp_phone(?, (select calling_code from sp_calling_codes where country = upper(?)))",
        [raw, country],
    ).fetchone()[0]
    assert sql == expected


@pytest.mark.parametrize("good", ["shop_a", "luma-home-de", "S1", "a" * 64])
def test_safe_store_id_accepts_slugs(good):
    assert safe_store_id(f" {good} ") == good


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "", "   ", ".hidden", "-lead", "shop a", "a" * 65, "x;drop"]
)
def test_safe_store_id_refuses_anything_path_or_sql_like(bad):
    with pytest.raises(ValueError, match="is not valid"):
        safe_store_id(bad)


UTM = [
    ("facebook", "cpc", "meta"),
    ("Instagram", "paid_social", "meta"),
    ("google", "cpc", "google"),
    ("google", "organic", "organic"),
    ("youtube", "video", "google"),
    ("tiktok", "paid", "tiktok"),
    ("pinterest", "cpc", "pinterest"),
    ("klaviyo", "email", "email"),
    ("newsletter", None, "email"),
    ("impact", "affiliate", "affiliate"),
    ("instagram", "influencer", "influencer"),
    (None, None, "direct"),
    ("", "", "direct"),
    ("(direct)", "(none)", "direct"),
    ("bing", "organic", "organic"),
    ("some-blog", "banner", "other"),
    ("meta", None, "meta"),
]


@pytest.mark.parametrize(("source", "medium", "expected"), UTM)
def test_channel_from_utm_python_and_sql_agree(con, source, medium, expected):
    assert channel_from_utm(source, medium) == expected
    sql = f"select {channel_sql('s', 'm')} from (select ?::varchar as s, ?::varchar as m)"
    assert con.execute(sql, [source, medium]).fetchone()[0] == expected
    assert expected in CHANNELS


NUMBERS = [
    ("12", 12.0),
    (" 12.50 ", 12.5),
    ("1,234.56", 1234.56),
    ("1.234,56", 1234.56),
    ("12,50", 12.5),
    ("$5.00", 5.0),
    ("€ 7", 7.0),
    ("-3", -3.0),
    ("abc", None),
    ("", None),
    ("1,2,3", None),
]


@pytest.mark.parametrize(("raw", "expected"), NUMBERS)
def test_sql_number_parser(con, raw, expected):
    assert con.execute("select sp_num(?)", [raw]).fetchone()[0] == expected


TIMES = [
    ("2025-03-05 14:22:10 +0100", "2025-03-05 14:22:10"),
    ("2025-11-01T01:47:59-04:00", "2025-11-01 01:47:59"),
    ("2025-03-05T14:22:10Z", "2025-03-05 14:22:10"),
    ("2025-03-05", "2025-03-05 00:00:00"),
    ("03/05/2025", "2025-03-05 00:00:00"),
    ("05.03.2025 10:00", "2025-03-05 10:00:00"),
    ("Mar 5, 2025", "2025-03-05 00:00:00"),
    ("2025-02-30", None),
    ("yesterday", None),
]


@pytest.mark.parametrize(("raw", "expected"), TIMES)
def test_sql_timestamp_parser_keeps_wall_clock(con, raw, expected):
    value = con.execute("select strftime(sp_ts(?), '%Y-%m-%d %H:%M:%S')", [raw]).fetchone()[0]
    assert value == expected
