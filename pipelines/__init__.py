"""The storepulse Dagster code location (see definitions.py)."""
