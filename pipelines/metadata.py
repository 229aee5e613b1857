"""Materialization metadata helpers: previews, plots, metrics worth opening in the UI."""

from __future__ import annotations

import base64
import io
import json
from datetime import date

import dagster as dg
import polars as pl


def preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """A markdown table of the first rows."""
    if frame.is_empty():
        return dg.MetadataValue.md("_(no rows)_")
    head = frame.head(rows)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def pyplot():
    """matplotlib.pyplot on the Agg backend: the figures become metadata, never windows
    (imported on first use: most runs draw nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(fig) -> dg.MetadataValue:
    """A matplotlib figure as a base64 PNG inside markdown (renders in the UI)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{encoded})")


def metrics(values: dict) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(values, default=str)))


def table_metadata(rows: int, as_of: date) -> dict:
    """What the result of an asset that writes a table shows first: the rows written
    (Dagster's row count) and the as_of of the data."""
    return {"dagster/row_count": rows, "as_of": as_of.isoformat()}


OWNER = "team:analytics"
