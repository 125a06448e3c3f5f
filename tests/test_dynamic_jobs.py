"""Jobs added while a task runs: by a person (POST .../jobs) and by a running job with its own
ASPHALT_JOB_TOKEN, which is good only for its task and only while it runs."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Http, wait_until

# Run by each step: it adds the next step, which needs it, until step 3; it keeps its token in
# a file so the test can try it once the job has ended.
STEP = """
import json, os, sys, urllib.request
name = os.environ["ASPHALT_JOB_NAME"]
number = int(name.split("-")[1])
open(os.path.join(sys.argv[1], name + ".token"), "w").write(os.environ["ASPHALT_JOB_TOKEN"])
print("token", os.environ["ASPHALT_JOB_TOKEN"])
if number < 3:
    nxt = "step-%d" % (number + 1)
    body = {"jobs": {nxt: {"action": os.environ["STEP_ACTION"], "needs": [name],
                           "env": {"STEP_ACTION": os.environ["STEP_ACTION"]}}}}
    url = "%s/projects/%s/tasks/%s/jobs" % (
        os.environ["ASPHALT_URL"], os.environ["ASPHALT_PROJECT_ID"], os.environ["ASPHALT_TASK_ID"])
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + os.environ["ASPHALT_JOB_TOKEN"]})
    with urllib.request.urlopen(request) as answer:
        print("added", nxt, answer.status)
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _bearer(http: Http, token: str) -> Http:
    return Http(http.base, token=token)


def test_a_job_adds_a_job_that_adds_another_and_the_token_dies_with_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    http = cluster.master("-auth", "always", ready=401)
    admin = _bearer(http, (cluster.data / "admin.token").read_text().strip())
    admin.post("/", {"name": "dyn"})
    admin.post("/", {"name": "other"})
    admin.post("/projects/other", {"id": "theirs", "action": "true"})
    script = tmp_path / "step.py"
    script.write_text(STEP)
    action = f"{sys.executable} {script} {tmp_path}"
    admin.post(
        "/projects/dyn",
        {"id": "grow", "jobs": {"step-1": {"action": action, "env": {"STEP_ACTION": action}}}},
    )
    done: dict[str, Any] = wait_until(
        lambda: (
            (t := admin.get("/projects/dyn/tasks/grow"))["status"] == "complete"
            and len(t["jobs"]) == 3
            and t
        ),
        60,
        "the task to grow to three steps and end",
    )
    jobs = done["jobs"]
    assert list(jobs) == ["step-1", "step-2", "step-3"], jobs
    assert all(j["state"] == "succeeded" for j in jobs.values()), jobs
    assert jobs["step-2"]["needs"] == ["step-1"] and "added step-3 201" in jobs["step-2"]["output"]
    assert jobs["step-1"]["endedAt"] <= jobs["step-2"]["startedAt"]
    token = (tmp_path / "step-1.token").read_text()
    assert token.startswith("asj_") and token not in json.dumps(done)  # masked in output
    assert "token ***" in jobs["step-1"]["output"]

    job = _bearer(http, token)
    status, body = job.call("GET", "/projects/dyn/tasks/grow")
    assert status == 401 and "only while its job runs" in body["error"], body
    more = {"jobs": {"late": {"action": "true"}}}
    assert job.call("POST", "/projects/dyn/tasks/grow/jobs", more)[0] == 401


def test_a_job_token_reaches_only_its_own_task(cluster: Cluster, tmp_path: Path) -> None:
    http = cluster.master("-auth", "always", ready=401)
    admin = _bearer(http, (cluster.data / "admin.token").read_text().strip())
    admin.post("/", {"name": "dyn"})
    admin.post("/projects/dyn", {"id": "theirs", "action": "true"})
    hold = tmp_path / "release"
    keep = f"echo $ASPHALT_JOB_TOKEN > {tmp_path}/t; while [ ! -e {hold} ]; do sleep 0.1; done"
    admin.post("/projects/dyn", {"id": "mine", "action": keep})
    token = wait_until(lambda: (tmp_path / "t").exists() and (tmp_path / "t").read_text(), 30)
    job = _bearer(http, token.strip())
    assert job.get("/projects/dyn/tasks/mine")["status"] == "running"
    for method, path, body in [
        ("GET", "/projects/dyn/tasks/theirs", None),
        ("POST", "/projects/dyn/tasks/theirs/jobs", {"jobs": {"x": {"action": "true"}}}),
        ("GET", "/", None),
        ("POST", "/projects/dyn", {"action": "true"}),
        ("POST", "/projects/dyn/tasks/mine/cancel", None),
        ("GET", "/tokens", None),
    ]:
        status, answer = job.call(method, path, body)
        assert status == 403 and "own task" in answer["error"], (method, path, status, answer)
    bad = {"jobs": {"x": {"action": "true", "needs": ["nope"]}}}
    status, answer = job.call("POST", "/projects/dyn/tasks/mine/jobs", bad)
    assert status == 400 and answer["field"] == "jobs.x.needs", answer
    cycle = {"jobs": {"x": {"action": "true", "needs": ["y"]}, "y": {"action": "1", "needs": "x"}}}
    status, answer = job.call("POST", "/projects/dyn/tasks/mine/jobs", cycle)
    assert status == 400 and "x -> y -> x" in answer["error"], answer
    taken = {"jobs": {"main": {"action": "echo another"}}}
    status, answer = job.call("POST", "/projects/dyn/tasks/mine/jobs", taken)
    assert status == 400 and answer["field"] == "jobs.main", answer  # the name is taken
    added = job.post(
        "/projects/dyn/tasks/mine/jobs", {"jobs": {"then": {"action": "true", "needs": "main"}}}
    )
    assert added["jobs"]["then"]["state"] == "queued"
    assert "waits for main" in added["jobs"]["then"]["reason"]
    hold.touch()
    done = wait_until(lambda: admin.task_done("dyn", "mine"), 30)
    assert done["jobs"]["then"]["state"] == "succeeded" and done["outcome"] == "succeeded"
    status, answer = admin.call(
        "POST", "/projects/dyn/tasks/mine/jobs", {"jobs": {"z": {"action": "true"}}}
    )
    assert status == 409 and "has ended" in answer["error"], answer


