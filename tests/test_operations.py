"""Sensors and alerts: the landing sensor's cursor, failure alerts end to end."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg

from pipelines.sensors import landing_folder_sensor
from storepulse.alerts import drain_alerts, raise_alert
from storepulse.settings import Paths
from storepulse.warehouse import Warehouse, query


def _evaluate(cursor=None):
    context = dg.build_sensor_context(cursor=cursor)
    result = landing_folder_sensor(context)
    return result, context.cursor


def test_landing_sensor_requests_a_run_only_for_new_or_changed_files(sp_home):
    landing = Paths.from_env().ensure().landing
    result, cursor = _evaluate()
    assert isinstance(result, dg.SkipReason)

    (landing / "shop-a").mkdir()
    (landing / "shop-a" / "orders.csv").write_text(
        "order_id,email,created_at,total\n1,a@x.io,2025-01-01,10\n"
    )
    (landing / "_truth").mkdir()
    (landing / "_truth" / "customers.csv").write_text("ignored\n")
    result, cursor = _evaluate(cursor)
    assert isinstance(result, dg.RunRequest)
    assert json.loads(cursor).keys() == {"shop-a/orders.csv"}, (
        "folders starting with _ are never read"
    )

    again, cursor_again = _evaluate(cursor)
    assert isinstance(again, dg.SkipReason)

    (landing / "shop-a" / "orders.csv").write_text(
        "order_id,email,created_at,total\n1,a@x.io,2025-01-01,12.5\n"
    )
    changed, _ = _evaluate(cursor_again)
    assert isinstance(changed, dg.RunRequest)
    assert changed.run_key != result.run_key


def test_failure_alert_reaches_webhook_spool_and_ops_alerts(sp_home, monkeypatch):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            return

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    monkeypatch.setenv("STOREPULSE_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    paths = Paths.from_env().ensure()

    raise_alert(
        paths.home, run_id="r1", job_name="nightly_scoring", message="step kpi_daily failed"
    )
    thread.join(timeout=10)
    server.server_close()
    assert received and received[0]["run_id"] == "r1"
    assert "nightly_scoring failed" in received[0]["text"]

    with Warehouse(paths.warehouse).writer() as con:
        assert drain_alerts(con, paths.home) == 1
        assert drain_alerts(con, paths.home) == 0, "a drained alert is not copied twice"
        alerts = query(con, "select run_id, job_name, message from ops.alerts")
    assert alerts.rows() == [("r1", "nightly_scoring", "step kpi_daily failed")]


def test_alert_is_kept_when_the_webhook_is_down(sp_home, monkeypatch):
    monkeypatch.setenv("STOREPULSE_ALERT_WEBHOOK", "http://127.0.0.1:9/unreachable")
    paths = Paths.from_env().ensure()
    raise_alert(paths.home, run_id="r2", job_name="ingest", message="boom")
    with Warehouse(paths.warehouse).writer() as con:
        assert drain_alerts(con, paths.home) == 1


def test_nightly_success_fans_out_one_publish_run_per_store(sp_home):
    from pipelines.definitions import defs
    from pipelines.sensors import publish_after_nightly_sensor

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("stores", ["luma-home-de", "nova-gadgets-us"])
    nightly = defs.resolve_job_def("nightly_scoring")
    run = instance.create_run_for_job(
        nightly, run_config={"resources": {"run_settings": {"config": {"as_of": "2026-06-01"}}}}
    )
    event = dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name="nightly_scoring"
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="publish_after_nightly_sensor",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
    )
    requests = publish_after_nightly_sensor(context)
    assert sorted(r.partition_key for r in requests) == ["luma-home-de", "nova-gadgets-us"]
    assert len({r.run_key for r in requests}) == 2
    # The publish runs use the nightly run's as_of, so a replay publishes the replayed day.
    assert all(
        r.run_config["resources"]["run_settings"]["config"]["as_of"] == "2026-06-01"
        for r in requests
    )
