"""Processes killed, stopped and cut off mid-work; every test ends with the history checker."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Http, wait_until
from history import check, job_containers, job_processes
from proxy import Proxy

# Short timings so a lease runs out in seconds, not the default 45.
FAST = ("-lease", "3", "-heartbeat", "1")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Cluster]:
    r = Cluster(tmp_path, "-no-worker", *FAST)
    yield r
    r.stop()


def _running(http: Http, project: str, tasks: list[str]) -> int:
    return sum(
        1
        for t in tasks
        if http.get(f"/projects/{project}/tasks/{t}")["jobs"]["main"]["state"] == "running"
    )


@pytest.mark.docker
def test_a_master_killed_with_200_queued_and_10_running_finishes_them_all(
    rig: Cluster, test_image: str
) -> None:
    http = rig.master()
    rig.worker("-slots", "10")
    http.post("/", {"name": "p"})
    tasks = []
    for i in range(200):
        if i < 10:  # the first ten run long enough to be running when the master dies
            job = {"action": f"sleep 2; echo slow {i}"}
            if i % 2:
                job |= {"container": test_image}
        else:
            job = {"action": f"echo quick {i}"}
        http.post("/projects/p", {"id": f"t{i:03d}", "jobs": {"main": job}})
        tasks.append(f"t{i:03d}")
    wait_until(lambda: _running(http, "p", tasks[:10]) == 10, 60, "ten running jobs")
    assert rig.master_proc is not None
    rig.master_proc.kill()

    http = rig.master()
    for t in tasks:
        wait_until(lambda t=t: http.task_done("p", t), 120, f"task {t}")
    jobs = check(http, {"p": tasks})
    assert all(j["state"] == "succeeded" for j in jobs)
    assert http.get("/projects/p/tasks/t003")["jobs"]["main"]["output"] == "slow 3\n"
    assert http.get("/projects/p/tasks/t150")["jobs"]["main"]["output"] == "quick 150\n"


def test_a_master_killed_with_jobs_on_its_own_worker_runs_them_again_after_restart(
    tmp_path: Path,
) -> None:
    """Lost is not failed: the jobs that died with the master's own worker are given back at
    start-up (no lease to wait out, no retry used), and all 80 succeed."""
    rig = Cluster(tmp_path, *FAST)
    try:
        http = rig.master("-slots", "4")
        rig.worker("-slots", "4", "-name", "other")
        http.post("/", {"name": "p"})
        tasks = [f"t{i:02d}" for i in range(80)]
        for t in tasks:
            http.post(
                "/projects/p", {"id": t, "jobs": {"main": {"action": f"sleep 0.4; echo {t}"}}}
            )

        def on_both() -> bool:
            names = {w["id"]: w["name"] for w in http.get("/workers")["workers"]}
            busy = {names[w["id"]] for w in http.get("/workers")["workers"] if w["running"]}
            return len(busy) == 2

        wait_until(on_both, 60, "jobs running on both workers")
        assert rig.master_proc is not None
        rig.master_proc.kill()

        http = rig.master("-slots", "4")
        for t in tasks:
            wait_until(lambda t=t: http.task_done("p", t), 120, f"task {t}")
        jobs = check(http, {"p": tasks})
        assert all(j["state"] == "succeeded" for j in jobs)
        given_back = [
            a for j in jobs for a in j.get("attempts", ()) if "master's own" in (a["reason"] or "")
        ]
        assert given_back, "no job was on the master's own worker when it died"
        assert all(a["state"] == "lost" for a in given_back)
        assert all(j["retries"] == 0 for j in jobs)  # run again without retries of their own
        assert http.get("/projects/p/tasks/t42")["jobs"]["main"]["output"] == "t42\n"
    finally:
        rig.stop()


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["host", "docker"])
def test_a_killed_worker_loses_its_job_and_its_restart_reaps_what_it_left(
    rig: Cluster, runtime: str, test_image: str
) -> None:
    http = rig.master("-lost-retries", "0")  # lost stays lost: what `retries` does is seen
    worker = rig.worker("-name", "doomed")
    http.post("/", {"name": "p"})
    job: dict[str, object] = {"action": "echo started; sleep 300"}
    if runtime == "docker":
        job["container"] = test_image
    lost = http.post("/projects/p", {"id": "lost", "jobs": {"main": job}})["jobs"]["main"]["id"]
    retried = http.post(
        "/projects/p",
        {
            "id": "retried",
            "jobs": {"main": {**job, "action": "echo hi; sleep 4", "retries": 1, "backoff": 0}},
        },
    )["jobs"]["main"]["id"]

    def printed(task: str, text: str) -> bool:
        return bool(http.get(f"/projects/p/tasks/{task}")["jobs"]["main"]["output"] == text)

    # Running for real (their output arrived), not only leased, when the worker dies.
    wait_until(lambda: printed("lost", "started\n") and printed("retried", "hi\n"), 60, "both")
    worker.kill()
    left = job_processes({lost, retried}) or job_containers({lost, retried})
    assert left, "the killed worker's jobs should still be running, orphaned"

    done = wait_until(lambda: http.task_done("p", "lost"), 30, "the lease to run out")
    assert done["jobs"]["main"]["state"] == "lost"
    assert "stopped renewing its lease" in done["jobs"]["main"]["reason"]
    rig.worker("-name", "doomed")  # the same machine's worker comes back, and reaps
    again = wait_until(lambda: http.task_done("p", "retried"), 60, "the retry")
    main = again["jobs"]["main"]
    assert (main["state"], main["attempt"]) == ("succeeded", 2)
    assert [a["state"] for a in main["attempts"]] == ["lost"]
    wait_until(lambda: not job_processes({lost}) and not job_containers({lost}), 30, "the reap")
    check(http, {"p": ["lost", "retried"]})


@pytest.mark.parametrize(
    "cut_s", [1.5, 6.0], ids=["shorter-than-the-lease", "longer-than-the-lease"]
)
def test_a_worker_cut_off_from_the_master(rig: Cluster, cut_s: float) -> None:
    http = rig.master("-lost-retries", "0")  # what a lease that ran out ends as, kept in view
    proxy = Proxy(rig.port)
    try:
        rig.worker(port=proxy.port)
        http.post("/", {"name": "p"})
        http.post("/projects/p", {"id": "t", "action": "echo before; sleep 3; echo after"})
        wait_until(
            lambda: http.get("/projects/p/tasks/t")["jobs"]["main"]["output"] == "before\n",
            30,
            "start",
        )
        proxy.cut()
        time.sleep(cut_s)
        proxy.heal()
        done = wait_until(lambda: http.task_done("p", "t"), 30, "the task to end")
        main = done["jobs"]["main"]
        if cut_s < 3:  # back within the lease: the job is unharmed, output and all
            assert (main["state"], main["output"], main["attempt"]) == (
                "succeeded",
                "before\nafter\n",
                1,
            )
        else:  # the lease ran out: given up, and the late result is refused and noted
            assert main["state"] == "lost"
            wait_until(
                lambda: (
                    "later reported" in http.get("/projects/p/tasks/t")["jobs"]["main"]["reason"]
                ),
                30,
                "the late result to be noted",
            )
        check(http, {"p": ["t"]})
    finally:
        proxy.close()


def test_sigterm_on_a_worker_finishes_short_jobs_and_hands_long_ones_back(rig: Cluster) -> None:
    http = rig.master()
    leaving = rig.worker("-drain", "2", "-slots", "2", "-name", "leaving")
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "short", "action": "sleep 1; echo short"})
    http.post("/projects/p", {"id": "long", "action": "echo long; sleep 30"})
    wait_until(lambda: _running(http, "p", ["short", "long"]) == 2, 30, "both running")
    leaving.signal(signal.SIGTERM)
    assert leaving.popen.wait(20) == 0
    short = http.get("/projects/p/tasks/short")["jobs"]["main"]
    assert (short["state"], short["output"]) == ("succeeded", "short\n")
    long = http.get("/projects/p/tasks/long")["jobs"]["main"]
    assert long["state"] == "queued" and "handed back" in long["attempts"][0]["reason"]
    states = {w["name"]: w["state"] for w in http.get("/workers")["workers"]}
    assert states["leaving"] == "gone"
    check(http, {"p": ["short", "long"]}, allow_queued=True)


def test_sigterm_on_the_master_answers_waiting_polls_and_exits_cleanly(rig: Cluster) -> None:
    http = rig.master()
    rig.worker()
    wait_until(lambda: http.get("/workers")["workers"], 30, "the worker")
    time.sleep(0.5)  # its long-poll is now held by the master
    assert rig.master_proc is not None
    started = time.monotonic()
    rig.master_proc.signal(signal.SIGTERM)
    assert rig.master_proc.popen.wait(20) == 0
    assert time.monotonic() - started < 15  # not the 25 s poll hold


def test_failed_attempts_are_retried_with_backoff_and_each_is_kept(rig: Cluster) -> None:
    http = rig.master()
    rig.worker()
    http.post("/", {"name": "p"})
    action = "echo attempt $ASPHALT_ATTEMPT; exit 1"
    job = {"action": action, "retries": 2, "backoff": 0.2}
    http.post(
        "/projects/p", {"id": "t", "jobs": {"main": job, "failure": {"action": "echo gave up"}}}
    )
    done = wait_until(lambda: http.task_done("p", "t"), 60, "the retries")
    main = done["jobs"]["main"]
    assert (main["state"], main["attempt"], main["output"]) == ("failed", 3, "attempt 3\n")
    assert [a["state"] for a in main["attempts"]] == ["failed", "failed"]
    assert http.text(f"/jobs/{main['id']}/output?attempt=1") == "attempt 1\n"
    assert done["jobs"]["failure"]["output"] == "gave up\n"  # once, after the last attempt
    check(http, {"p": ["t"]})


def test_the_same_idempotency_key_creates_once(rig: Cluster) -> None:
    http = rig.master()
    key = {"Idempotency-Key": "deploy-42"}
    first = http.call("POST", "/", {"name": "p"}, headers=key)
    again = http.call("POST", "/", {"name": "p"}, headers=key)
    assert first[0] == again[0] == 201 and first[1]["id"] == again[1]["id"]
    made = [http.call("POST", "/projects/p", {"action": "true"}, headers=key) for _ in range(3)]
    assert {m[1]["id"] for m in made} == {made[0][1]["id"]} and made[0][0] == 201
    other = http.call("POST", "/projects/p", {"action": "true"}, headers={"Idempotency-Key": "43"})
    assert other[1]["id"] != made[0][1]["id"]
    assert len(http.get("/projects/p")["tasks"]) == 2
