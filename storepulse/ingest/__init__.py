"""Ingestion: landing files of any real layout -> raw -> typed staging tables.

No Dagster here; `pipelines/assets/ingest.py` calls `ingest_landing`.

How it works (one transaction per call):

1. `discover` lists every file under the landing folder, skipping any path part
   that starts with '_' or '.' (`_truth/` is the generator's answer key).
2. Files already recorded in `ops.ingested_files` with the same path and sha256
   are skipped; the same content under another name is recorded as
   `duplicate_file` and not read again.
3. `readers.read_landed_file` detects encoding (UTF-8, BOM, UTF-16, cp1252,
   latin-1), gzip, Parquet, the delimiter and the header line (title lines above
   it are skipped); `layouts.detect_layout` recognises the header as a Shopify,
   Meta, Google Ads or TikTok export or one of the ten canonical kinds (with
   header aliases). Unusable files are recorded as `failed` with the reason.
   Plain canonical CSV (UTF-8, no quotes, nothing to repair: `direct.direct_plan`)
   is read by DuckDB straight into raw instead, with the same rows and row numbers;
   a file whose result cannot be vouched for goes through the general reader.
4. Rows go to `raw.<kind>` as strings, with source_file, file_sha256, file_seq
   (ingestion order), row_number (1 = first data row under the header, as a
   spreadsheet user counts records) and ingested_at. Raw is append-only.
5. `staging.rebuild_staging` rebuilds all ten staging tables from raw in SQL:
   typing, validation (first failed check = the quarantine reason), USD
   conversion with the nearest earlier rate, versions (the latest file that has
   an order wins, so a re-export with a refund updates it) and duplicates.
6. `quarantine.rows` gets every unusable row with an actionable reason and the
   original record; `ops.ingested_files` gets per-file counts with
   rows_read = rows_staged + rows_duplicate + rows_quarantined.
"""

from storepulse.ingest.channels import CHANNELS, channel_from_utm
from storepulse.ingest.engine import FileResult, IngestReport, detect_kind, ingest_landing
from storepulse.ingest.kinds import KINDS, STAGING_SCHEMAS
from storepulse.ingest.normalise import (
    email_sha256,
    normalise_email,
    normalise_phone,
    safe_store_id,
)

__all__ = [
    "CHANNELS",
    "KINDS",
    "STAGING_SCHEMAS",
    "FileResult",
    "IngestReport",
    "channel_from_utm",
    "detect_kind",
    "email_sha256",
    "ingest_landing",
    "normalise_email",
    "normalise_phone",
    "safe_store_id",
]
