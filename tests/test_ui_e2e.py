"""End to end through the UI: `make ui`, the asset graph over GraphQL, a Launchpad-style
launch of nightly_scoring (an asset selection of it), success, and a clean stop of the
whole process group."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.assets.staging import STAGING_KINDS

REPO = Path(__file__).resolve().parents[1]
# The ingest multi-asset is not subsettable: all of it, plus the mart.
SLICE = [
    "raw/landing_files",
    *(f"staging/{kind}" for kind in STAGING_KINDS),
    "ops/privacy_requests_applied",
    "marts/kpi_daily",
]

ASSET_GRAPH_QUERY = "{ assetNodes { assetKey { path } groupName } }"
LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { ... on RepositoryLocation { repositories { name } }
                          ... on PythonError { message } } } } } }
"""
LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""
RUN_STATUS_QUERY = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload.get("errors")
    return payload["data"]


def _wait_for(predicate, timeout: float, what: str, server=None):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise AssertionError(
                f"`make ui` exited with {server.returncode} while waiting for {what}"
            )
        try:
            value = predicate()
            if value:
                return value
        except OSError as exc:  # server not up yet
            last_error = exc
        time.sleep(0.5)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


@pytest.mark.slow
def test_make_ui_graph_launch_and_stop(tiny_sample, sp_home, tmp_path):
    import shutil

    landing = sp_home / "landing"
    shutil.copytree(tiny_sample, landing)
    port = _free_port()
    env = {
        **os.environ,
        "STOREPULSE_HOME": str(sp_home),
        "DAGSTER_HOME": str(sp_home / "dagster"),
        "DAGSTER_PORT": str(port),
    }
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        ["make", "-s", "ui"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status
                == 200
            ),
            180,
            "the webserver",
            server,
        )
        location = _wait_for(
            lambda: [
                e
                for e in _graphql(port, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
                if e["locationOrLoadError"] and "repositories" in e["locationOrLoadError"]
            ],
            120,
            "the code location to load",
            server,
        )[0]

        nodes = _graphql(port, ASSET_GRAPH_QUERY)["assetNodes"]
        groups = {n["groupName"] for n in nodes}
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"ingest", "staging", "marts"} <= groups
        assert {"staging/orders", "marts/kpi_daily"} <= keys

        params = {
            "selector": {
                "repositoryLocationName": location["name"],
                "repositoryName": location["locationOrLoadError"]["repositories"][0]["name"],
                "pipelineName": "nightly_scoring",
                # What an analyst picks in the graph: ingest, staging and the KPI mart
                # (the models' own runs are tested in-process: tests/test_thin_stores.py).
                "assetSelection": [{"path": key.split("/")} for key in SLICE],
            },
            "runConfigData": {},
            "mode": "default",
        }
        launched = _graphql(port, LAUNCH_MUTATION, {"params": params})["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        final = _wait_for(
            lambda: (
                (s := _graphql(port, RUN_STATUS_QUERY, {"id": run_id})["runOrError"]["status"])
                in ("SUCCESS", "FAILURE", "CANCELED")
                and s
            ),
            420,
            "nightly_scoring to finish",
            server,
        )
        assert final == "SUCCESS", (tmp_path / "ui.log").read_text()[-4000:]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
    assert server.poll() is not None, "the UI process group did not stop"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=3)
