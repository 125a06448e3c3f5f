"""Every ended job's bill: how long it waited and ran, its CPU seconds and its peak of memory,
measured by a real worker for host jobs (wait4's rusage) and Docker jobs (the container's
cgroup); a task sums its jobs'. And env_from_host hands a job only what the worker allows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Http, wait_until

MB = 1000 * 1000
# About 200 MB held at once (dd's one block), then some CPU, then long enough for a sample.
ALLOCATE = "dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; "
SPIN = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 0.5"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _done(http: Http, task: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(lambda: http.task_done("p", task), 60, f"task {task}")
    return found


def test_host_and_docker_jobs_show_their_wall_time_cpu_and_peak_memory(
    cluster: Cluster, test_image: str
) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "host", "action": ALLOCATE + SPIN})
    http.post("/projects/p", {"id": "docker", "container": test_image, "action": ALLOCATE + SPIN})
    small = {"id": "small", "jobs": {"a": {"action": "true"}, "b": {"action": "sleep 0.3"}}}
    http.post("/projects/p", small)
    for task in ("host", "docker"):
        job = _done(http, task)["jobs"]["main"]
        assert job["state"] == "succeeded", job
        bill = job["bill"]
        assert 180 * MB < bill["peakMemoryBytes"] < 320 * MB, (task, bill)
        assert 0 < bill["cpuS"] < bill["wallS"] + 1, (task, bill)
        assert bill["wallS"] >= 0.5 and bill["queueWaitS"] >= 0, (task, bill)
        assert bill["measured"], bill
    done = _done(http, "small")
    jobs = done["jobs"].values()
    # By default a small host job's peak is wait4's, which counts the worker's memory too.
    assert "at most the worker's own" in done["jobs"]["a"]["bill"]["measured"], done
    assert done["bill"]["wallS"] == pytest.approx(sum(j["bill"]["wallS"] for j in jobs), abs=0.01)
    assert done["bill"]["peakMemoryBytes"] == max(j["bill"]["peakMemoryBytes"] for j in jobs)
    # A rerun job keeps the bill of its earlier attempt, and the task's counts both.
    first = done["jobs"]["b"]
    http.post(f"/jobs/{first['id']}/rerun", {})
    again = wait_until(
        lambda: (t := http.task_done("p", "small")) and t["jobs"]["b"]["attempt"] == 2 and t,
        60,
        "the rerun",
    )
    assert again["jobs"]["b"]["attempts"][0]["bill"]["wallS"] == first["bill"]["wallS"]
    assert again["bill"]["wallS"] > done["bill"]["wallS"]


def test_env_from_host_passes_only_the_names_the_worker_allows(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = cluster.master("-no-worker")
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-shown")
    monkeypatch.setenv("OTHER", "not-allowed")
    cluster.worker("-env-allow", "AWS_REGION")
    http.post("/", {"name": "p"})
    show = (
        '[ "${#AWS_REGION}" = 10 ] && echo got-it; '
        'echo "region=$AWS_REGION key=$AWS_SECRET_ACCESS_KEY other=$OTHER"'
    )
    template = {"name": "aws", "runtime": "host", "command": ["/bin/sh", "-c", show]}
    http.post("/templates", {**template, "env_from_host": ["AWS_REGION"]})
    http.post("/projects/p", {"id": "ok", "template": "aws"})
    job = _done(http, "ok")["jobs"]["main"]
    assert job["state"] == "succeeded", job
    output = http.text(f"/jobs/{job['id']}/output")
    # It got the value, and its output masks it as a secret's: it may be a credential.
    assert output == "got-it\nregion=*** key= other=\n", output
    assert "eu-north-1" not in str(job) and job["env_from_host"] == ["AWS_REGION"]
    # Asking for a name no worker allows waits, saying which.
    http.post("/templates", {**template, "name": "greedy", "env_from_host": ["OTHER"]})
    http.post("/projects/p", {"id": "greedy", "template": "greedy"})
    reason = wait_until(
        lambda: http.get("/projects/p/tasks/greedy")["jobs"]["main"].get("reason"), 10, "reason"
    )
    assert "OTHER" in reason and "-env-allow" in reason, reason


def test_measure_cgroup_gives_a_small_job_its_own_small_peak(cluster: Cluster) -> None:
    http = cluster.master("-measure", "cgroup")
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "small", "action": "true"})
    http.post("/projects/p", {"id": "big", "action": ALLOCATE + "sleep 0.1"})
    small = _done(http, "small")["jobs"]["main"]["bill"]
    big = _done(http, "big")["jobs"]["main"]["bill"]
    if "cgroup" in small["measured"]:  # the worker could make a group of the job's own
        assert small["peakMemoryBytes"] < 16 * MB, small
        assert 180 * MB < big["peakMemoryBytes"] < 320 * MB, big
    else:  # it could not (no cgroup it may write): measured as without the flag, and says so
        assert "rusage" in small["measured"], small