def test_jobs_added_while_another_request_is_still_sending_are_all_kept(cluster: Cluster) -> None:
    """A slow client's body arrives after a quick one has added its job: both jobs are kept
    (the slow one is checked against the task as it is once its body is in, not as it was)."""
    http = cluster.master()
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "t", "jobs": {"hold": {"action": "sleep 30"}}})
    body = json.dumps({"jobs": {"slow": {"action": "true", "needs": ["hold"]}}}).encode()
    host, port = http.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        head = f"POST /projects/p/tasks/t/jobs HTTP/1.1\r\nHost: {host}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        slow.sendall(head.encode() + body[:10])
        http.post("/projects/p/tasks/t/jobs", {"jobs": {"quick": {"action": "true"}}})
        slow.sendall(body[10:])
        answer = slow.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 201"), answer
    jobs = http.get("/projects/p/tasks/t")["jobs"]
    assert sorted(jobs) == ["hold", "quick", "slow"], jobs
    http.post("/projects/p/tasks/t/cancel", None, expect=200)


def test_a_rerun_job_adds_its_jobs_again_and_they_run_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Rerunning the first step of a loop that grew the task: it adds the same next step again,
    which is no error (200, nothing added), and the steps downstream run again as new attempts.
    A job described otherwise under a name the task has is still refused."""
    http = cluster.master()
    http.post("/", {"name": "dyn"})
    script = tmp_path / "step.py"
    script.write_text(STEP)
    action = f"{sys.executable} {script} {tmp_path}"
    step = {"action": action, "env": {"STEP_ACTION": action}}
    http.post("/projects/dyn", {"id": "grow", "jobs": {"step-1": step}})

    def grown(attempts: int) -> dict[str, Any] | None:
        t: dict[str, Any] = http.get("/projects/dyn/tasks/grow")
        jobs = t["jobs"].values()
        done = t["status"] == "complete" and len(jobs) == 3
        return t if done and all(j["attempt"] == attempts for j in jobs) else None

    first = wait_until(lambda: grown(1), 60, "the task to grow to three steps")["jobs"]
    http.post(f"/jobs/{first['step-1']['id']}/rerun", None)
    again = wait_until(lambda: grown(2), 60, "the three steps to run again")
    assert again["outcome"] == "succeeded" and list(again["jobs"]) == ["step-1", "step-2", "step-3"]
    assert "added step-2 200" in again["jobs"]["step-1"]["output"]
    assert again["jobs"]["step-3"]["startedAt"] >= again["jobs"]["step-2"]["endedAt"]

    http.post("/projects/dyn/tasks/grow/rerun", None)  # a new run, still going while we add
    other = {
        "step-9": {"action": "sleep 5", "needs": ["step-1"]},
        "step-10": {"action": "true", "needs": ["step-1", "step-9"]},
    }
    http.post("/projects/dyn/tasks/grow/jobs", {"jobs": other})
    other["step-10"]["needs"] = ["step-9", "step-1"]  # the same job: needs in another order
    http.post("/projects/dyn/tasks/grow/jobs", {"jobs": other}, expect=200)
    differs = {"jobs": {"step-9": {"action": "sleep 6", "needs": ["step-1"]}}}
    status, answer = http.call("POST", "/projects/dyn/tasks/grow/jobs", differs)
    assert status == 400 and answer["field"] == "jobs.step-9", answer
    assert "described otherwise" in answer["error"], answer
    secret = {"jobs": {"sec": {"action": "true", "secrets": {"K": "v1"}}}}
    http.post("/projects/dyn/tasks/grow/jobs", secret)
    status, answer = http.call("POST", "/projects/dyn/tasks/grow/jobs", secret)
    assert status == 400 and "with secrets is added once" in answer["error"], answer  # no oracle
    assert "v1" not in json.dumps(answer)
    http.post("/projects/dyn/tasks/grow/cancel", None, expect=200)
    wait_until(lambda: http.task_done("dyn", "grow"), 30, "the cancelled run to end")
    # The same call once more after the run ended (its answer was lost, say): still nothing new.
    http.post("/projects/dyn/tasks/grow/jobs", {"jobs": other}, expect=200)
    status, answer = http.call(
        "POST", "/projects/dyn/tasks/grow/jobs", {"jobs": {"new": {"action": "true"}}}
    )
    assert status == 409 and "has ended" in answer["error"], answer
