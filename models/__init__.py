"""Pure analytics and ML: polars in, polars/dataclasses out. No Dagster, no I/O."""
