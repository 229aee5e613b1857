"""Dagster's Celery executor, as deploy/celery/ and docs/deploy.md set it up (issue #18),
on this machine: Debian's redis-server as the broker on a free loopback port, two Celery
workers started with the documented `dagster-celery worker start` command, and one
score_store run of the Celery code location (pipelines.definitions_celery) for one store
of the tiny home. The run succeeds, its four steps ran in the workers' processes (not in
the run's), spread over both workers, and the lake files it wrote are the ones the
in-process run writes.

What it does not prove: other machines. Here the workers share DAGSTER_HOME (SQLite) and
STOREPULSE_HOME with the run through the local disk; a deployment shares them through
Postgres and shared storage (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from homes import ingested_home
from polars.testing import assert_frame_equal

from pipelines import definitions_celery
from pipelines.assets import churn, order_risk, segments
from pipelines.assets import lake as lake_assets
from pipelines.resources import READ_POOL, RunSettings, StorepulseResource
from storepulse.settings import REPO_ROOT, Paths

pytestmark = [
    pytest.mark.slow,
    # dagster-celery registers its execute_plan task again for every step it submits.
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "celery"
BIN = Path(sys.executable).parent
RESOURCES = {"storepulse": StorepulseResource(), "run_settings": RunSettings()}
# The tiny sample's stores have few recent orders: look back far enough to score some.
RUN_CONFIG = {"ops": {"lake__order_risk": {"config": {"lookback_days": 400}}}}
NIGHTLY_CONFIG = {"ops": {"scores__order_risk": {"config": {"lookback_days": 400}}}}
LAKE_ASSETS = [lake_assets.store_order_risk, lake_assets.store_customer_rfm,
               lake_assets.store_clv, lake_assets.store_churn]  # fmt: skip
WORKERS = ("storepulse-w1", "storepulse-w2")
START_SECONDS = 120  # a worker's start on a loaded 2-core machine (about 5 s when quiet)


def redis_server() -> str:
    path = shutil.which("redis-server")
    if not path:
        pytest.fail(
            "redis-server is missing: this test runs a real Celery broker. Install Debian's "
            "redis-server (`apt-get install -y redis-server`, or `make redis`)."
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """A child in its own process group (so the teardown stops its children too)."""
    with open(log, "wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)  # fmt: skip


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the child's process group (a Celery worker's warm shutdown), SIGKILL
    after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader (a pool child): make sure nothing is left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """redis-server on a free loopback port, nothing saved; its redis:// URL."""
    import redis

    server = redis_server()
    folder = tmp_path_factory.mktemp("redis")
    for _attempt in range(3):  # another process may take the free port first
        port = free_port()
        proc = start([server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
                      "--save", "", "--appendonly", "no"], folder / "redis.log")  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        if proc.poll() is None and time.monotonic() < deadline:
            break
        stop(proc)
    else:
        pytest.fail(f"redis-server did not start:\n{tail(folder / 'redis.log')}")
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        stop(proc)


@pytest.fixture(scope="module")
def deployment(broker, tmp_path_factory):
    """Two Celery workers started as docs/deploy.md says, and the environment they and the
    run share: STOREPULSE_HOME, DAGSTER_HOME (deploy/celery/dagster.yaml), the broker."""
    root = tmp_path_factory.mktemp("celery")
    home = root / "home"
    dagster_home = home / "dagster"
    patch = pytest.MonkeyPatch()
    # As on every machine of a deployment: `storepulse` installs this instance config in
    # DAGSTER_HOME (not the single-machine one).
    patch.setenv("STOREPULSE_DAGSTER_YAML", str(DEPLOY / "dagster.yaml"))
    Paths.from_env({"STOREPULSE_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}).ensure()
    # The instance's storage exists before the workers start (two workers creating one
    # SQLite storage at once collide on its schema migration), and the read pool has room
    # for the run's three independent steps at once: what `storepulse init-home` does
    # with STOREPULSE_PUBLISH_PARALLELISM=4.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.event_log_storage.set_concurrency_slots(READ_POOL, 4)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "STOREPULSE_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        definitions_celery.BROKER_ENV: f"{broker}/0",
        definitions_celery.BACKEND_ENV: f"{broker}/1",
    }
    workers = []
    try:
        for name in WORKERS:
            workers.append(start(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(DEPLOY / "celery.yaml"), "-i", "pipelines.definitions_celery",
                 "-n", name, "--",
                 # One step at a time per worker, so two steps at once take both workers;
                 # no start-up handshakes between the two (they only cost time here).
                 "--concurrency=1", "--without-mingle", "--without-gossip"],
                root / f"{name}.log", env,
            ))  # fmt: skip
        yield {"env": env, "home": home, "workers": workers, "logs": root}
    finally:
        for proc in workers:
            stop(proc)
        patch.undo()


