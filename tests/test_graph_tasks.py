"""Tasks as graphs of named jobs, with a real master and its embedded worker: fan-out and
fan-in, `when`, the checks that refuse a graph, reruns of a job and what is downstream of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Http, wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _done(http: Http, task: str) -> dict[str, Any]:
    return wait_until(lambda: http.task_done("g", task), 60, f"task {task} to complete")


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["startedAt"] < b["endedAt"] and b["startedAt"] < a["endedAt"])


def test_a_diamond_runs_its_middle_at_once_and_its_end_after_both(cluster: Cluster) -> None:
    http = cluster.master("-slots", "2")
    http.post("/", {"name": "g"})
    sleep = "sleep 1.5; echo $ASPHALT_JOB_NAME"
    http.post(
        "/projects/g",
        {
            "id": "diamond",
            "jobs": {
                "a": {"action": "echo a"},
                "b": {"action": sleep, "needs": ["a"]},
                "c": {"action": sleep, "needs": "a"},
                "d": {"action": "echo d", "needs": ["b", "c"]},
            },
        },
    )
    done = _done(http, "diamond")
    jobs = done["jobs"]
    assert list(jobs) == ["a", "b", "c", "d"]
    assert (done["outcome"], [j["state"] for j in jobs.values()]) == (
        "succeeded",
        ["succeeded"] * 4,
    )
    assert jobs["b"]["needs"] == ["a"] and jobs["d"]["needs"] == ["b", "c"]
    assert jobs["d"]["when"] == "success" and jobs["b"]["output"] == "b\n"
    assert "role" not in jobs["b"] and jobs["b"]["name"] == "b"
    assert jobs["a"]["endedAt"] <= min(jobs["b"]["startedAt"], jobs["c"]["startedAt"])
    assert _overlap(jobs["b"], jobs["c"]), "b and c ran one after the other on a 2-slot worker"
    assert max(jobs["b"]["endedAt"], jobs["c"]["endedAt"]) <= jobs["d"]["startedAt"]


def test_when_failure_and_always_decide_by_how_the_needs_ended(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "g"})
    jobs = {
        "build": {"action": "exit 3"},
        "lint": {"action": "true"},
        "deploy": {"action": "echo deploying", "needs": ["build", "lint"]},
        "notify": {"action": "echo $ASPHALT_NEEDS", "needs": ["build"], "when": "failure"},
        "after-deploy": {"action": "true", "needs": ["deploy"]},
        "report": {"action": "echo report", "needs": ["deploy", "notify"], "when": "always"},
    }
    http.post("/projects/g", {"id": "broken", "jobs": jobs})
    done = _done(http, "broken")
    got = {name: j["state"] for name, j in done["jobs"].items()}
    assert got == {
        "build": "failed",
        "lint": "succeeded",
        "deploy": "skipped",
        "notify": "succeeded",
        "after-deploy": "skipped",
        "report": "succeeded",
    }
    assert done["outcome"] == "failed"
    assert "build ended failed" in done["jobs"]["deploy"]["reason"]
    assert "deploy ended skipped" in done["jobs"]["after-deploy"]["reason"]
    notified = done["jobs"]["notify"]["output"]
    assert '"build":{"state":"failed","status":3,"outputs":{}}' in notified

    jobs["build"]["action"] = "true"
    http.post("/projects/g", {"id": "fine", "jobs": jobs})
    fine = _done(http, "fine")
    got = {name: j["state"] for name, j in fine["jobs"].items()}
    assert got["notify"] == "skipped" and got["deploy"] == got["report"] == "succeeded"
    assert "nothing it needs failed (build succeeded)" in fine["jobs"]["notify"]["reason"]
    assert fine["outcome"] == "succeeded"  # a skipped job did not fail


@pytest.mark.parametrize(
    ("jobs", "field", "words"),
    [
        (
            {
                "a": {"action": "x", "needs": ["c"]},
                "b": {"action": "x", "needs": ["a"]},
                "c": {"action": "x", "needs": ["b"]},
            },
            "jobs.a.needs",
            "a -> c -> b -> a",
        ),
        ({"a": {"action": "x", "needs": ["nope"]}}, "jobs.a.needs", "'nope'"),
        ({"a b": {"action": "x"}}, "jobs.a b", "must be 1-64"),
        ({"a": {"action": "x", "when": "later"}}, "jobs.a.when", "success, failure, always"),
    ],
)
def test_a_graph_that_cannot_run_is_refused_naming_it(
    cluster: Cluster, jobs: dict[str, Any], field: str, words: str
) -> None:
    http = cluster.master("-no-worker")
    http.post("/", {"name": "g"})
    status, body = http.call("POST", "/projects/g", {"id": "bad", "jobs": jobs})
    assert status == 400 and body["field"] == field and words in body["error"], body
    assert http.call("GET", "/projects/g/tasks/bad")[0] == 404  # nothing half made


def test_a_task_of_more_than_a_thousand_jobs_is_refused(cluster: Cluster) -> None:
    http = cluster.master("-no-worker")
    http.post("/", {"name": "g"})
    jobs = {f"j{i}": {"action": "true"} for i in range(1001)}
    status, body = http.call("POST", "/projects/g", {"jobs": jobs})
    assert status == 400 and "at most 1000 jobs" in body["error"], body


def test_a_job_rerun_runs_what_is_downstream_of_it_and_keeps_the_rest(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "g"})
    jobs = {
        "a": {"action": "echo a"},
        "b": {"action": "echo b", "needs": ["a"]},
        "c": {"action": "echo c", "needs": ["b"]},
        "side": {"action": "echo side", "needs": ["a"]},
    }
    http.post("/projects/g", {"id": "chain", "jobs": jobs})
    first = _done(http, "chain")["jobs"]
    http.post(f"/jobs/{first['b']['id']}/rerun", None)
    again = _done(http, "chain")
    assert again["run"] == 1 and again["outcome"] == "succeeded"
    later = again["jobs"]
    assert later["b"]["attempt"] == 2 and later["c"]["attempt"] == 2
    assert later["a"]["attempt"] == 1 and later["side"]["attempt"] == 1
    assert later["c"]["startedAt"] >= later["b"]["endedAt"] > first["c"]["endedAt"]
    assert later["a"]["endedAt"] == first["a"]["endedAt"]


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["host", "docker"])
def test_outputs_reach_the_jobs_that_need_them_and_show_in_the_view(
    cluster: Cluster, runtime: str, test_image: str
) -> None:
    http = cluster.master()
    http.post("/", {"name": "g"})
    write = (
        'echo "version=1.2.3" >> "$ASPHALT_OUTPUTS"; '
        'printf "notes<<EOF\\nline one\\nline two\\nEOF\\n" >> "$ASPHALT_OUTPUTS"'
    )
    build: dict[str, Any] = {"action": write}
    if runtime == "docker":
        build["container"] = test_image
    jobs = {"build": build, "use": {"action": 'printf "%s" "$ASPHALT_NEEDS"', "needs": ["build"]}}
    http.post("/projects/g", {"id": "out", "jobs": jobs})
    done = _done(http, "out")
    assert done["outcome"] == "succeeded", done
    outputs = {"version": "1.2.3", "notes": "line one\nline two"}
    assert done["jobs"]["build"]["outputs"] == outputs
    assert http.get(f"/jobs/{done['jobs']['build']['id']}")["outputs"] == outputs
    seen = json.loads(done["jobs"]["use"]["output"])
    assert seen == {"build": {"state": "succeeded", "status": 0, "outputs": outputs}}
    assert done["jobs"]["use"]["outputs"] == {}
