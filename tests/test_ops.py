"""What operations tools call: health and readiness (open, saying nothing more), and Prometheus
metrics (a `read` token from the network, parsed with prometheus_client's own parser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REG, Cluster, MasterFactory, wait_until
from prometheus_client.parser import text_string_to_metric_families

from asphalt.master.http.common import SCHEDULER
from asphalt.protocol import Finish
from asphalt.worker.client import MasterClient


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample by (name, labels), as Prometheus would read them."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_health_and_readiness_answer_anyone_and_tell_nothing_more(
    master: MasterFactory,
) -> None:
    m = await master(auth="always")
    assert (await m.call("GET", "/"))[0] == 401  # the rest needs a token, even on loopback
    assert await m.call("GET", "/healthz") == (200, {"status": "ok"})
    assert await m.call("GET", "/readyz") == (200, {"status": "ready"})
    m.server.app[SCHEDULER].close()  # stopping: up, but not taking work
    assert await m.call("GET", "/healthz") == (200, {"status": "ok"})
    assert await m.call("GET", "/readyz") == (503, {"status": "not ready"})


async def test_metrics_need_a_read_token_not_limited_to_projects(master: MasterFactory) -> None:
    m = await master(auth="always")
    status, answer = await m.call("GET", "/metrics")
    assert status == 401, answer
    admin = {"Authorization": f"Bearer {m.admin}"}
    tokens = {}
    for name, projects in (("all", []), ("some", ["p"])):
        body = {"name": name, "scope": "read", "projects": projects}
        status, made = await m.call("POST", "/tokens", body, headers=admin)
        assert status == 201, made
        tokens[name] = {"Authorization": f"Bearer {made['token']}"}
    async with m.session.get(m.url + "/metrics", headers=tokens["all"]) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert "asphalt_workers" in await r.text()
    status, answer = await m.call("GET", "/metrics", headers=tokens["some"])
    assert status == 403 and "every project" in answer["error"], answer


async def test_metrics_count_what_ended_and_show_what_waits(master: MasterFactory) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    _, project = await m.call("GET", "/projects/p")
    for i in range(3):
        await m.call("POST", "/projects/p", {"id": f"t{i}", "action": "x"})
    await m.call("POST", "/projects/p", {"id": "gpu", "action": "x", "types": ["gpu"]})
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        for state, status in (("succeeded", 0), ("succeeded", 0), ("failed", 2)):
            lease = await client.lease(worker)
            assert lease is not None
            fin = Finish(
                attempt=lease.attempt,
                state=state,
                status=status,
                reason=None,
                started_at=100.0,
                ended_at=102.5,
            )
            await client.finish(worker, lease.job, fin)
        async with m.session.get(m.url + "/metrics") as r:
            samples = _samples(await r.text())
    pid = project["id"]
    assert _value(samples, "asphalt_jobs_ended_total", state="succeeded", project=pid) == 2
    assert _value(samples, "asphalt_jobs_ended_total", state="failed", project=pid) == 1
    assert _value(samples, "asphalt_job_duration_seconds_count") == 3
    assert _value(samples, "asphalt_job_duration_seconds_sum") == pytest.approx(7.5)
    assert _value(samples, "asphalt_job_queued_seconds_count") == 3
    assert _value(samples, "asphalt_jobs_queued", type="gpu") == 1  # no gpu worker came
    assert _value(samples, "asphalt_jobs_running", type="any") == 0
    assert _value(samples, "asphalt_workers", state="live") == 1
    used = _value(samples, "asphalt_store_used_bytes")
    assert 0 < used < _value(samples, "asphalt_store_map_bytes")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_the_job_counters_match_the_jobs_a_real_worker_ran(cluster: Cluster) -> None:
    http = cluster.master()
    project = http.post("/", {"name": "p"})
    jobs = {
        "main": {"action": "exit 1"},
        "success": {"action": "true"},
        "after": {"action": "true"},
    }
    http.post("/projects/p", {"id": "graph", "jobs": jobs})
    for i in range(5):
        http.post("/projects/p", {"id": f"t{i}", "action": f"echo {i}"})
    for task in ("graph", *(f"t{i}" for i in range(5))):
        wait_until(lambda task=task: http.task_done("p", task), 30, f"task {task}")
    samples = _samples(http.text("/metrics"))
    pid = project["id"]
    assert _value(samples, "asphalt_jobs_ended_total", state="succeeded", project=pid) == 6
    assert _value(samples, "asphalt_jobs_ended_total", state="failed", project=pid) == 1
    assert _value(samples, "asphalt_jobs_ended_total", state="skipped", project=pid) == 1
    assert _value(samples, "asphalt_job_duration_seconds_count") == 7  # the skipped one never ran
    assert _value(samples, "asphalt_workers", state="live") == 1