def worker_pools(broker: str, logs: Path, workers: list[subprocess.Popen]) -> dict[str, set]:
    """Waits until both workers answer on the broker; {worker name: its pool's pids}."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    app = make_app(CeleryExecutor.for_cli(broker=f"{broker}/0", backend=f"{broker}/1").app_args())
    deadline = time.monotonic() + START_SECONDS
    pools: dict[str, set] = {}
    while time.monotonic() < deadline:
        for proc, name in zip(workers, WORKERS, strict=True):
            assert proc.poll() is None, f"worker {name} exited:\n{tail(logs / f'{name}.log')}"
        stats = app.control.inspect(timeout=1.0).stats() or {}
        pools = {host.split("@")[0]: set(info["pool"]["processes"]) for host, info in stats.items()}
        if set(WORKERS) <= set(pools):
            return pools
        time.sleep(0.5)
    logs_text = "\n".join(tail(logs / f"{name}.log") for name in WORKERS)
    pytest.fail(f"the workers did not answer in {START_SECONDS} s (saw {sorted(pools)}):\n"
                f"{logs_text}")  # fmt: skip


def lake_files(lake: Path) -> dict[str, pl.DataFrame]:
    return {
        str(path.relative_to(lake)): pl.read_parquet(path)
        for path in sorted(lake.rglob("*.parquet"))
    }


def test_a_store_scored_through_two_celery_workers(deployment, tiny_sample, broker):
    started = time.monotonic()
    patch = pytest.MonkeyPatch()
    try:
        # The workers start while the home is built: ingest, then the nightly steps,
        # which train and approve the CLV and churn versions the lake steps score with.
        paths = ingested_home(tiny_sample, deployment["home"], patch)
        dg.materialize(
            [order_risk.order_risk, segments.customer_rfm, churn.clv_scores, churn.churn_scores],
            resources=RESOURCES, run_config=NIGHTLY_CONFIG,
        )  # fmt: skip
        built = time.monotonic()
        for var in (definitions_celery.BROKER_ENV, definitions_celery.BACKEND_ENV):
            patch.setenv(var, deployment["env"][var])
        pools = worker_pools(broker, deployment["logs"], deployment["workers"])
        ready = time.monotonic()

        instance = dg.DagsterInstance.get()
        assert not instance.is_ephemeral
        installed = Path(instance.root_directory) / "dagster.yaml"
        assert installed.read_bytes() == (DEPLOY / "dagster.yaml").read_bytes()
        assert instance.event_log_storage.get_concurrency_info(READ_POOL).slot_count == 4
        store = _first_store(paths)
        instance.add_dynamic_partitions("stores", [store])
        job = ReconstructableRepository.for_module(
            "pipelines.definitions_celery", "defs", working_directory=str(ROOT)
        ).get_reconstructable_job("score_store")
        result = dg.execute_job(
            job, instance, run_config=RUN_CONFIG, tags={"dagster/partition": store}
        )
        ran = time.monotonic()
        logs_text = "\n".join(tail(deployment["logs"] / f"{n}.log") for n in WORKERS)
        assert result.success, logs_text

        # Every step ran in a worker's pool process, and the steps used both workers.
        events = instance.all_logs(result.run_id)
        step_pids = {
            e.step_key: e.dagster_event.pid
            for e in events
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
        }
        assert set(step_pids) == {
            "lake__order_risk", "lake__customer_rfm", "lake__clv", "lake__churn",
        }  # fmt: skip
        by_worker = {
            name: {step for step, pid in step_pids.items() if pid in pids}
            for name, pids in pools.items()
        }
        assert set().union(*by_worker.values()) == set(step_pids), (step_pids, pools)
        assert all(by_worker[name] for name in WORKERS), by_worker
        assert os.getpid() not in step_pids.values()
        celery_hosts = {
            e.dagster_event.engine_event_data.metadata["Celery worker"].value.split("@")[0]
            for e in events
            if e.dagster_event
            and e.dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT
            and "Celery worker" in (e.dagster_event.engine_event_data.metadata or {})
        }
        assert celery_hosts == set(WORKERS)

        # The same files as the same assets run in-process.
        on_celery = lake_files(paths.lake)
        # The four tables and the outcomes of the three steps that record one, one file
        # each for the store.
        assert sorted(name.split("/")[0] for name in on_celery) == sorted([
            "scores.order_risk", "marts.customer_rfm", "scores.clv", "scores.churn",
            "ops.store_status.order_risk", "ops.store_status.clv", "ops.store_status.churn",
        ])  # fmt: skip
        rows = {name.split("/")[0]: frame.height for name, frame in on_celery.items()}
        assert all(rows.values()), rows
        shutil.move(paths.lake, paths.home / "lake-celery")
        local = dg.materialize(
            LAKE_ASSETS,
            partition_key=store, instance=instance, resources=RESOURCES,
            run_config=RUN_CONFIG,
        )  # fmt: skip
        assert local.success
        in_process = lake_files(paths.lake)
        assert sorted(in_process) == sorted(on_celery)
        for name, frame in in_process.items():
            assert_frame_equal(on_celery[name], frame)
        print(
            f"\nhome built {built - started:.1f} s, workers ready +{ready - built:.1f} s, "
            f"celery run {ran - ready:.1f} s, total {time.monotonic() - started:.1f} s; "
            f"steps by worker {by_worker}; rows {rows}"
        )
    finally:
        patch.undo()


def _first_store(paths) -> str:
    from storepulse.warehouse import Warehouse, query

    with Warehouse(paths.warehouse).reader() as con:
        return query(con, "select min(store_id) as s from staging.orders")["s"][0]


def test_the_workers_config_says_what_the_runs_use():
    """deploy/celery/celery.yaml (the workers) and the executor of the Celery jobs (the
    runs) name the same broker and backend variables."""
    workers = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]
    assert workers == definitions_celery.CELERY_CONFIG


def test_only_the_per_store_jobs_move_to_celery():
    from pipelines.definitions import defs as local

    celery_repo = definitions_celery.defs.get_repository_def()
    local_jobs = {job.name: job for job in local.get_repository_def().get_all_jobs()}
    celery_jobs = {job.name: job for job in celery_repo.get_all_jobs()}
    assert set(celery_jobs) == set(local_jobs)
    moved = {name for name, job in celery_jobs.items() if job.executor_def.name != "in_process"}
    assert moved == {"score_store", "publish_store"}
    assert all(job.executor_def.name == "in_process" for job in local_jobs.values())
    for name in moved:
        assert celery_jobs[name].partitions_def == local_jobs[name].partitions_def
        assert celery_jobs[name].asset_layer.selected_asset_keys == (
            local_jobs[name].asset_layer.selected_asset_keys
        )
    sensor = celery_repo.get_sensor_def("publish_after_nightly_sensor")
    assert sensor.job_name == "publish_store"


def test_the_postgres_storage_block_is_valid_instance_config(tmp_path):
    """The commented Postgres block of deploy/celery/dagster.yaml, uncommented, is a valid
    instance config (checked against Dagster's schema; no Postgres needed)."""
    from dagster._core.instance.config import dagster_instance_config

    lines = (DEPLOY / "dagster.yaml").read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith("# --- Postgres storage"))
    end = next(i for i, line in enumerate(lines) if line.startswith("# --- end of the Postgres"))
    block = [line[2:] for line in lines[begin + 1 : end] if line.startswith("# ")]
    block = block[next(i for i, line in enumerate(block) if line.startswith("storage:")) :]
    (tmp_path / "dagster.yaml").write_text("\n".join([*lines, *block]) + "\n")
    config, _ = dagster_instance_config(str(tmp_path))
    assert set(config["storage"]) == {"postgres"}
    assert config["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}


def test_a_deployment_names_its_instance_config(tmp_path, monkeypatch):
    """STOREPULSE_DAGSTER_YAML picks the dagster.yaml that `storepulse` keeps in
    DAGSTER_HOME; without it, the repo's single-machine one."""
    env = {"STOREPULSE_HOME": str(tmp_path / "home")}
    installed = tmp_path / "home" / "dagster" / "dagster.yaml"
    monkeypatch.delenv("STOREPULSE_DAGSTER_YAML", raising=False)
    Paths.from_env(env).ensure()
    assert installed.read_bytes() == (REPO_ROOT / "dagster.yaml").read_bytes()
    monkeypatch.setenv("STOREPULSE_DAGSTER_YAML", str(DEPLOY / "dagster.yaml"))
    Paths.from_env(env).ensure()
    assert installed.read_bytes() == (DEPLOY / "dagster.yaml").read_bytes()
    monkeypatch.setenv("STOREPULSE_DAGSTER_YAML", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="STOREPULSE_DAGSTER_YAML"):
        Paths.from_env(env).ensure()
