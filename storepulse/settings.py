"""Where things live. One place reads the STOREPULSE_* environment variables.

Defaults (DESIGN §2): everything under STOREPULSE_HOME (default ./.storepulse):
landing/, warehouse.duckdb, exports/, reports/, model_store/, dagster/ (DAGSTER_HOME).
Single paths can be overridden with STOREPULSE_LANDING_DIR, STOREPULSE_WAREHOUSE,
STOREPULSE_EXPORT_DIR, STOREPULSE_REPORT_DIR.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = REPO_ROOT / "sql"


@dataclass(frozen=True)
class Paths:
    home: Path
    landing: Path
    warehouse: Path
    exports: Path
    reports: Path
    model_store: Path
    dagster_home: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("STOREPULSE_HOME") or "./.storepulse").resolve()

        def pick(var: str, default: Path) -> Path:
            value = env.get(var)
            return Path(value).resolve() if value else default

        return cls(
            home=home,
            landing=pick("STOREPULSE_LANDING_DIR", home / "landing"),
            warehouse=pick("STOREPULSE_WAREHOUSE", home / "warehouse.duckdb"),
            exports=pick("STOREPULSE_EXPORT_DIR", home / "exports"),
            reports=pick("STOREPULSE_REPORT_DIR", home / "reports"),
            model_store=home / "model_store",
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").resolve(),
        )

    def ensure(self) -> Paths:
        for path in (self.landing, self.exports, self.reports, self.model_store, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        install_dagster_yaml(self.dagster_home)
        return self


def install_dagster_yaml(dagster_home: Path) -> Path:
    """Copy the repo's dagster.yaml into DAGSTER_HOME (kept in step with the repo)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    return target


def as_of_from_env(env: dict[str, str] | None = None) -> date | None:
    """STOREPULSE_AS_OF as a date, or None (= latest order date + 1 day)."""
    value = (os.environ if env is None else env).get("STOREPULSE_AS_OF")
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"STOREPULSE_AS_OF={value!r} is not a date; use YYYY-MM-DD, e.g. 2025-06-30"
        ) from exc
