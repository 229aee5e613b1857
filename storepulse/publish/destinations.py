"""Merchant audience files: Klaviyo, Mailchimp and Meta Custom Audience rules.

Each builder takes one store's audience frame (one row per customer, see
`AUDIENCE_COLUMNS`) and returns the frame to write, already consent-filtered,
normalised and safe to open in a spreadsheet.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import polars as pl

from storepulse.ingest.normalise import normalise_email
from storepulse.publish.data import CUSTOMER_COLUMNS

# Columns the audience frame carries (built by storepulse.publish.data): the customer's
# contact details and consent from staging.customers, then the model columns.
AUDIENCE_COLUMNS = (
    "store_id",
    *CUSTOMER_COLUMNS,
    "segment",
    "lifecycle_stage",
    "risk_score",
    "risk_band",
    "predicted_clv_usd",
    "expected_next_order_date",
)

# Klaviyo custom profile properties storepulse fills (the same names in the segment
# lists and in customers.klaviyo_properties.csv, so one property never holds two meanings).
KLAVIYO_PROPERTIES = ("Predicted CLV", "Expected Date Of Next Order", "Churn Risk", "RFM Segment")
KLAVIYO_HEADER = (
    "Email",
    "First Name",
    "Last Name",
    "Phone Number",
    "Country",
    "RFM Segment",
    "Churn Risk",
    "Churn Risk Score",
    "Predicted CLV",
    "Expected Date Of Next Order",
)
KLAVIYO_PROPERTIES_HEADER = ("Email", *KLAVIYO_PROPERTIES)
# Klaviyo's churn risk is low / medium / high; a customer silent for over a year
# ("lapsed": outside the plausibly active customers risk_score ranks) is high there.
KLAVIYO_CHURN_RISK = {"low": "low", "medium": "medium", "high": "high", "lapsed": "high"}
MAILCHIMP_HEADER = ("Email Address", "First Name", "Last Name", "Tags")
META_HEADER = ("email", "phone", "fn", "ln", "country")

# Cells starting with these run as formulas in Excel / Sheets / LibreOffice (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Names people and exports use for countries, mapped to ISO-3166 alpha-2.
COUNTRY_ALIASES = {
    "UK": "GB",
    "GREAT BRITAIN": "GB",
    "UNITED KINGDOM": "GB",
    "ENGLAND": "GB",
    "SCOTLAND": "GB",
    "WALES": "GB",
    "NORTHERN IRELAND": "GB",
    "EL": "GR",
    "USA": "US",
    "UNITED STATES": "US",
    "UNITED STATES OF AMERICA": "US",
    "DEUTSCHLAND": "DE",
    "GERMANY": "DE",
    "FRANCE": "FR",
    "SPAIN": "ES",
    "ITALY": "IT",
    "NETHERLANDS": "NL",
    "CANADA": "CA",
    "AUSTRALIA": "AU",
    "BRAZIL": "BR",
    "BRASIL": "BR",
    "MEXICO": "MX",
    "JAPAN": "JP",
    "INDIA": "IN",
    "UNITED ARAB EMIRATES": "AE",
    "UAE": "AE",
    "SAUDI ARABIA": "SA",
}


def iso_country(value: object) -> str | None:
    """ISO-3166 alpha-2, upper-case ('uk' -> 'GB', 'United States' -> 'US'); None if unknown."""
    if value is None:
        return None
    text = str(value).strip().upper()
    if not text:
        return None
    text = COUNTRY_ALIASES.get(text, text)
    return text if re.fullmatch(r"[A-Z]{2}", text) else None


def neutralise_formula(value: object) -> object:
    """Prefix a single quote to text that a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_text_columns(frame: pl.DataFrame, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Neutralise every text column except `keep` (hashed hex needs no protection)."""
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String and name not in keep:
            col = pl.col(name)
            exprs.append(
                pl.when(col.str.starts_with("=") | col.str.contains(r"^[+\-@\t\r]"))
                .then(pl.lit("'") + col)
                .otherwise(col)
                .alias(name)
            )
    return frame.with_columns(exprs) if exprs else frame


def slugify(name: object, fallback: str = "segment") -> str:
    """File-name slug: "Can't Lose Them" -> 'cant-lose-them' (ASCII, lower-case, '-')."""
    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode()
    text = re.sub(r"['’`]", "", text.lower())
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:60].strip("-") or fallback


def sha256_hex(value: str | None) -> str | None:
    """SHA-256 hex digest of an already normalised value; None stays None (Meta: leave blank)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else None


def meta_normalise_name(value: object) -> str | None:
    """Meta fn/ln: trimmed and lower-cased (UTF-8); None for blanks."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def meta_normalise_phone(value: object) -> str | None:
    """Meta phone: digits only with the country code, no '+' (staging already adds the code)."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", str(value))
    return digits or None


def _email_consented(audience: pl.DataFrame) -> pl.DataFrame:
    # A customer without a customers row has a null consent: privacy by default, left out.
    return audience.filter(
        pl.col("accepts_email_marketing").fill_null(False) & pl.col("email").is_not_null()
    )


def _trimmed(series: pl.Series) -> pl.Series:
    # Whitespace around names is an export artefact; blanks become empty cells.
    text = series.cast(pl.String).str.strip_chars()
    return text.replace("", None)


def _country_column(frame: pl.DataFrame) -> pl.Series:
    return pl.Series(
        "country", [iso_country(v) for v in frame["country"].to_list()], dtype=pl.String
    )


