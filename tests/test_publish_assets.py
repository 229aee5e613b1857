"""Publish assets in Dagster: partitions per store, the export set, history, checks."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest
from test_publish_fixtures import AS_OF, STORE_A, STORE_B, build_warehouse

from pipelines.assets import ingest, marts, staging
from pipelines.assets import publish as publish_assets
from pipelines.partitions import STORES, sync_store_partitions
from pipelines.resources import RunSettings, StorepulseResource
from storepulse.privacy import request_deletion
from storepulse.settings import Paths
from storepulse.warehouse import scalar


@pytest.fixture
def home(sp_home):
    paths = Paths.from_env().ensure()
    con = duckdb.connect(str(paths.warehouse))
    build_warehouse(con)
    request_deletion(con, STORE_A, email="carol@example.com")
    con.close()
    return paths


def resources():
    return {
        "storepulse": StorepulseResource(),
        "run_settings": RunSettings(as_of=AS_OF.isoformat()),
    }


def test_sync_store_partitions_adds_new_valid_ids_once():
    instance = dg.DagsterInstance.ephemeral()
    assert sync_store_partitions(instance, [STORE_B, STORE_A, "../x"]) == [
        STORE_A,
        STORE_B,
    ]
    assert sync_store_partitions(instance, [STORE_A, "store-c"]) == ["store-c"]
    assert sorted(instance.get_dynamic_partitions("stores")) == [STORE_A, STORE_B, "store-c"]


def test_privacy_asset_erases_and_registers_store_partitions(home):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [staging.privacy_requests_applied], resources=resources(), instance=instance
    )
    assert result.success
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == staging.PRIVACY_APPLIED
    ]
    meta = event.materialization.metadata
    assert meta["requests"].value == 1
    assert meta["rows_deleted"].value > 0
    assert sorted(instance.get_dynamic_partitions("stores")) == [STORE_A, STORE_B]
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert scalar(con, "select count(*) from staging.customers where email like 'carol%'") == 0


def test_store_exports_partition_publishes_one_store_and_passes_its_checks(home):
    instance = dg.DagsterInstance.ephemeral()
    sync_store_partitions(instance, [STORE_A, STORE_B])
    result = dg.materialize(
        [publish_assets.store_exports, publish_assets.store_exports_fresh],
        resources=resources(),
        instance=instance,
        partition_key=STORE_A,
        selection=[publish_assets.STORE_EXPORTS],
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    # The freshness check runs in the same one-store run and looks at that store only.
    assert checks == {"export_set_complete": True, "store_exports_fresh": True}
    latest = home.exports / STORE_A / "latest"
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["as_of"] == AS_OF.isoformat()
    assert not (home.exports / STORE_B).exists()  # one partition, one store
    # The report is also copied to STOREPULSE_REPORT_DIR, identical to the set's.
    assert (home.reports / f"{STORE_A}.html").read_bytes() == (latest / "report.html").read_bytes()
    # Freshness: store-a is fresh, store-b has never been published.
    fresh = dg.materialize(
        [publish_assets.store_exports, publish_assets.store_exports_fresh],
        resources=resources(),
        instance=instance,
        selection=dg.AssetSelection.checks(publish_assets.store_exports_fresh),
    )
    evaluation = fresh.get_asset_check_evaluations()[0]
    assert evaluation.passed is False
    assert set(evaluation.metadata["problems"].value) == {STORE_B}


def test_export_history_asset_and_its_freshness_check(home):
    result = dg.materialize(
        [publish_assets.export_history, publish_assets.export_history_fresh],
        resources=resources(),
    )
    assert result.success
    assert (home.exports / "_history" / AS_OF.isoformat() / "scores.churn.parquet").exists()
    evaluation = result.get_asset_check_evaluations()[0]
    assert evaluation.check_name == "export_history_fresh" and evaluation.passed


def test_publish_module_loads_beside_the_other_asset_modules():
    modules = [ingest, staging, marts, publish_assets]
    defs = dg.Definitions(
        assets=dg.load_assets_from_modules(modules),
        asset_checks=dg.load_asset_checks_from_modules(modules),
        resources=resources(),
    )
    graph = defs.resolve_asset_graph()
    assert graph.get(publish_assets.STORE_EXPORTS).group_name == "publish"
    assert graph.get(publish_assets.EXPORT_HISTORY).group_name == "publish"
    assert graph.get(staging.PRIVACY_APPLIED).group_name == "staging"
    assert staging.PRIVACY_APPLIED in graph.get(publish_assets.STORE_EXPORTS).parent_keys
    assert graph.get(publish_assets.STORE_EXPORTS).partitions_def == STORES


def test_store_exports_only_reads_so_it_runs_while_another_process_reads(home, monkeypatch):
    """The per-store publish step opens the warehouse read-only: it succeeds while
    another process holds a read-only connection, which a writer could not share
    (with no lock wait allowed, a writer would fail at once)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import time, duckdb
        con = duckdb.connect({str(home.warehouse)!r}, read_only=True)
        print("holding", flush=True)
        time.sleep(60)
        """
    )
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "holding"
        monkeypatch.setenv("STOREPULSE_LOCK_WAIT_SECONDS", "0")
        with pytest.raises(duckdb.IOException, match="lock"), StorepulseResource().writer():
            pass
        instance = dg.DagsterInstance.ephemeral()
        sync_store_partitions(instance, [STORE_A])
        result = dg.materialize(
            [publish_assets.store_exports],
            resources=resources(),
            instance=instance,
            partition_key=STORE_A,
        )
        assert result.success
    finally:
        reader.kill()
        reader.wait(timeout=30)
