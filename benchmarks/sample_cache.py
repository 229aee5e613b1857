"""Sample data for the evaluation benchmarks, generated and ingested once per scale and
seed under a cache folder and reused by later runs."""

from __future__ import annotations

import shutil
from pathlib import Path


def generate_and_ingest(seed: int, cache: Path, scale: str, truth_file: str) -> tuple[Path, Path]:
    """(landing folder with _truth/, warehouse file) of `scale` and `seed` under `cache`.

    The landing folder is generated again when `_truth/<truth_file>` is missing (an
    older generator's cache, or a run killed while generating); the whole seed folder
    goes then, so no warehouse outlives the data it was ingested from. Ingest reads
    the landing folder as the pipeline sees it (`_truth/` is never read) into a
    partial file, renamed once complete."""
    from storepulse.ingest import ingest_landing
    from storepulse.sample_data import generate
    from storepulse.warehouse import Warehouse

    root = cache / f"{scale}-seed{seed}"
    landing = root / "landing"
    if not (landing / "_truth" / truth_file).exists():
        if root.exists():
            shutil.rmtree(root)
        generate(landing, scale=scale, seed=seed, progress=False)
    warehouse = root / "ingest.duckdb"
    if not warehouse.exists():
        partial = root / "ingest.partial.duckdb"
        partial.unlink(missing_ok=True)
        with Warehouse(partial).writer() as con:
            ingest_landing(con, landing)
        partial.rename(warehouse)
    return landing, warehouse
