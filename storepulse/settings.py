"""The one place that reads the environment (README, "Environment").

Paths (DESIGN §2): everything under STOREPULSE_HOME (default ./.storepulse):
landing/, warehouse.duckdb, exports/, reports/, model_store/, dagster/ (DAGSTER_HOME).
Single paths can be overridden with STOREPULSE_LANDING_DIR, STOREPULSE_WAREHOUSE,
STOREPULSE_EXPORT_DIR, STOREPULSE_REPORT_DIR. The other variables each have one
reader below, with its default and its error message.
"""

from __future__ import annotations

import os
import re
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

    @property
    def lake(self) -> Path:
        """Per-store results of per-store runs, as Parquet (storepulse/lake.py)."""
        return self.home / "lake"

    def ensure(self) -> Paths:
        for path in (self.landing, self.exports, self.reports, self.model_store, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        install_dagster_yaml(self.dagster_home)
        return self


def dagster_yaml_source(env: dict[str, str] | None = None) -> Path:
    """STOREPULSE_DAGSTER_YAML: the instance config that DAGSTER_HOME gets (default the
    repo's dagster.yaml; a deployment names its own, e.g. deploy/celery/dagster.yaml)."""
    value = _env(env).get("STOREPULSE_DAGSTER_YAML", "")
    source = Path(value).resolve() if value else REPO_ROOT / "dagster.yaml"
    if not source.is_file():
        raise FileNotFoundError(f"STOREPULSE_DAGSTER_YAML={value}: no such file ({source})")
    return source


def install_dagster_yaml(dagster_home: Path) -> Path:
    """Copy the instance config (dagster_yaml_source) into DAGSTER_HOME, kept in step
    with it: a deployment's file is not replaced by the single-machine one."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    source = dagster_yaml_source()
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    return target


# Resource fields of pipelines.resources.StorepulseResource -> the variable behind each.
PATH_VARIABLES = {
    "home": "STOREPULSE_HOME",
    "landing_dir": "STOREPULSE_LANDING_DIR",
    "warehouse_path": "STOREPULSE_WAREHOUSE",
    "export_dir": "STOREPULSE_EXPORT_DIR",
    "report_dir": "STOREPULSE_REPORT_DIR",
}
DEFAULT_HOME = "./.storepulse"
DEFAULT_LOCK_WAIT_SECONDS = 900.0
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
DEFAULT_WEEKLY_CRON = "0 4 * * 0"
ALERT_WEBHOOK_VARIABLE = "STOREPULSE_ALERT_WEBHOOK"
# Test hook of the kill-and-rerun test: ingest writes this file inside its transaction
# and then sleeps, so the test can kill it there.
INGEST_PAUSE_VARIABLE = "STOREPULSE_INGEST_PAUSE_FILE"


def _env(env: dict[str, str] | None) -> dict[str, str] | os._Environ:
    return os.environ if env is None else env


def apply_defaults(env: dict[str, str] | None = None) -> None:
    """Set STOREPULSE_HOME (./.storepulse, absolute) and DAGSTER_HOME (its dagster/)
    when unset, so resources bound to them (dg.EnvVar) show real values."""
    env = _env(env)
    home = env.get("STOREPULSE_HOME") or str(Path(DEFAULT_HOME).resolve())
    env["STOREPULSE_HOME"] = home
    env.setdefault("DAGSTER_HOME", str(Path(home).resolve() / "dagster"))


def paths(overrides: dict[str, str] | None = None) -> Paths:
    """Paths from the environment, with some variables given explicitly."""
    return Paths.from_env({**os.environ, **(overrides or {})})


def path_overrides(env: dict[str, str] | None = None) -> dict[str, str]:
    """Resource field -> variable, for the path variables that are set."""
    env = _env(env)
    return {field: var for field, var in PATH_VARIABLES.items() if env.get(var)}


def as_of(env: dict[str, str] | None = None) -> date | None:
    """STOREPULSE_AS_OF as a date, or None (= latest order date + 1 day)."""
    return parse_as_of(_env(env).get("STOREPULSE_AS_OF"), "STOREPULSE_AS_OF")


def parse_as_of(value: str | None, what: str = "as_of") -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"{what}={value!r} is not a date; use YYYY-MM-DD, e.g. 2025-06-30"
        ) from exc


def _positive_int(name: str, env: dict[str, str] | None, example: int) -> int:
    value = _env(env).get(name, "")
    if not value:
        return max(1, os.cpu_count() or 1)
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name}={value!r} must be a whole number >= 1, e.g. {example}")
    return number


def publish_parallelism(env: dict[str, str] | None = None) -> int:
    """STOREPULSE_PUBLISH_PARALLELISM: per-store publish steps at once (default: cores)."""
    return _positive_int("STOREPULSE_PUBLISH_PARALLELISM", env, 2)


def ad_roi_jobs(env: dict[str, str] | None = None) -> int:
    """STOREPULSE_AD_ROI_JOBS: processes fitting stores' ad-ROI models (default: cores)."""
    return _positive_int("STOREPULSE_AD_ROI_JOBS", env, 2)


def lock_wait_seconds(env: dict[str, str] | None = None) -> float:
    """STOREPULSE_LOCK_WAIT_SECONDS: how long to wait for another process's lock."""
    value = _env(env).get("STOREPULSE_LOCK_WAIT_SECONDS", "")
    try:
        return float(value) if value else DEFAULT_LOCK_WAIT_SECONDS
    except ValueError as exc:
        raise ValueError(
            f"STOREPULSE_LOCK_WAIT_SECONDS={value!r} is not a number of seconds, e.g. 900"
        ) from exc


# DuckDB's own default is 80 % of the machine's memory, which it then uses: on a large
# landing that is most of the budget of everything else. Above this it spills to disk.
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"


def duckdb_memory_limit(env: dict[str, str] | None = None) -> str:
    """STOREPULSE_DUCKDB_MEMORY_LIMIT: DuckDB's memory_limit ('3GB', '512MB')."""
    value = (_env(env).get("STOREPULSE_DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, re.IGNORECASE):
        raise ValueError(
            f"STOREPULSE_DUCKDB_MEMORY_LIMIT={value!r} is not a size; write it like 3GB or 512MB"
        )
    return value


DEFAULT_MEMORY_BUDGET_SHARE = 0.75
_SIZE_UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget_bytes(env: dict[str, str] | None = None) -> int:
    """STOREPULSE_MEMORY_BUDGET: what one run may hold ('8GB', '75%'; default 75 % of
    this machine's RAM). Training lowers its sample to stay within it (storepulse.memory)."""
    value = (_env(env).get("STOREPULSE_MEMORY_BUDGET") or "").strip().upper()
    if not value:
        return int(DEFAULT_MEMORY_BUDGET_SHARE * physical_memory_bytes())
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", value):
        return int(float(match.group(1)) / 100 * physical_memory_bytes())
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KIB|MIB|GIB|TIB)", value):
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(
        f"STOREPULSE_MEMORY_BUDGET={value!r} is not a size or a share; write it like 8GB or 75%"
    )


DEFAULT_MALLOC_ARENAS = 2


def malloc_arena_max(env: dict[str, str] | None = None) -> int | None:
    """The glibc malloc arenas the CLI caps the process at (storepulse.memory), default 2;
    None when MALLOC_ARENA_MAX is set (glibc has applied it itself)."""
    return None if _env(env).get("MALLOC_ARENA_MAX") else DEFAULT_MALLOC_ARENAS


def duckdb_threads(env: dict[str, str] | None = None) -> int | None:
    """STOREPULSE_DUCKDB_THREADS: DuckDB's threads per connection (unset: every core).
    Set it to cores / runs when several per-store runs share a machine."""
    value = (_env(env).get("STOREPULSE_DUCKDB_THREADS") or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"STOREPULSE_DUCKDB_THREADS={value!r} must be a whole number >= 1")
    return int(value)


def duckdb_temp_directory(env: dict[str, str] | None = None) -> Path:
    """STOREPULSE_DUCKDB_TEMP_DIR: where DuckDB spills (default STOREPULSE_HOME/tmp/duckdb)."""
    env = _env(env)
    value = env.get("STOREPULSE_DUCKDB_TEMP_DIR")
    if value:
        return Path(value).resolve()
    return Paths.from_env(dict(env)).home / "tmp" / "duckdb"


def nightly_cron(env: dict[str, str] | None = None) -> str:
    return _env(env).get("STOREPULSE_NIGHTLY_CRON") or DEFAULT_NIGHTLY_CRON


def weekly_cron(env: dict[str, str] | None = None) -> str:
    return _env(env).get("STOREPULSE_WEEKLY_CRON") or DEFAULT_WEEKLY_CRON


def alert_webhook_url(env: dict[str, str] | None = None) -> str | None:
    return _env(env).get(ALERT_WEBHOOK_VARIABLE) or None


def ingest_pause_file(env: dict[str, str] | None = None) -> str | None:
    return _env(env).get(INGEST_PAUSE_VARIABLE) or None
