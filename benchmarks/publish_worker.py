"""Publish a slice of the stores with a read-only warehouse connection (one process).

Used by the `publish_scaling` bench stage: the per-store work is what would run in
parallel past one machine (docs/scaling.md), so it is timed with 1 and 2 processes.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from storepulse.publish import publish_store, store_ids
from storepulse.warehouse import Warehouse


def slice_arguments(out_flag: str) -> argparse.Namespace:
    """A worker's arguments: the warehouse, where to write, as_of, and its slice of the
    stores (every `parts`-th store from `part`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument(out_flag, type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    return parser.parse_args()


def main() -> int:
    args = slice_arguments("--out")
    with Warehouse(args.warehouse).reader() as con:
        for store_id in store_ids(con)[args.part :: args.parts]:
            publish_store(con, store_id, args.as_of, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
