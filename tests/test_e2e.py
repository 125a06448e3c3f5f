"""A new user's walk-through with real processes: a master, its embedded worker, more workers."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Proc, join_token, wait_until

from asphalt import tls


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_task_with_reactions_runs_main_then_success_then_after(cluster: Cluster) -> None:
    http = cluster.master()
    project = http.post("/", {"name": "web"})
    assert project["name"] == "web"
    task = http.post(
        f"/projects/{project['id']}",
        {
            "id": "9399dda8c384",
            "jobs": {
                "main": {
                    "action": "echo building; sleep 0.2; echo oops >&2; exit 0",
                    "env": {"WHO": "me"},
                },
                "success": {"action": 'echo "main was $ASPHALT_MAIN_STATE/$ASPHALT_MAIN_STATUS"'},
                "failure": {"action": "echo never"},
                "after": {"action": "echo cleaning up $ASPHALT_TASK_ID"},
            },
        },
    )
    assert task["id"] == "9399dda8c384"
    done = wait_until(lambda: http.task_done("web", "9399dda8c384"), 30, "the task to complete")
    assert (done["status"], done["outcome"]) == ("complete", "succeeded")
    jobs = done["jobs"]
    assert jobs["main"]["state"] == "succeeded" and jobs["main"]["status"] == 0
    assert jobs["main"]["output"] == "building\noops\n"
    assert jobs["success"]["output"] == "main was succeeded/0\n"
    assert jobs["failure"]["state"] == "skipped"
    assert jobs["after"]["output"] == "cleaning up 9399dda8c384\n"
    assert jobs["main"]["endedAt"] <= jobs["success"]["startedAt"]
    assert jobs["success"]["endedAt"] <= jobs["after"]["startedAt"]
    for role in ("main", "success", "after"):
        assert jobs[role]["createdAt"].endswith("Z") and jobs[role]["worker"]
    assert http.text(f"/jobs/{jobs['main']['id']}/output") == "building\noops\n"
    assert http.text(f"/jobs/{jobs['main']['id']}/output?stream=stderr") == "oops\n"
    assert http.text(f"/jobs/{jobs['main']['id']}/output?stream=stdout") == "building\n"
    status, _ = http.call(
        "POST", f"/projects/{project['id']}", {"id": "9399dda8c384", "action": "true"}
    )
    assert status == 409


def test_failing_main_runs_failure_and_after_but_not_success(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post(
        "/projects/p",
        {
            "id": "t1",
            "jobs": {
                "main": {"action": "exit 3"},
                "success": {"action": "echo success"},
                "failure": {"action": "echo failed with $ASPHALT_MAIN_STATUS"},
                "after": {"action": "echo after"},
            },
        },
    )
    done = wait_until(lambda: http.task_done("p", "t1"), 30, "the task")
    jobs = done["jobs"]
    assert done["outcome"] == "failed"
    assert (jobs["main"]["state"], jobs["main"]["status"]) == ("failed", 3)
    assert jobs["success"]["state"] == "skipped"
    assert jobs["failure"]["output"] == "failed with 3\n"
    assert jobs["after"]["state"] == "succeeded"


def test_job_over_its_timeout_is_killed_and_counts_as_failure(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post(
        "/projects/p",
        {
            "id": "slow",
            "jobs": {
                "main": {"action": "echo started; sleep 60", "timeout": 1},
                "failure": {"action": "echo reacting to $ASPHALT_MAIN_STATE"},
            },
        },
    )
    done = wait_until(lambda: http.task_done("p", "slow"), 30, "the timeout")
    main = done["jobs"]["main"]
    assert main["state"] == "timed_out" and "timeout" in main["reason"]
    assert main["output"] == "started\n"
    assert done["jobs"]["failure"]["output"] == "reacting to timed_out\n"
    assert done["outcome"] == "failed"


def test_typed_job_waits_with_reason_until_a_worker_with_the_type_registers(
    cluster: Cluster,
) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "plain", "action": "echo plain"})
    http.post("/projects/p", {"id": "gpu", "action": "echo gpu", "types": ["gpu"]})
    plain = wait_until(lambda: http.task_done("p", "plain"), 30, "the plain task")
    embedded = plain["jobs"]["main"]["worker"]
    time.sleep(0.5)
    waiting = http.get("/projects/p/tasks/gpu")["jobs"]["main"]
    assert waiting["state"] == "queued"
    assert waiting["reason"] == "no live worker has types gpu"

    cluster.worker("-types", "gpu", "-name", "gpu-box")
    done = wait_until(lambda: http.task_done("p", "gpu"), 30, "the gpu task")
    assert done["jobs"]["main"]["output"] == "gpu\n"
    gpu_worker = done["jobs"]["main"]["worker"]
    assert gpu_worker != embedded
    workers = {w["id"]: w for w in http.get("/workers")["workers"]}
    assert workers[gpu_worker]["name"] == "gpu-box" and workers[gpu_worker]["types"] == ["gpu"]
    assert workers[gpu_worker]["state"] == "live"


def test_a_typed_worker_takes_only_jobs_that_ask_for_its_types(cluster: Cluster) -> None:
    http = cluster.master("-no-worker")
    cluster.worker("-types", "gpu", "-slots", "2")
    wait_until(lambda: http.get("/workers")["workers"], 30, "the worker")
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "untyped", "action": "echo hi"})
    http.post("/projects/p", {"id": "typed", "action": "echo hi", "types": "gpu"})
    wait_until(lambda: http.task_done("p", "typed"), 30, "the gpu task")
    time.sleep(0.5)
    # The gpu box is kept for gpu work: a job that names no types waits for an untyped worker.
    untyped = http.get("/projects/p/tasks/untyped")
    assert untyped["status"] == "waiting"
    assert "-untyped" in untyped["jobs"]["main"]["reason"]
    cluster.worker("-name", "plain")
    wait_until(lambda: http.task_done("p", "untyped"), 30, "the plain task")


def test_killed_master_restarts_with_everything_and_runs_what_was_queued(cluster: Cluster) -> None:
    http = cluster.master("-no-worker")
    http.post("/", {"name": "p"})
    for i in range(5):
        http.post("/projects/p", {"id": f"t{i}", "action": f"echo run {i}"})
    cluster.master_proc.kill()

    http = cluster.master("-no-worker")
    assert [p["name"] for p in http.get("/")["projects"]] == ["p"]
    assert len(http.get("/projects/p")["tasks"]) == 5
    cluster.worker()
    for i in range(5):
        done = wait_until(lambda i=i: http.task_done("p", f"t{i}"), 30, f"task t{i}")
        assert done["jobs"]["main"]["output"] == f"run {i}\n"
    cluster.master_proc.signal(signal.SIGKILL)
    cluster.master_proc.popen.wait(10)

    http = cluster.master("-no-worker")
    again = http.get("/projects/p/tasks/t3")
    assert again["outcome"] == "succeeded" and again["jobs"]["main"]["output"] == "run 3\n"


def test_rerun_keeps_the_earlier_run_and_cancel_stops_a_running_job(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "t", "action": "echo run $ASPHALT_RUN"})
    first = wait_until(lambda: http.task_done("p", "t"), 30, "run 1")
    http.post("/projects/p/tasks/t/rerun", None)
    second = wait_until(lambda: http.task_done("p", "t"), 30, "run 2")
    assert second["run"] == 2 and second["jobs"]["main"]["output"] == "run 2\n"
    earlier = http.get("/projects/p/tasks/t?run=1")
    assert earlier["jobs"]["main"]["id"] == first["jobs"]["main"]["id"]
    assert earlier["jobs"]["main"]["output"] == "run 1\n"

    http.post("/projects/p", {"id": "sleepy", "jobs": {"main": {"action": "echo up; sleep 300"}}})
    wait_until(
        lambda: http.get("/projects/p/tasks/sleepy")["jobs"]["main"]["output"] == "up\n",
        30,
        "start",
    )
    http.post("/projects/p/tasks/sleepy/cancel", None, expect=200)
    done = wait_until(lambda: http.task_done("p", "sleepy"), 30, "the cancel")
    assert done["jobs"]["main"]["state"] == "cancelled" and done["outcome"] == "cancelled"


def _containers(job_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=asphalt.job={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.docker
def test_docker_job_runs_in_the_image_sees_its_env_and_leaves_no_container(
    cluster: Cluster, test_image: str
) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post(
        "/projects/p",
        {
            "id": "d",
            "jobs": {
                "main": {
                    "action": "echo in $(cat /etc/passwd | head -c 4) with $GREETING; exit 4",
                    "container": test_image,
                    "env": {"GREETING": "hello"},
                },
                "failure": {
                    "action": ["sh", "-c", "echo main $ASPHALT_MAIN_STATUS"],
                    "container": test_image,
                },
            },
        },
    )
    done = wait_until(lambda: http.task_done("p", "d"), 60, "the docker task")
    main = done["jobs"]["main"]
    assert (main["state"], main["status"], main["runtime"]) == ("failed", 4, "docker")
    assert main["output"] == "in root with hello\n"
    assert done["jobs"]["failure"]["output"] == "main 4\n"
    assert _containers(main["id"]) == [] and _containers(done["jobs"]["failure"]["id"]) == []


@pytest.mark.docker
def test_cancelling_a_docker_job_stops_its_container(cluster: Cluster, test_image: str) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    task = http.post(
        "/projects/p", {"id": "c", "action": "echo up; sleep 300", "container": test_image}
    )
    job = task["jobs"]["main"]["id"]
    wait_until(lambda: http.get(f"/jobs/{job}")["output"] == "up\n", 60, "the container to start")
    assert len(_containers(job)) == 1
    http.post("/projects/p/tasks/c/cancel", None, expect=200)
    done = wait_until(lambda: http.task_done("p", "c"), 30, "the cancel")
    assert done["jobs"]["main"]["state"] == "cancelled"
    wait_until(lambda: _containers(job) == [], 10, "the container to go")


@pytest.mark.docker
def test_a_missing_image_fails_the_job_with_a_reason(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post(
        "/projects/p", {"id": "m", "action": "true", "container": "asphalt-test:no-such-image"}
    )
    done = wait_until(lambda: http.task_done("p", "m"), 60, "the job to fail")
    main = done["jobs"]["main"]
    assert main["state"] == "failed" and "image not found" in main["reason"]
    assert http.get("/workers")["workers"][0]["state"] == "live"


def test_output_can_be_followed_live_until_the_job_ends(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    task = http.post("/projects/p", {"id": "f", "action": "echo one; sleep 1.5; echo two"})
    job = task["jobs"]["main"]["id"]
    pieces: list[bytes] = []
    states: list[str] = []
    with urllib.request.urlopen(f"{http.base}/jobs/{job}/output?follow=1", timeout=30) as stream:
        while piece := stream.read1(65536):
            pieces.append(piece)
            states.append(http.get(f"/jobs/{job}")["state"])
    assert b"".join(pieces) == b"one\ntwo\n"
    assert pieces[0] == b"one\n" and states[0] == "running"  # it came while the job ran

    request = urllib.request.Request(
        f"{http.base}/jobs/{job}/output",
        headers={"Accept": "text/event-stream", "Last-Event-ID": "4"},
    )
    with urllib.request.urlopen(request, timeout=30) as stream:
        events = stream.read().decode()
    assert "event: output\nid: 8\ndata: two\n" in events and "one" not in events
    assert "event: end\n" in events and "data: succeeded" in events


def test_a_worker_keeps_running_through_a_master_crash_and_delivers_when_it_returns(
    cluster: Cluster,
) -> None:
    http = cluster.master("-no-worker")
    cluster.worker()
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "long", "action": "echo before; sleep 3; echo after"})
    wait_until(
        lambda: http.get("/projects/p/tasks/long")["jobs"]["main"]["output"] == "before\n",
        30,
        "start",
    )
    cluster.master_proc.kill()
    time.sleep(4)  # the job ends while the master is down
    http = cluster.master("-no-worker")
    done = wait_until(lambda: http.task_done("p", "long"), 30, "the buffered result")
    main = done["jobs"]["main"]
    assert (main["state"], main["output"], main["attempt"]) == ("succeeded", "before\nafter\n", 1)


Call = Callable[..., Any]


def _https(port: int, context: ssl.SSLContext) -> Call:
    """JSON over HTTPS to a master on loopback (which needs no token there)."""

    def call(method: str, path: str, body: object = None) -> Any:
        sent = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", sent, method=method)
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            return json.loads(answer.read())

    return call


def _complete(call: Call, task: str, what: str) -> Any:
    def done() -> Any:
        found = call("GET", f"/projects/p/tasks/{task}")
        return found if found["status"] == "complete" else None

    return wait_until(done, 30, what)


def test_a_worker_finds_an_advertised_master_by_itself_and_checks_its_pin(
    cluster: Cluster,
) -> None:
    port, data = cluster.port, cluster.data
    args = ["-host", "127.0.0.1", "-port", str(port), "-data", str(data), "-log", "json"]
    args += ["-no-worker", "-advertise", "-name", f"m{port}", "-tls", "auto"]
    master = Proc(args, cluster.tmp / "master.log")
    cluster.procs.append(master)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the worker pins it
    call = _https(port, context)
    wait_until(lambda: call("GET", "/") is not None, 30, "the master to serve over TLS")
    token = join_token(data)
    assert token.count("-") == 3  # ASPHALT-1-FINGERPRINT-SECRET: it pins the certificate
    args = ["-master", "auto", "-mdns-interface", "127.0.0.1", "-log", "json", "-name", "finder"]
    args += ["-state", str(cluster.tmp / "finder-state"), "-join", token]
    cluster.procs.append(Proc(args, cluster.tmp / "finder.log"))
    call("POST", "/", {"name": "p"})
    call("POST", "/projects/p", {"id": "found", "action": "echo found it"})
    finished = _complete(call, "found", "the worker to find the master")
    assert finished["jobs"]["main"]["workerName"] == "finder"


def test_a_master_with_its_own_certificate_pins_it_in_the_join_token(cluster: Cluster) -> None:
    cert, key = tls.self_signed(cluster.tmp / "mine", names=["127.0.0.1"])
    port, data = cluster.port, cluster.data
    args = ["-host", "127.0.0.1", "-port", str(port), "-data", str(data), "-log", "json"]
    args += ["-tls-cert", str(cert), "-tls-key", str(key), "-grace", "2"]
    cluster.procs.append(Proc(args, cluster.tmp / "master.log"))
    call = _https(port, ssl.create_default_context(cafile=cert))
    wait_until(lambda: call("GET", "/") is not None, 30, "the master to serve over TLS")
    assert join_token(data).startswith(f"ASPHALT-1-{tls.fingerprint(cert)}-")
    call("POST", "/", {"name": "p"})
    call("POST", "/projects/p", {"id": "t", "action": "echo over tls"})
    finished = _complete(call, "t", "the master's own worker to run it over TLS")
    assert finished["jobs"]["main"]["output"] == "over tls\n"