def _klaviyo_properties(rows: pl.DataFrame) -> dict[str, pl.Series | list]:
    return {
        "RFM Segment": rows["segment"].cast(pl.String),
        "Churn Risk": rows["risk_band"]
        .cast(pl.String)
        .replace_strict(KLAVIYO_CHURN_RISK, default=None, return_dtype=pl.String),
        "Predicted CLV": rows["predicted_clv_usd"].cast(pl.Float64).round(2),
        # Klaviyo reads YYYY-MM-DD as a date property.
        "Expected Date Of Next Order": rows["expected_next_order_date"]
        .cast(pl.Date)
        .dt.strftime("%Y-%m-%d"),
    }


def klaviyo_frame(audience: pl.DataFrame) -> pl.DataFrame:
    """Klaviyo list import: `Email` first, then profile fields and storepulse's properties.

    Phone Number is digits with the country code and no '+': a leading '+' would be
    neutralised as a spreadsheet formula, and Klaviyo accepts the digits with the
    Country column. Churn Risk is low / medium / high (KLAVIYO_CHURN_RISK) and Churn
    Risk Score the 0-100 score (above 80: the top of the at-risk list); Predicted CLV
    the predicted net revenue of the next 365 days in USD (scores.clv).
    """
    rows = _email_consented(audience)
    properties = _klaviyo_properties(rows)
    out = pl.DataFrame(
        {
            "Email": [normalise_email(v) for v in rows["email"].to_list()],
            "First Name": _trimmed(rows["first_name"]),
            "Last Name": _trimmed(rows["last_name"]),
            "Phone Number": [meta_normalise_phone(v) for v in rows["phone"].to_list()],
            "Country": _country_column(rows),
            "RFM Segment": properties["RFM Segment"],
            "Churn Risk": properties["Churn Risk"],
            "Churn Risk Score": rows["risk_score"].cast(pl.Float64).round(0).cast(pl.Int64),
            "Predicted CLV": properties["Predicted CLV"],
            "Expected Date Of Next Order": properties["Expected Date Of Next Order"],
        },
        schema={
            "Email": pl.String,
            "First Name": pl.String,
            "Last Name": pl.String,
            "Phone Number": pl.String,
            "Country": pl.String,
            "RFM Segment": pl.String,
            "Churn Risk": pl.String,
            "Churn Risk Score": pl.Int64,
            "Predicted CLV": pl.Float64,
            "Expected Date Of Next Order": pl.String,
        },  # fmt: skip
    )
    return neutralise_text_columns(out)


def klaviyo_properties_frame(audience: pl.DataFrame) -> pl.DataFrame:
    """customers.klaviyo_properties.csv: `Email` and storepulse's profile properties for
    every customer with e-mail consent, for Klaviyo's "update profile properties"
    import (the same normalisation and formula neutralisation as the lists)."""
    rows = _email_consented(audience).filter(
        pl.col("predicted_clv_usd").is_not_null() | pl.col("risk_band").is_not_null()
    )
    out = pl.DataFrame(
        {
            "Email": [normalise_email(v) for v in rows["email"].to_list()],
            **_klaviyo_properties(rows),
        },  # fmt: skip
        schema={
            "Email": pl.String,
            "Predicted CLV": pl.Float64,
            "Expected Date Of Next Order": pl.String,
            "Churn Risk": pl.String,
            "RFM Segment": pl.String,
        },  # fmt: skip
    ).select(KLAVIYO_PROPERTIES_HEADER)
    return neutralise_text_columns(out.unique("Email", keep="first", maintain_order=True))


def mailchimp_tags(segment: object, lifecycle_stage: object, extra: str | None) -> str:
    """Comma-separated Mailchimp tags: the segment, the lifecycle stage, the list's own tag."""
    tags = [str(t).replace(",", " ").strip() for t in (segment, lifecycle_stage, extra) if t]
    return ",".join(dict.fromkeys(t for t in tags if t))


def mailchimp_frame(audience: pl.DataFrame, extra_tag: str | None = None) -> pl.DataFrame:
    """Mailchimp audience import: Email Address, First Name, Last Name, Tags."""
    rows = _email_consented(audience)
    tags = [
        mailchimp_tags(segment, stage, extra_tag)
        for segment, stage in zip(
            rows["segment"].to_list(), rows["lifecycle_stage"].to_list(), strict=True
        )
    ]
    out = pl.DataFrame(
        {
            "Email Address": [normalise_email(v) for v in rows["email"].to_list()],
            "First Name": _trimmed(rows["first_name"]),
            "Last Name": _trimmed(rows["last_name"]),
            "Tags": tags,
        },
        schema=dict.fromkeys(MAILCHIMP_HEADER, pl.String),
    )
    return neutralise_text_columns(out)


def meta_frame(audience: pl.DataFrame) -> pl.DataFrame:
    """Meta Custom Audience upload: every identifier normalised as Meta asks, then SHA-256.

    Only customers with ad-personalization consent and at least an e-mail or a phone.
    Blank identifiers stay blank (Meta ignores empty cells; a hash of '' would match no one).
    """
    rows = audience.filter(pl.col("ad_personalization_consent").fill_null(False))
    records = []
    for row in rows.iter_rows(named=True):
        email = normalise_email(row["email"])
        phone = meta_normalise_phone(row["phone"])
        if not email and not phone:
            continue
        country = iso_country(row["country"])
        records.append(
            {
                "email": sha256_hex(email),
                "phone": sha256_hex(phone),
                "fn": sha256_hex(meta_normalise_name(row["first_name"])),
                "ln": sha256_hex(meta_normalise_name(row["last_name"])),
                "country": sha256_hex(country.lower() if country else None),
            }
        )
    return pl.DataFrame(records, schema=dict.fromkeys(META_HEADER, pl.String))
