"""A temporary STOREPULSE_HOME with a landing folder ingested (for module fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

PATH_VARIABLES = ("STOREPULSE_LANDING_DIR", "STOREPULSE_WAREHOUSE", "STOREPULSE_EXPORT_DIR",
                  "STOREPULSE_REPORT_DIR", "STOREPULSE_AS_OF")  # fmt: skip


def ingested_home(landing: Path, root: Path, patch: pytest.MonkeyPatch):
    """A STOREPULSE_HOME at `root` (the environment pointed at it through `patch`) with
    `landing` copied in (without _truth/) and ingested. Returns its Paths."""
    import shutil

    from storepulse.ingest import ingest_landing
    from storepulse.settings import Paths
    from storepulse.warehouse import Warehouse

    patch.setenv("STOREPULSE_HOME", str(root))
    patch.setenv("DAGSTER_HOME", str(root / "dagster"))
    for var in PATH_VARIABLES:
        patch.delenv(var, raising=False)
    paths = Paths.from_env().ensure()
    shutil.copytree(landing, paths.landing, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("_truth"))  # fmt: skip
    with Warehouse(paths.warehouse).writer() as con:
        ingest_landing(con, paths.landing)
    return paths
