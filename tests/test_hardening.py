"""A job gets only what it is given, end to end: the worker's environment stays with the worker,
containers run hardened within their limits, and the job records what was applied."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_a_host_job_sees_only_the_worker_variables_it_was_allowed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_PASSWORD", "hunter2")
    monkeypatch.setenv("CI_COMMIT", "abc123")
    monkeypatch.setenv("ASPHALT_JOIN", "ASPHALT-1-" + "0" * 64)  # a worker's own: never passed
    http = cluster.master("-env-allow", "CI_*")
    http.post("/", {"name": "p"})
    action = 'echo "pw=${WORKER_PASSWORD:-none} ci=$CI_COMMIT join=${ASPHALT_JOIN:-none}"; pwd'
    http.post("/projects/p", {"id": "t", "action": action, "env": {"MINE": "1"}})
    done = wait_until(lambda: http.task_done("p", "t"), 30, "the task to complete")
    main = done["jobs"]["main"]
    first, workdir = main["output"].splitlines()
    assert first == "pw=none ci=abc123 join=none", main["output"]
    assert "asphalt-work" in workdir
    wait_until(lambda: not Path(workdir).exists(), 10, "its directory to be removed after")
    assert not Path(workdir).resolve().is_relative_to(cluster.data.resolve())
    applied = main["applied"]
    assert applied["runtime"] == "host" and applied["cleanEnv"] is True
    assert "CI_COMMIT" in applied["envAllowed"] and "WORKER_PASSWORD" not in applied["envAllowed"]


def test_a_job_is_reported_when_the_worker_passes_it_many_variables(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More allowed names than a finish lists: the job still ends, and says how many more."""
    for n in range(100):
        monkeypatch.setenv(f"CI_MANY_{n:03}", str(n))
    http = cluster.master("-env-allow", "CI_MANY_*")
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "t", "action": "echo $CI_MANY_099"})
    main = wait_until(lambda: http.task_done("p", "t"), 30, "the task to complete")["jobs"]["main"]
    assert main["state"] == "succeeded" and main["output"] == "99\n"
    assert main["applied"]["envAllowed"][:2] == ["CI_MANY_000", "CI_MANY_001"]
    listed = main["applied"]["envAllowed"]
    assert len(listed) == 64 and listed[-1].startswith("... ") and listed[-1].endswith(" more")
    assert int(listed[-1].split()[1]) >= 100 - 63  # PATH and the like are passed too


@pytest.mark.docker
def test_a_docker_job_runs_hardened_within_its_limits_and_says_so(
    cluster: Cluster, test_image: str
) -> None:
    http = cluster.master("-limits", "cpus=0.5")
    http.post("/", {"name": "p"})
    job = {
        "action": "echo started; sleep 30",
        "container": test_image,
        "limits": {"memory": "64m", "pids": 100},
    }
    task = http.post("/projects/p", {"id": "t", **job})
    assert task["jobs"]["main"]["limits"] == {"memory": 64 << 20, "pids": 100}
    job_id = task["jobs"]["main"]["id"]
    wait_until(lambda: "started" in http.text(f"/jobs/{job_id}/output"), 60, "the job to start")
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=asphalt.job={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(found) == 1
    inspect = json.loads(
        subprocess.run(["docker", "inspect", found[0]], capture_output=True, check=True).stdout
    )[0]
    host = inspect["HostConfig"]
    assert "no-new-privileges:true" in host["SecurityOpt"] or "no-new-privileges" in str(
        host["SecurityOpt"]
    )
    assert host["CapDrop"] == ["ALL"] and host["Privileged"] is False and host["Init"] is True
    assert host["Memory"] == 64 << 20 and host["PidsLimit"] == 100
    assert host["NanoCpus"] == 500_000_000  # the worker's default where the job set none
    assert host["LogConfig"]["Config"].get("max-size")
    assert inspect["Mounts"] == [] and not host.get("Binds")
    http.post("/projects/p/tasks/t/cancel", None, expect=200)
    done = wait_until(lambda: http.task_done("p", "t"), 60, "the cancel to end the job")
    applied = done["jobs"]["main"]["applied"]
    assert applied["runtime"] == "docker" and applied["noNewPrivileges"] is True
    assert applied["memory"] == 64 << 20 and applied["pidsLimit"] == 100 and applied["cpus"] == 0.5
