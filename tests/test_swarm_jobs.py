"""`runtime: swarm` jobs end to end, a master and a worker process on a single-node swarm: output
streams, exit codes, timeout and cancel remove the service, a killed worker's restart reaps its
service; and a client written against Swarmer's README, unchanged, gets its callback."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Http, free_port, wait_until

pytestmark = pytest.mark.docker
FAST = ("-lease", "3", "-heartbeat", "1")


def services(job: str) -> list[str]:
    """The job's services and their containers, running or not."""
    found: list[str] = []
    for kind in (["service", "ls"], ["ps", "-a"]):
        done = subprocess.run(
            ["docker", *kind, "-q", "--filter", f"label=asphalt.job={job}"],
            capture_output=True,
            text=True,
            check=True,
        )
        found += done.stdout.split()
    return found


@pytest.fixture
def rig(tmp_path: Path, swarm_network: str) -> Iterator[Cluster]:
    r = Cluster(tmp_path, "-no-worker", *FAST, "-swarmer-runtime", "swarm")
    yield r
    r.stop()


def _job(http: Http, task: str) -> dict[str, Any]:
    found: dict[str, Any] = http.get(f"/projects/p/tasks/{task}")["jobs"]["main"]
    return found


def test_swarm_jobs_stream_end_with_their_codes_and_leave_no_service(
    rig: Cluster, swarm_network: str, test_image: str
) -> None:
    http = rig.master()
    rig.worker("-swarm-network", swarm_network, "-name", "manager")
    wait_until(lambda: http.get("/workers")["workers"], 30, "the worker")
    (worker,) = http.get("/workers")["workers"]
    assert "swarm" in worker["runtimes"], worker
    http.post("/", {"name": "p"})
    job = {"runtime": "swarm", "container": test_image}
    for task, action in (("ok", "echo out; echo err >&2"), ("bad", "exit 3")):
        http.post("/projects/p", {"id": task, **job, "action": action})
    http.post("/projects/p", {"id": "slow", **job, "action": "echo first; sleep 4; echo second"})
    seen = wait_until(lambda: (j := _job(http, "slow"))["output"] == "first\n" and j, 60, "first")
    assert seen["state"] == "running"  # the output came while it ran
    done = {t: wait_until(lambda t=t: http.task_done("p", t), 60, t) for t in ("ok", "bad", "slow")}
    ok, bad, slow = (done[t]["jobs"]["main"] for t in ("ok", "bad", "slow"))
    assert (ok["state"], ok["status"], bad["state"], bad["status"]) == (
        "succeeded",
        0,
        "failed",
        3,
    )
    assert http.text(f"/jobs/{ok['id']}/output?stream=stderr") == "err\n"
    assert http.text(f"/jobs/{slow['id']}/output") == "first\nsecond\n"
    assert ok["applied"]["runtime"] == "swarm" and ok["applied"]["restart"] == "none"
    for main in (ok, bad, slow):
        wait_until(lambda m=main: not services(m["id"]), 30, "the service's removal")


def test_timeout_and_cancel_remove_the_service(
    rig: Cluster, swarm_network: str, test_image: str
) -> None:
    http = rig.master()
    rig.worker("-swarm-network", swarm_network)
    http.post("/", {"name": "p"})
    job = {"runtime": "swarm", "container": test_image, "action": "echo up; sleep 300"}
    http.post("/projects/p", {"id": "late", **job, "timeout": 3})
    http.post("/projects/p", {"id": "stopped", **job})
    wait_until(lambda: _job(http, "stopped")["output"] == "up\n", 60, "the job to run")
    assert services(_job(http, "stopped")["id"])
    http.post("/projects/p/tasks/stopped/cancel", {}, expect=200)
    for task, state in (("late", "timed_out"), ("stopped", "cancelled")):
        main = wait_until(lambda t=task: http.task_done("p", t), 60, task)["jobs"]["main"]
        assert main["state"] == state, main
        wait_until(lambda m=main: not services(m["id"]), 30, f"{task}'s service to go")


def test_a_killed_workers_restart_reaps_its_service(
    rig: Cluster, swarm_network: str, test_image: str
) -> None:
    http = rig.master("-lost-retries", "0")
    worker = rig.worker("-swarm-network", swarm_network, "-name", "doomed")
    http.post("/", {"name": "p"})
    job = {"runtime": "swarm", "container": test_image, "action": "echo up; sleep 300"}
    job_id = http.post("/projects/p", {"id": "orphan", **job})["jobs"]["main"]["id"]
    wait_until(lambda: _job(http, "orphan")["output"] == "up\n", 60, "the job to run")
    worker.kill()
    assert services(job_id), "the killed worker's service should be left running"
    done = wait_until(lambda: http.task_done("p", "orphan"), 30, "the lease to run out")
    assert done["jobs"]["main"]["state"] == "lost"
    rig.worker("-swarm-network", swarm_network, "-name", "doomed")  # back on its machine
    wait_until(lambda: not services(job_id), 30, "the reap")


