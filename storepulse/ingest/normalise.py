"""Normalisers shared by ingest, privacy and publish: e-mails, phones, store ids.

Each Python function has a vectorised SQL twin (a DuckDB macro created by
`create_sql_macros`) so staging never loops over rows in Python; the tests check
that both give the same answers.
"""

from __future__ import annotations

import hashlib
import re

import duckdb

# ITU calling codes for the markets DTC merchants sell into most; a phone from any
# other country is kept as its digits (it already has to carry its code then).
CALLING_CODES: dict[str, str] = {
    "US": "1", "CA": "1", "PR": "1", "MX": "52", "BR": "55", "AR": "54", "CL": "56",
    "CO": "57", "PE": "51", "GB": "44", "UK": "44", "IE": "353", "FR": "33", "DE": "49",
    "AT": "43", "CH": "41", "NL": "31", "BE": "32", "LU": "352", "ES": "34", "PT": "351",
    "IT": "39", "DK": "45", "SE": "46", "NO": "47", "FI": "358", "IS": "354", "PL": "48",
    "CZ": "420", "SK": "421", "HU": "36", "RO": "40", "BG": "359", "GR": "30", "HR": "385",
    "SI": "386", "EE": "372", "LV": "371", "LT": "370", "TR": "90", "IL": "972",
    "AE": "971", "SA": "966", "QA": "974", "KW": "965", "BH": "973", "OM": "968", "EG": "20",
    "MA": "212", "NG": "234", "KE": "254", "ZA": "27", "IN": "91", "PK": "92", "BD": "880",
    "SG": "65", "MY": "60", "ID": "62", "TH": "66", "VN": "84", "PH": "63", "HK": "852",
    "TW": "886", "CN": "86", "JP": "81", "KR": "82", "AU": "61", "NZ": "64", "RU": "7",
    "UA": "380",
}  # fmt: skip

_STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NON_DIGITS = re.compile(r"\D")


