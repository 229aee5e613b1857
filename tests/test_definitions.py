"""The code location loads and exposes the system DESIGN §7 describes."""

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.resources import READ_POOL, WRITE_POOL, set_pool_limits
from storepulse.ingest.kinds import KINDS, STAGING_SCHEMAS
from storepulse.quality import SUITES
from storepulse.settings import publish_parallelism

EXPECTED_JOBS = {"ingest", "nightly_scoring", "publish_store", "weekly_training"}


def test_jobs_schedules_and_sensors_exist():
    repo = defs.get_repository_def()
    assert EXPECTED_JOBS <= {job.name for job in repo.get_all_jobs()}
    schedules = {s.name: s for s in repo.schedule_defs}
    assert schedules["nightly_scoring_schedule"].cron_schedule == "0 2 * * *"
    assert schedules["nightly_scoring_schedule"].execution_timezone == "UTC"
    assert schedules["nightly_scoring_schedule"].job_name == "nightly_scoring"
    assert schedules["weekly_training_schedule"].job_name == "weekly_training"
    sensors = {s.name for s in repo.sensor_defs}
    assert {
        "landing_folder_sensor",
        "run_failure_alert_sensor",
        "publish_after_nightly_sensor",
    } <= sensors


def test_assets_are_grouped_described_and_owned():
    graph = defs.resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {
        "ingest",
        "staging",
        "marts",
        "segments",
        "churn",
        "demand",
        "ad_roi",
        "publish",
    } <= groups
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        assert node.description, f"{key.to_user_string()} has no description"
        assert node.owners, f"{key.to_user_string()} has no owner"
        assert node.kinds, f"{key.to_user_string()} has no kinds"


def test_every_staging_table_has_a_blocking_gx_suite_on_its_own_columns():
    graph = defs.resolve_asset_graph()
    checks = {(c.asset_key.to_user_string(), c.name): c for c in graph.asset_check_keys}
    assert len(KINDS) == 13
    for kind in KINDS:
        assert (f"staging/{kind}", f"gx_{kind}") in checks
        suite = SUITES[kind]
        assert any(blocking for *_, blocking in suite), f"{kind}: nothing in its suite blocks"
        for _, kwargs, _ in suite:
            named = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B"),
                     *kwargs.get("column_list", [])]  # fmt: skip
            unknown = {c for c in named if c} - set(STAGING_SCHEMAS[kind])
            assert not unknown, f"{kind}: the suite checks columns staging lacks: {unknown}"


def test_every_asset_is_defined_here():
    graph = defs.resolve_asset_graph()
    external = [
        k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).is_materializable
    ]
    assert not external, f"assets referenced but not defined: {external}"


def test_writers_share_the_duckdb_pool_and_only_publishing_reads_beside_them():
    graph = defs.resolve_asset_graph()
    read_only = {"store_exports", "lake/order_risk", "lake/customer_rfm", "lake/clv", "lake/churn"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        expected = {READ_POOL} if key.to_user_string() in read_only else {WRITE_POOL}
        assert node.pools == expected, f"{key.to_user_string()}: pools {node.pools}"


def test_read_pool_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("STOREPULSE_PUBLISH_PARALLELISM", "3")
    with dg.instance_for_test() as instance:
        assert set_pool_limits(instance) == {READ_POOL: 3}
        assert instance.event_log_storage.get_concurrency_info(READ_POOL).slot_count == 3
    monkeypatch.setenv("STOREPULSE_PUBLISH_PARALLELISM", "zero")
    with pytest.raises(ValueError, match="STOREPULSE_PUBLISH_PARALLELISM"):
        publish_parallelism()


def test_nightly_job_leaves_training_to_the_weekly_job():
    job = defs.resolve_job_def("nightly_scoring")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "marts/kpi_daily" in keys
    assert not any(k.startswith("models/") for k in keys)
    weekly = defs.resolve_job_def("weekly_training").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in weekly} == {k for k in keys_of_models()}


def keys_of_models() -> set[str]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in graph.get_all_asset_keys() if k.path[0] == "models"}