class _Receiver(BaseHTTPRequestHandler):
    """A callback receiver as a Swarmer user would write one: any POST, its JSON kept."""

    got: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.got.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _swarmer_call(base: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    """What a Swarmer client does: JSON to the API, nothing else (no token, from this box)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def test_a_swarmer_client_works_unchanged_and_gets_its_callback_when_its_receiver_is_back(
    rig: Cluster, swarm_network: str, test_image: str
) -> None:
    http = rig.master()
    rig.worker("-swarm-network", swarm_network)
    base = http.base
    port = free_port()  # nothing listens there yet
    callback = f"http://127.0.0.1:{port}/results"
    # The older two-step form: the job, then its tasks.
    status, made, headers = _swarmer_call(
        base, "/submit", {"image_name": test_image, "callback_url": callback}
    )
    assert status == 201 and headers["Location"] == f"/status/{made['id']}", made
    two_step = made["id"]
    tasks = {"tasks": [{"task_name": "greet", "task_args": ["sh", "-c", "echo hi; echo oh >&2"]}]}
    status, _, headers = _swarmer_call(base, f"/submit/{two_step}/tasks", tasks)
    assert status == 201 and headers["Location"] == f"/status/{two_step}/tasks"
    # The newer form, tasks inline.
    inline = {
        "image_name": test_image,
        "callback_url": callback,
        "tasks": [
            {"task_name": "zero", "task_args": ["sh", "-c", "echo $RUN_ARGS $TASK_NAME"]},
            {"task_name": "three", "task_args": ["sh", "-c", "exit 3"]},
        ],
    }
    status, made, _ = _swarmer_call(base, "/submit", inline)
    assert status == 201, made
    both = (two_step, made["id"])

    def finished(job_id: str) -> dict[str, Any] | None:
        _, doc, _ = _swarmer_call(base, f"/status/{job_id}")
        return doc if all(t["status"] is not None for t in doc["tasks"]) else None

    docs = {job_id: wait_until(lambda j=job_id: finished(j), 90, "the tasks") for job_id in both}
    assert docs[two_step]["tasks"] == [
        {
            "name": "greet",
            "status": 0,
            "args": ["sh", "-c", "echo hi; echo oh >&2"],
            "result": {"stdout": "hi\n", "stderr": "oh\n"},
        }
    ]
    zero, three = docs[made["id"]]["tasks"]
    assert zero["result"]["stdout"] == "sh,-c,echo $RUN_ARGS $TASK_NAME zero\n"
    assert three["status"] == 3
    # The callbacks were tried while nothing listened; the receiver comes up and gets them.
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(_Receiver.got) >= 2 or None, 60, "both callbacks")
    finally:
        server.shutdown()
        server.server_close()
    sent = {doc["tasks"][0]["name"]: doc for _, doc in _Receiver.got}
    assert sent["greet"] == docs[two_step]
    assert [t["status"] for t in sent["zero"]["tasks"]] == [0, 3]
    # Unlike Swarmer, /status still answers after the callback; an unknown id is a 404.
    assert _swarmer_call(base, f"/status/{two_step}")[0] == 200
    assert _swarmer_call(base, "/status/nope")[0] == 404


def test_an_image_with_swarmers_in_container_client_reports_through_swarmer_address(
    tmp_path: Path, test_image: str
) -> None:
    """A job posts its result as Swarmer's client does: JSON to $SWARMER_ADDRESS, no header.
    Its container shares the host's network (loopback only) to reach the master."""
    rig = Cluster(tmp_path, "-no-worker", *FAST, "-auth", "always")
    try:
        http = rig.master(ready=401)
        http.auth = {"Authorization": f"Bearer {(rig.data / 'admin.token').read_text().strip()}"}
        rig.worker("-docker-network", "host")
        said = (
            '{"task_name": "%s", "task_status": 4, "task_result": {"stdout": "reported", '
            '"stderr": ""}}'
        )
        client = (
            f"wget -q -O /dev/null --header 'Content-Type: application/json' "
            f'--post-data "$(printf \'{said}\' "$TASK_NAME")" "$SWARMER_ADDRESS"; echo real; '
            'echo "$SWARMER_ADDRESS" >&2'
        )
        body = {
            "image_name": test_image,
            "callback_url": "http://127.0.0.1:9/x",
            "tasks": [{"task_name": "wrapped", "task_args": ["sh", "-c", client]}],
        }
        job_id = http.post("/submit", body)["id"]

        def reported() -> dict[str, Any] | None:
            (task,) = http.get(f"/status/{job_id}")["tasks"]
            return task if task["status"] is not None else None

        task = wait_until(reported, 60, "the task's end")
        assert (task["status"], task["result"]["stdout"]) == (4, "reported"), task
        main = http.get(f"/projects/swarmer/tasks/{job_id}")["jobs"]["wrapped"]
        assert main["status"] == 0 and "real\n" in main["output"], main  # two streams, any order
        # The address it printed is shown with its token masked, as every secret is.
        shown = http.text(f"/jobs/{main['id']}/output?stream=stderr")
        assert f"/result/{job_id}?token=***" in shown and "asj_" not in json.dumps(main), shown
    finally:
        rig.stop()
