"""Artifacts: what a job leaves in its logs and results directories is collected when it ends,
whatever its state, kept with its attempt, listed, downloaded one by one or as a tar.gz; paths
from the job are never trusted."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import REG, Cluster, Http, MasterFactory, wait_until

from asphalt.master.http.common import SCHEDULER
from asphalt.protocol import Finish, Manifest
from asphalt.worker.client import MasterClient, MasterError, Stale

# Writes its argument and a log line, and tries to get /etc/passwd kept by a link to it.
SCRIPT = (
    'echo "$0" > "$ASPHALT_RESULTS_DIR/args.json"; echo "started" > "$ASPHALT_LOGS_DIR/log.txt"; '
    'mkdir "$ASPHALT_RESULTS_DIR/deep"; echo inner > "$ASPHALT_RESULTS_DIR/deep/inner.txt"; '
    'ln -s /etc/passwd "$ASPHALT_RESULTS_DIR/passwd"; ln -s / "$ASPHALT_RESULTS_DIR/root"; '
    'exit $(($(echo "$0" | grep -c fail)))'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "epochs": {"type": "integer", "minimum": 1, "default": 3},
        "name": {"type": "string", "description": "what to call it"},
    },
    "required": ["name"],
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _download(http: Http, path: str) -> bytes:
    with urllib.request.urlopen(http.base + path, timeout=30) as response:
        data: bytes = response.read()
        return data


def _run(http: Http, task: str, body: dict[str, Any]) -> dict[str, Any]:
    http.post("/projects/p", {"id": task, **body})
    done = wait_until(lambda: http.task_done("p", task), 60, f"task {task} to complete")
    job: dict[str, Any] = done["jobs"]["main"]
    return job


@pytest.mark.parametrize("runtime", ["host", "docker"])
def test_a_templates_results_and_logs_are_kept_listed_and_downloadable(
    cluster: Cluster, runtime: str, test_image: str
) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    where = {"container": test_image} if runtime == "docker" else {"runtime": "host"}
    template = {
        "name": "save",
        **where,
        "command": ["/bin/sh", "-c", SCRIPT],
        "args": SCHEMA,
        "results_dir": "/results",
        "logs_dir": "/logs",
    }
    http.post("/templates", template)
    job = _run(http, "ok", {"template": "save", "args": {"name": "run-1"}})
    assert job["state"] == "succeeded", job
    listing = http.get(f"/jobs/{job['id']}/artifacts")
    by_path = {a["path"]: a for a in listing["artifacts"]}
    assert set(by_path) == {
        "logs/log.txt",
        "results/args.json",
        "results/deep/inner.txt",
        "results/passwd",
        "results/root",
    }, listing
    for link in ("results/passwd", "results/root"):
        assert "symbolic link" in by_path[link]["dropped"] and "url" not in by_path[link]
    args = _download(http, by_path["results/args.json"]["url"])
    assert json.loads(args) == {"name": "run-1", "epochs": 3}
    assert by_path["results/args.json"]["sha256"] == hashlib.sha256(args).hexdigest()
    assert by_path["results/args.json"]["size"] == len(args)
    assert _download(http, by_path["logs/log.txt"]["url"]) == b"started\n"
    with tarfile.open(fileobj=io.BytesIO(_download(http, listing["archiveUrl"]))) as tar:
        names = sorted(tar.getnames())
        assert names == ["logs/log.txt", "results/args.json", "results/deep/inner.txt"]
        member = tar.extractfile("results/args.json")
        assert member is not None and member.read() == args
    # A failed job's files are kept too.
    failed = _run(http, "bad", {"template": "save", "args": {"name": "fail"}})
    assert failed["state"] == "failed" and failed["status"] == 1, failed
    kept = http.get(f"/jobs/{failed['id']}/artifacts")["artifacts"]
    assert "results/args.json" in {a["path"] for a in kept}
    status, missing = http.call("GET", f"/jobs/{job['id']}/artifacts/results/nope")
    assert status == 404 and missing["field"] == "path", missing
    status, bad = http.call("GET", f"/jobs/{job['id']}/artifacts?attempt=9")
    assert status == 400 and bad["field"] == "attempt", bad


async def _leased(m: Any, client: MasterClient) -> tuple[str, str, int]:
    worker = (await client.register(REG)).worker
    lease = await client.lease(worker)
    assert lease is not None
    return worker, lease.job, lease.attempt


async def test_paths_from_a_worker_are_checked_and_the_cap_drops_whole_files(
    master: MasterFactory,
) -> None:
    m = await master(artifact_cap=10)
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    status, _ = await m.call("POST", "/projects/p", {"action": "x", "results_dir": "/results"})
    assert status == 201
    async with MasterClient(m.url, join=m.join) as client:
        worker, job, attempt = await _leased(m, client)
        for escape in (
            "results/../../etc/passwd",
            "/etc/passwd",
            "results//x",
            "other/x",
            "results",
        ):
            with pytest.raises(MasterError, match="400"):
                await client.artifacts(worker, job, attempt, Manifest(files=[(escape, 1)]))
        status, listing = await m.call("GET", f"/jobs/{job}/artifacts")
        assert listing["artifacts"] == [], listing
        files = [("results/a", 6), ("results/b", 6), ("results/c", 4)]
        wanted = await client.artifacts(worker, job, attempt, Manifest(files=files))
        assert wanted == ["results/a", "results/c"]  # b would go over the cap of 10 bytes
        await client.artifact(worker, job, attempt, "results/a", io.BytesIO(b"123456"))
        with pytest.raises(Stale):  # dropped: not to be sent
            await client.artifact(worker, job, attempt, "results/b", io.BytesIO(b"123456"))
        with pytest.raises(MasterError, match="400"):  # longer than it said
            await client.artifact(worker, job, attempt, "results/c", io.BytesIO(b"too long"))
        fin = Finish(
            attempt=attempt, state="succeeded", status=0, reason=None, started_at=1.0, ended_at=2.0
        )
        await client.finish(worker, job, fin)
        with pytest.raises(Stale):  # ended: closed
            await client.artifacts(worker, job, attempt, Manifest(files=files))
    status, listing = await m.call("GET", f"/jobs/{job}/artifacts")
    shown = {a["path"]: a for a in listing["artifacts"]}
    assert shown["results/a"]["size"] == 6 and "sha256" in shown["results/a"]
    assert "-artifact-cap" in shown["results/b"]["dropped"]
    assert shown["results/c"] == {"path": "results/c", "size": 4, "received": False}


async def test_deleting_the_task_removes_its_artifacts(master: MasterFactory) -> None:
    m = await master()
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    body = {"id": "t", "action": "x", "results_dir": "/results"}
    assert (await m.call("POST", "/projects/p", body))[0] == 201
    async with MasterClient(m.url, join=m.join) as client:
        worker, job, attempt = await _leased(m, client)
        files = [("results/a", 3)]
        assert await client.artifacts(worker, job, attempt, Manifest(files=files)) == ["results/a"]
        await client.artifact(worker, job, attempt, "results/a", io.BytesIO(b"abc"))
        fin = Finish(
            attempt=attempt, state="failed", status=1, reason=None, started_at=1.0, ended_at=2.0
        )
        await client.finish(worker, job, fin)
    _, listing = await m.call("GET", f"/jobs/{job}/artifacts")
    assert [a["path"] for a in listing["artifacts"]] == ["results/a"]
    assert (await m.call("DELETE", "/projects/p/tasks/t"))[0] == 200
    store = m.server.app[SCHEDULER].store
    await store.flushed()
    for table in ("artifacts", "artifact_data"):
        assert store.look(lambda t, name=table: list(t.keys(name, b""))) == [], table
    assert (await m.call("GET", f"/jobs/{job}/artifacts"))[0] == 404


def test_a_worker_keeps_the_files_while_the_master_is_away(cluster: Cluster) -> None:
    http = cluster.master("-no-worker")
    cluster.worker()
    http.post("/", {"name": "p"})
    # The job writes its result, then the master goes away before the job ends.
    write = 'sleep 2; echo late > "$ASPHALT_RESULTS_DIR/r.txt"'
    http.post("/projects/p", {"id": "t", "action": write, "results_dir": "/results"})
    wait_until(
        lambda: http.get("/projects/p/tasks/t")["jobs"]["main"]["state"] == "running", 30, "start"
    )
    assert cluster.master_proc is not None
    cluster.master_proc.kill()
    time.sleep(4)  # the job ends meanwhile; its worker cannot deliver
    cluster.procs.remove(cluster.master_proc)
    http = cluster.master("-no-worker")
    job = wait_until(lambda: http.task_done("p", "t"), 60, "the task to complete")["jobs"]["main"]
    assert job["state"] == "succeeded", job
    listing = http.get(f"/jobs/{job['id']}/artifacts")["artifacts"]
    assert [a["path"] for a in listing] == ["results/r.txt"], listing
    assert _download(http, listing[0]["url"]) == b"late\n"
