"""A temporary STOREPULSE_HOME with a landing folder ingested (for module fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

PATH_VARIABLES = ("STOREPULSE_LANDING_DIR", "STOREPULSE_WAREHOUSE", "STOREPULSE_EXPORT_DIR",
                  "STOREPULSE_REPORT_DIR", "STOREPULSE_AS_OF")  # fmt: skip


def copy_warehouse(built: Path, to: Path) -> Path:
    """A private copy at `to` of a warehouse file built once (conftest.tiny_warehouse)."""
    import shutil

    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, to)
    return to


def ingested_home(
    landing: Path, root: Path, patch: pytest.MonkeyPatch, warehouse: Path | None = None
):
    """A STOREPULSE_HOME at `root` (the environment pointed at it through `patch`) with
    `landing` copied in (without _truth/) and ingested, or, given `warehouse` (the
    same landing already ingested: conftest.tiny_warehouse), a copy of that. Returns
    its Paths."""
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
    if warehouse is not None:
        copy_warehouse(warehouse, paths.warehouse)
        return paths
    with Warehouse(paths.warehouse).writer() as con:
        ingest_landing(con, paths.landing)
    return paths
