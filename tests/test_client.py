"""The terminal client as people use it: `asphalt run` shows a job as if it ran here and exits
with its code, Ctrl-C cancels it on the master; ls, logs, rerun and cancel on the master's box
with no token, and from another host (a network namespace) with one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Http, Proc, free_port, wait_until
from netns import test_host


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _env(tmp: Path, master: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASPHALT_")}
    return {**env, "ASPHALT_MASTER": master, "XDG_CONFIG_HOME": str(tmp / "config")}


def _client(
    tmp: Path, master: str, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asphalt", *argv],
        env=_env(tmp, master),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_prints_both_streams_where_they_belong_and_exits_with_the_jobs_code(
    cluster: Cluster, tmp_path: Path
) -> None:
    http = cluster.master()
    where = f"127.0.0.1:{cluster.port}"
    done = _client(tmp_path, where, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n"), done
    timed = _client(tmp_path, where, "run", "-timeout", "0.5", "--", "sleep", "10")
    assert timed.returncode == 124, timed
    detached = _client(tmp_path, where, "run", "-detach", "-project", "web", "--", "true")
    assert detached.returncode == 0 and detached.stdout.strip(), detached
    task = detached.stdout.strip()
    wait_until(lambda: http.task_done("web", task), 30, "the detached task")
    listed = _client(tmp_path, where, "ls", "web")
    assert listed.returncode == 0 and task in listed.stdout and "succeeded" in listed.stdout
    assert listed.stdout.splitlines()[0].split()[:3] == ["TASK", "STATUS", "OUTCOME"]
    as_json = json.loads(_client(tmp_path, where, "ls", "-json", "web").stdout)
    assert [t["id"] for t in as_json["tasks"]] == [task]
    bad = _client(tmp_path, where, "run", "-project", "no/such", "--", "true")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "[name]" in bad.stderr, bad
    usage = _client(tmp_path, where, "ls", "-nope")
    assert usage.returncode == 2, usage
    helped = _client(tmp_path, where, "-h")
    assert all(name in helped.stdout for name in ("run", "logs", "ls", "rerun", "cancel"))
    # On the master's box with no token: logs, show, rerun, cancel.
    job = http.get(f"/projects/web/tasks/{task}")["jobs"]["main"]["id"]
    assert _client(tmp_path, where, "logs", "-f", job).returncode == 0
    shown = _client(tmp_path, where, "show", "-project", "web", task)
    assert shown.returncode == 0 and "succeeded" in shown.stdout, shown
    assert _client(tmp_path, where, "rerun", "-project", "web", task).returncode == 0
    wait_until(lambda: (t := http.task_done("web", task)) and t["run"] == 2, 30, "the rerun")
    http.post("/projects/web", {"id": "long", "action": "sleep 60"})
    assert _client(tmp_path, where, "cancel", "-project", "web", "long").returncode == 0
    done = wait_until(lambda: http.task_done("web", "long"), 30, "the cancel")
    assert done["outcome"] == "cancelled"


def test_run_f_runs_a_graph_file_with_each_jobs_lines_prefixed(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.master()
    graph = {
        "jobs": {
            "build": {"action": "echo built; echo warn >&2"},
            "test": {"action": "echo tested; exit 4", "needs": ["build"]},
        }
    }
    (tmp_path / "task.json").write_text(json.dumps(graph))
    where = f"127.0.0.1:{cluster.port}"
    done = _client(tmp_path, where, "run", "-f", str(tmp_path / "task.json"))
    assert done.returncode == 4, done
    lines = sorted(done.stdout.splitlines())
    assert lines == ["build | built", "build | warn", "test  | tested"], done.stdout
    made = _client(tmp_path, where, "tokens", "create", "ci", "-scope", "submit")
    assert made.returncode == 0 and made.stdout.startswith("asp_"), made
    listed = _client(tmp_path, where, "tokens")
    assert "ci" in listed.stdout and "submit" in listed.stdout, listed


def test_ctrl_c_cancels_the_job_on_the_master(cluster: Cluster, tmp_path: Path) -> None:
    http = cluster.master()
    running = subprocess.Popen(
        [sys.executable, "-m", "asphalt", "run", "-project", "p", "--", "sleep", "60"],
        env=_env(tmp_path, f"127.0.0.1:{cluster.port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started() -> dict[str, Any] | None:
            status, project = http.call("GET", "/projects/p")
            tasks = project.get("tasks", []) if status == 200 else []
            return tasks[0] if tasks and tasks[0]["jobs"]["main"]["state"] == "running" else None

        task = wait_until(started, 30, "the job to start")
        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=30)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 130, err
    assert "cancelling" in err
    done = wait_until(lambda: http.task_done("p", task["id"]), 30, "the cancel")
    assert done["jobs"]["main"]["state"] == "cancelled"


def test_ls_logs_rerun_cancel_from_another_host_with_a_token(tmp_path: Path) -> None:
    with test_host() as host:
        port, data = free_port(), tmp_path / "data"
        args = ["-host", host.host_ip, "-port", str(port), "-data", str(data), "-log", "json"]
        proc = Proc([*args, "-docker-network", "none", "-grace", "2"], tmp_path / "master.log")
        try:
            http = Http(f"http://{host.host_ip}:{port}")
            wait_until(lambda: http.call("GET", "/")[0] == 401, 30, "the master to serve")
            token = (data / "admin.token").read_text().strip()
            http = Http(http.base, token)
            http.post("/", {"name": "p"})
            http.post("/projects/p", {"id": "t", "action": "echo hello"})
            job = wait_until(lambda: http.task_done("p", "t"), 30, "the task")["jobs"]["main"]
            where = f"{host.host_ip}:{port}"

            def inside(*argv: str, token_flag: bool = True) -> subprocess.CompletedProcess[str]:
                given = ["-token", token] if token_flag else []
                return host.run(
                    [sys.executable, "-m", "asphalt", argv[0], "-master", where, *given, *argv[1:]],
                    env=_env(tmp_path, where),
                    capture_output=True,
                    text=True,
                )

            refused = inside("ls", "p", token_flag=False)
            assert refused.returncode == 1 and "401" in refused.stderr, refused
            listed = inside("ls", "p")
            assert listed.returncode == 0 and "t " in listed.stdout, listed
            logs = inside("logs", "-f", job["id"])
            assert logs.returncode == 0 and logs.stdout == "hello\n", logs
            rerun = inside("rerun", "-project", "p", "t")
            assert rerun.returncode == 0, rerun
            wait_until(lambda: (t := http.task_done("p", "t")) and t["run"] == 2, 30, "run 2")
            http.post("/projects/p", {"id": "long", "action": "sleep 60"})
            wait_until(
                lambda: http.get("/projects/p/tasks/long")["jobs"]["main"]["state"] == "running",
                30,
                "the long job",
            )
            cancelled = inside("cancel", "-project", "p", "long")
            assert cancelled.returncode == 0, cancelled
            done = wait_until(lambda: http.task_done("p", "long"), 30, "the cancel")
            assert done["jobs"]["main"]["state"] == "cancelled"
            workers = inside("workers")
            assert workers.returncode == 0 and "live" in workers.stdout, workers
            # login keeps the master and the token (0600); then no flags are needed.
            logged = host.run(
                [sys.executable, "-m", "asphalt", "login", "-token", token, where],
                env=_env(tmp_path, ""),
                capture_output=True,
                text=True,
            )
            assert logged.returncode == 0, logged
            kept = tmp_path / "config" / "asphalt" / "login.json"
            assert kept.stat().st_mode & 0o777 == 0o600
            env = {k: v for k, v in _env(tmp_path, "").items() if k != "ASPHALT_MASTER"}
            again = host.run(
                [sys.executable, "-m", "asphalt", "ls", "p"],
                env=env,
                capture_output=True,
                text=True,
            )
            assert again.returncode == 0 and "long" in again.stdout, again
        finally:
            proc.stop()


def test_the_token_login_kept_goes_only_to_that_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asphalt.client.api import Api, store

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("ASPHALT_MASTER", raising=False)
    monkeypatch.delenv("ASPHALT_TOKEN", raising=False)
    store("10.0.0.1:8080", "asp_kept_token")
    assert Api.find(None, None) == Api("http://10.0.0.1:8080", "asp_kept_token")
    assert Api.find("10.0.0.2:8080", None) == Api("http://10.0.0.2:8080", None)
    assert Api.find("10.0.0.2:8080", "given") == Api("http://10.0.0.2:8080", "given")