def safe_store_id(value: object) -> str:
    """The store id itself if it is a slug (letters, digits, '-', '_'; max 64), else ValueError.

    Store ids become folder names and SQL values, so anything like '../x', 'a/b'
    or an empty string is refused rather than cleaned up silently.
    """
    text = "" if value is None else str(value).strip()
    if not _STORE_ID.match(text):
        raise ValueError(
            f"store id {text!r} is not valid: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return text


def normalise_email(value: str | None) -> str | None:
    """Trimmed, lower-cased e-mail; None for blanks."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def email_sha256(value: str | None) -> str | None:
    """SHA-256 hex of the normalised e-mail (what Meta/Google audiences expect)."""
    email = normalise_email(value)
    return hashlib.sha256(email.encode()).hexdigest() if email else None


def normalise_phone(value: str | None, country: str | None = None) -> str | None:
    """Digits only, with the country calling code, no '+' (E.164 without the plus).

    '+44 20 7946 0958' -> '442079460958'; '020 7946 0958' with country GB -> the same;
    '00 49 30 1234567' -> '49301234567'; '(415) 555-0100' with US -> '14155550100'.
    Without a known country, a number without '+'/'00' is kept as its digits.
    """
    if value is None:
        return None
    text = str(value).strip()
    digits = _NON_DIGITS.sub("", text)
    if not digits:
        return None
    if text.startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:] or None
    code = CALLING_CODES.get((country or "").strip().upper())
    if code is None:
        return digits
    if digits.startswith("0"):
        return code + digits.lstrip("0")
    # Already international when it starts with the code and is longer than a
    # national number (10 digits is the longest common national length).
    if digits.startswith(code) and len(digits) > 10:
        return digits
    return code + digits


def create_sql_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Temporary DuckDB macros used by the staging SQL (per connection)."""
    codes = ", ".join(f"('{country}', '{code}')" for country, code in CALLING_CODES.items())
    con.execute(
        f"""
        create or replace temp table sp_calling_codes as
            select * from (values {codes}) t(country, calling_code);
        create or replace temp macro sp_text(x) as nullif(trim(x), '');
        create or replace temp macro sp_email(x) as nullif(lower(trim(x)), '');
        -- Money and counts: plain numbers, '1,234.56' (thousands), '1.234,56' / '12,50'
        -- (decimal comma), an optional currency sign; '--' (Google's zero) is handled
        -- by the layout mappers, anything else non-numeric stays NULL for validation.
        -- Drops a currency sign or code and spaces between digit groups ('1 234,56').
        create or replace temp macro sp_clean_num(x) as regexp_replace(
            regexp_replace(trim(x), '^([$€£¥]|[A-Z]{{3}})\\s*|\\s*([$€£¥]|[A-Z]{{3}})$', ''),
            '(\\d)[\\s\u00a0\u202f'']+(\\d)', '\\1\\2', 'g');
        create or replace temp macro sp_num(x) as coalesce(try_cast(trim(x) as double), case
            when sp_text(x) is null then null
            when regexp_full_match(sp_clean_num(x), '[-+]?(\\d+\\.?\\d*|\\.\\d+)([eE][-+]?\\d+)?')
                then try_cast(sp_clean_num(x) as double)
            when regexp_full_match(sp_clean_num(x), '-?\\d{{1,3}}(,\\d{{3}})+(\\.\\d+)?')
                then try_cast(replace(sp_clean_num(x), ',', '') as double)
            when regexp_full_match(sp_clean_num(x), '-?(\\d{{1,3}}(\\.\\d{{3}})+|\\d+),\\d+')
                then try_cast(replace(replace(sp_clean_num(x), '.', ''), ',', '.') as double)
            end);
        -- Timestamps keep the wall-clock time the file states (the store's local time
        -- for Shopify's '2025-03-05 14:22:10 +0100'); the offset is dropped so the
        -- order date is the merchant's day.
        create or replace temp macro sp_ts(x) as coalesce(
            try_cast(trim(x) as timestamp),
            try_cast(regexp_replace(trim(x),
                '(\\d{{1,2}}:\\d{{2}}(:\\d{{2}}(\\.\\d+)?)?)\\s*(Z|UTC|GMT|[+-]\\d{{2}}:?\\d{{2}})$',
                '\\1') as timestamp),
            try_strptime(trim(x), ['%Y/%m/%d', '%Y/%m/%d %H:%M:%S', '%m/%d/%Y', '%m/%d/%Y %H:%M',
                '%m/%d/%Y %H:%M:%S', '%m/%d/%Y %I:%M %p', '%m/%d/%Y %I:%M:%S %p',
                '%d.%m.%Y', '%d.%m.%Y %H:%M', '%d.%m.%Y %H:%M:%S',
                '%b %d, %Y', '%d %b %Y', '%B %d, %Y', '%Y%m%d']));
        create or replace temp macro sp_date(x) as cast(sp_ts(x) as date);
        create or replace temp macro sp_bool(x) as case
            when lower(trim(x)) in ('true', 't', 'yes', 'y', '1', 'subscribed', 'opted_in',
                'granted', 'accepted') then true
            when lower(trim(x)) in ('false', 'f', 'no', 'n', '0', 'unsubscribed', 'not_subscribed',
                'denied', 'declined', 'opted_out', '') then false
            end;
        create or replace temp macro sp_phone_digits(x) as regexp_replace(coalesce(x, ''), '\\D', '', 'g');
        create or replace temp macro sp_phone(x, code) as case
            when sp_phone_digits(x) = '' then null
            when starts_with(trim(x), '+') then sp_phone_digits(x)
            when starts_with(sp_phone_digits(x), '00') then nullif(sp_phone_digits(x)[3:], '')
            when code is null then sp_phone_digits(x)
            when starts_with(sp_phone_digits(x), '0') then code || ltrim(sp_phone_digits(x), '0')
            when starts_with(sp_phone_digits(x), code) and length(sp_phone_digits(x)) > 10
                then sp_phone_digits(x)
            else code || sp_phone_digits(x)
            end;
        """
    )
