"""The Swarmer-compatible API: a job submitted in either form is a task of the swarmer project,
its status document is Swarmer's, its callback goes through the outbox (signed, retried, the
same delivery id on each try) with stdout and stderr apart, and it keeps Asphalt's auth."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

from harness import REG, Master, MasterFactory, receiver

from asphalt.protocol import STDERR, STDOUT, Finish, Lease
from asphalt.wire import replace
from asphalt.worker.client import MasterClient
from asphalt.worker.runner import swarmer_address

DOCKER = replace(REG, runtimes=("docker",), slots=8)


async def _run(m: Master, count: int, status: int = 0, *, report: bool = False) -> list[Lease]:
    """Lease `count` jobs as a docker worker would, print to both streams, and end each."""
    leases: list[Lease] = []
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(DOCKER)).worker
        for _ in range(count):
            lease = await client.lease(worker)
            assert lease is not None
            leases.append(lease)
            name = lease.spec.env["TASK_NAME"]
            frames = [(STDOUT, f"out of {name}\n".encode()), (STDERR, f"err of {name}\n".encode())]
            await client.output(worker, lease.job, lease.attempt, 0, frames)
            if report:
                token = {"Authorization": f"Bearer {lease.secrets['ASPHALT_JOB_TOKEN']}"}
                said = {
                    "task_name": name,
                    "task_status": 7,
                    "task_result": {"stdout": "said", "stderr": ""},
                }
                path = f"/result/{lease.spec.env['SWARMER_JOB_ID']}"
                got, _ = await m.call("POST", path, said, headers=token)
                assert got == 204
            state = "succeeded" if status == 0 else "failed"
            fin = Finish(
                attempt=lease.attempt,
                state=state,
                status=status,
                reason=None,
                started_at=1.0,
                ended_at=2.0,
            )
            await client.finish(worker, lease.job, fin)
    return leases


async def test_the_inline_form_runs_each_task_and_posts_swarmers_document(
    master: MasterFactory,
) -> None:
    async with receiver() as (server, got):
        m = await master()
        url = str(server.make_url("/results"))
        tasks = [
            {"task_name": "one", "task_args": ["a", "b"]},
            {"task_name": "two", "task_args": []},
        ]
        body = {"image_name": "some-image:latest", "callback_url": url, "tasks": tasks}
        async with m.session.post(m.url + "/submit", json=body) as r:
            assert r.status == 201, await r.text()
            job_id = (await r.json())["id"]
            assert r.headers["Location"] == f"/status/{job_id}"
        status, doc = await m.call("GET", f"/status/{job_id}")
        assert status == 200, doc
        assert doc["__image"] == "some-image:latest" and doc["__callback_url"] == url
        assert [(t["name"], t["status"], t["args"], t["state"]) for t in doc["tasks"]] == [
            ("one", None, ["a", "b"], "queued"),
            ("two", None, [], "queued"),
        ]
        leases = await _run(m, 2, status=3)
        envs = {lease.spec.env["TASK_NAME"]: lease.spec.env for lease in leases}
        assert envs["one"]["RUN_ARGS"] == "a,b" and "RUN_ARGS" not in envs["two"]
        assert envs["one"]["SWARMER_JOB_ID"] == job_id
        assert (
            leases[0].spec.action == ["a", "b"] and leases[0].spec.container == "some-image:latest"
        )

        await got.until(1)
        (path, headers, sent), *more = got.posts
        assert path == "/results" and not more
        doc = json.loads(sent)
        assert set(doc) == {"__image", "__callback_url", "tasks"}
        assert doc["tasks"] == [
            {"name": "one", "status": 3, "args": ["a", "b"],
             "result": {"stdout": "out of one\n", "stderr": "err of one\n"}},
            {"name": "two", "status": 3, "args": [],
             "result": {"stdout": "out of two\n", "stderr": "err of two\n"}},
        ]  # fmt: skip
        # Signed with the project's secret, which an admin may set (and then verify with).
        assert headers["Asphalt-Event"] == "task.completed" and headers["Asphalt-Delivery"]
        assert "Asphalt-Signature" in headers
        # /status goes on answering after the callback, and the task is Asphalt's too.
        status, after = await m.call("GET", f"/status/{job_id}/tasks")
        assert status == 200 and after == doc
        task = await m.task("swarmer", job_id)
        assert list(task["jobs"]) == ["one", "two"]
        assert task["callback"]["url"] == url


async def test_the_two_step_form_and_a_callback_signed_with_the_secret_an_admin_set(
    master: MasterFactory,
) -> None:
    secret = "a-secret-for-swarmer-callbacks"
    async with receiver() as (server, got):
        m = await master()
        url = str(server.make_url("/cb"))
        status, made = await m.call("POST", "/submit", {"image_name": "img:1", "callback_url": url})
        assert status == 201, made
        job_id = made["id"]
        status, doc = await m.call("GET", f"/status/{job_id}")
        assert status == 200 and doc == {"__image": "img:1", "__callback_url": url, "tasks": []}
        status, _ = await m.call("PATCH", "/projects/swarmer", {"callback_secret": secret})
        assert status == 200
        tasks = {"tasks": [{"task_name": "t1", "task_args": ["x"]}]}
        async with m.session.post(f"{m.url}/submit/{job_id}/tasks", json=tasks) as r:
            assert r.status == 201, await r.text()
            assert r.headers["Location"] == f"/status/{job_id}/tasks"
        # The same tasks again change nothing; more tasks join while the job runs.
        status, again = await m.call("POST", f"/submit/{job_id}/tasks", tasks)
        assert status == 201 and again["added"] == 0, again
        more = {"tasks": [{"task_name": "t2", "task_args": ["y"]}]}
        status, added = await m.call("POST", f"/submit/{job_id}/tasks", more)
        assert status == 201 and added["added"] == 1, added
        await _run(m, 2, report=True)
        await got.until(1)
        (_, headers, sent), *_ = got.posts
        parts = dict(p.split("=", 1) for p in headers["Asphalt-Signature"].split(","))
        mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + sent, hashlib.sha256)
        assert hmac.compare_digest(mac.hexdigest(), parts["v1"])
        doc = json.loads(sent)
        # What the in-container client reported stands for the task's status and output.
        assert [(t["name"], t["status"], t["result"]["stdout"]) for t in doc["tasks"]] == [
            ("t1", 7, "said"),
            ("t2", 7, "said"),
        ]
        status, late = await m.call("POST", f"/submit/{job_id}/tasks", {"tasks": [
            {"task_name": "t3", "task_args": []}]})  # fmt: skip
        assert status == 409 and "new job" in late["description"], late


async def test_a_bad_body_names_its_field_in_swarmers_error_shape(master: MasterFactory) -> None:
    m = await master()
    cases: list[tuple[Any, str]] = [
        ({"callback_url": "http://h/x"}, "image_name"),
        ({"image_name": "i", "callback_url": "ftp://h/x"}, "callback_url"),
        ({"image_name": "i", "callback_url": "http://h/x", "tasks": [{"task_args": []}]},
         "tasks.0.task_name"),
        ({"image_name": "i", "callback_url": "http://h/x", "tasks": [
            {"task_name": "a b", "task_args": []}]}, "tasks.0.task_name"),
        ({"image_name": "i", "callback_url": "http://h/x", "tasks": [
            {"task_name": "a", "task_args": [1]}]}, "tasks.0.task_args"),
        ({"image_name": "i", "callback_url": "http://h/x", "tasks": [
            {"task_name": "a"}, {"task_name": "a"}]}, "tasks.1.task_name"),
    ]  # fmt: skip
    for body, field in cases:
        status, answer = await m.call("POST", "/submit", body)
        assert status == 400 and answer["field"] == field, (body, answer)
        assert answer["title"] == "400 Bad Request" and answer["description"], answer
    status, _ = await m.call("GET", "/projects/swarmer")
    assert status == 404  # nothing made, not even the project
    status, answer = await m.call("GET", "/status/nosuchjob")
    assert status == 404 and "POST /submit" in answer["description"], answer
    await m.call("POST", "/submit", {"image_name": "i", "callback_url": "http://h/x"})
    for odd in ("x" * 600, "%C3%A9" * 200, "a%00b"):
        status, answer = await m.call("GET", f"/status/{odd}")
        assert status == 404, (odd, answer)
    status, answer = await m.call("POST", "/submit/nosuchjob/tasks", {"tasks": [
        {"task_name": "a"}]})  # fmt: skip
    assert status == 404, answer
    status, answer = await m.call("POST", "/submit", None, data=b"{nope")
    assert status == 400 and answer["title"] == "400 Bad Request", answer


async def test_it_needs_tokens_from_the_network_as_everywhere(master: MasterFactory) -> None:
    m = await master(auth="always")
    admin = {"Authorization": f"Bearer {m.admin}"}
    body = {"image_name": "i", "callback_url": "http://127.0.0.1:9/x"}
    status, answer = await m.call("POST", "/submit", body)
    assert status == 401 and answer["title"] == "401 Unauthorized", answer
    _, reader = await m.call("POST", "/tokens", {"name": "r", "scope": "read"}, headers=admin)
    await m.call("POST", "/", {"name": "elsewhere"}, headers=admin)
    _, limited = await m.call(
        "POST", "/tokens", {"name": "l", "scope": "submit", "projects": ["elsewhere"]},
        headers=admin,
    )  # fmt: skip
    read = {"Authorization": f"Bearer {reader['token']}"}
    status, answer = await m.call("POST", "/submit", body, headers=read)
    assert status == 403 and "submit" in answer["description"], answer
    status, made = await m.call("POST", "/submit", body, headers=admin)
    assert status == 201, made
    status, _ = await m.call("GET", f"/status/{made['id']}", headers=read)
    assert status == 200
    elsewhere = {"Authorization": f"Bearer {limited['token']}"}
    status, answer = await m.call("GET", f"/status/{made['id']}", headers=elsewhere)
    assert status == 403 and "swarmer" in answer["description"], answer
    # A browser's session is no credential here (the API has no forms to guard).
    status, _ = await m.call(
        "GET", f"/status/{made['id']}", cookies={"asphalt_session": "anything"}
    )
    assert status == 401


async def test_a_jobs_own_token_reports_only_its_own_jobs_result(master: MasterFactory) -> None:
    m = await master(auth="always")
    admin = {"Authorization": f"Bearer {m.admin}"}
    made = []
    for name in ("a", "b"):
        body = {
            "image_name": "i",
            "callback_url": "http://127.0.0.1:9/x",
            "tasks": [{"task_name": name, "task_args": []}],
        }
        status, answer = await m.call("POST", "/submit", body, headers=admin)
        assert status == 201, answer
        made.append(answer["id"])
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(DOCKER)).worker
        lease = await client.lease(worker)
        assert lease is not None
        own = {"Authorization": f"Bearer {lease.secrets['ASPHALT_JOB_TOKEN']}"}
        mine, theirs = sorted(made, key=lambda i: i != lease.spec.env["SWARMER_JOB_ID"])
        said = {"task_name": lease.spec.env["TASK_NAME"], "task_status": 0,
                "task_result": {"stdout": "", "stderr": ""}}  # fmt: skip
        status, answer = await m.call("POST", f"/result/{theirs}", said, headers=own)
        assert status == 404, answer
        status, answer = await m.call("GET", f"/status/{mine}", headers=own)
        assert status == 403, answer
        status, answer = await m.call("POST", f"/result/{mine}", said, headers=own)
        assert status == 204, answer
        status, answer = await m.call(
            "POST", f"/result/{mine}", {**said, "task_name": "zz"}, headers=own
        )
        assert status == 404 and answer["field"] == "task_name", answer


async def test_the_callback_arrives_once_its_receiver_is_back(master: MasterFactory) -> None:
    m = await master(hook_retry_s=0.2)
    async with receiver() as (server, got):
        url, port = str(server.make_url("/late")), server.port
    # Nothing listens there now.
    body = {"image_name": "i", "callback_url": url, "tasks": [{"task_name": "x"}]}
    status, made = await m.call("POST", "/submit", body)
    assert status == 201, made
    await _run(m, 1)
    for _ in range(200):
        _, listed = await m.call("GET", f"/projects/swarmer/tasks/{made['id']}/deliveries")
        if listed["deliveries"] and listed["deliveries"][0]["tries"] >= 1:
            break
        await asyncio.sleep(0.05)
    (delivery,) = listed["deliveries"]
    assert delivery["state"] == "pending" and delivery["lastStatus"] is None, delivery
    async with receiver(port=port) as (_, got):
        await got.until(1, timeout_s=20)
        (path, headers, sent), *_ = got.posts
    assert path == "/late" and headers["Asphalt-Delivery"] == delivery["id"]
    assert json.loads(sent)["tasks"][0]["result"]["stdout"] == "out of x\n"


async def test_a_report_counts_once_its_task_has_ended_and_is_refused_after(
    master: MasterFactory,
) -> None:
    m = await master()
    tasks = [{"task_name": "a", "task_args": []}, {"task_name": "b", "task_args": []}]
    body = {"image_name": "i", "callback_url": "http://127.0.0.1:9/x", "tasks": tasks}
    _, made = await m.call("POST", "/submit", body)
    job_id = made["id"]
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(DOCKER)).worker
        first, second = await client.lease(worker), await client.lease(worker)
        assert first is not None and second is not None
        said = {"task_name": first.spec.env["TASK_NAME"], "task_result": {"stdout": "x"}}
        for bad in (1.5, "3", 2**40, None):
            status, answer = await m.call("POST", f"/result/{job_id}", {**said, "task_status": bad})
            assert status == 400 and answer["field"] == "task_status", (bad, answer)
        # A job's token reports for its own task only, not for a sibling's.
        sibling = {"Authorization": f"Bearer {second.secrets['ASPHALT_JOB_TOKEN']}"}
        status, _ = await m.call(
            "POST", f"/result/{job_id}", {**said, "task_status": 9}, headers=sibling
        )
        assert status == 404
        status, _ = await m.call("POST", f"/result/{job_id}", {**said, "task_status": 9})
        assert status == 204
        _, doc = await m.call("GET", f"/status/{job_id}")
        reported = next(t for t in doc["tasks"] if t["name"] == said["task_name"])
        assert reported["status"] is None and reported["state"] == "running", reported
        fin = Finish(
            attempt=first.attempt, state="succeeded", status=0, reason=None,
            started_at=1.0, ended_at=2.0,
        )  # fmt: skip
        await client.finish(worker, first.job, fin)
        _, doc = await m.call("GET", f"/status/{job_id}")
        reported = next(t for t in doc["tasks"] if t["name"] == said["task_name"])
        assert reported["status"] == 9 and reported["result"]["stdout"] == "x", reported
        status, answer = await m.call("POST", f"/result/{job_id}", {**said, "task_status": 1})
        assert status == 409 and answer["field"] == "task_name", answer


async def test_swarm_jobs_take_no_artifact_directories(master: MasterFactory) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    job = {"runtime": "swarm", "container": "i", "action": "x"}
    for field in ("logs_dir", "results_dir"):
        status, answer = await m.call("POST", "/projects/p", {**job, field: "/out"})
        assert status == 400 and answer["field"] == field, answer


def test_a_big_jobs_document_keeps_the_end_of_each_stream_within_its_cap() -> None:
    from asphalt.model import swarmer
    from asphalt.model.records import Job, JobInput, JobState

    cap = swarmer.stream_cap(1000)
    assert cap * 2 * 1000 <= swarmer.DOCUMENT_CAP and swarmer.stream_cap(1) == swarmer.STREAM_CAP
    data = b"a" * 10_000 + b"the end\n"
    kept = swarmer.tail(data, cap)
    assert kept.endswith("the end\n") and "before this not shown" in kept
    assert len(kept.encode()) < cap + 200 and swarmer.tail(b"short", cap) == "short"
    job = Job(
        id="j", project="p", task="t", run=1, name="n", spec=JobInput(action=["x"]),
        created_at=0, state=JobState.SUCCEEDED, status=0, attempt=1,
    )  # fmt: skip
    said = swarmer.Reported(status=3, stdout="b" * 50_000, stderr=None, at=0)
    entry = swarmer.entry(job, "out", "err", said, cap)
    assert entry["status"] == 3 and entry["result"]["stderr"] is None
    assert (
        entry["result"]["stdout"].endswith("b" * cap) and len(entry["result"]["stdout"]) < cap + 200
    )
    # A report stands only for a task that exited, not for one that timed out.
    timed_out = swarmer.entry(job.to(JobState.TIMED_OUT, status=None), "o", "e", said, cap)
    assert timed_out["status"] is None and timed_out["state"] == "timed_out"
    assert timed_out["result"] == {"stdout": "o", "stderr": "e"}


async def test_swarmer_address_carries_the_job_token_good_only_to_report(
    master: MasterFactory,
) -> None:
    m = await master(auth="always")
    admin = {"Authorization": f"Bearer {m.admin}"}
    tasks = [{"task_name": "a"}]
    body = {
        "image_name": "i",
        "callback_url": "http://127.0.0.1:9/x",
        "tasks": tasks,
    }
    _, made = await m.call("POST", "/submit", body, headers=admin)
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(DOCKER)).worker
        lease = await client.lease(worker)
        assert lease is not None
        found = swarmer_address(lease.spec.env, lease.secrets, m.url + "/")
        address = found["SWARMER_ADDRESS"]
        assert address.startswith(f"{m.url}/result/{made['id']}?token=asj_"), address
        assert swarmer_address({}, lease.secrets, m.url) == {}  # not a Swarmer job: none
        path = address.removeprefix(m.url)
        said = {"task_name": "a", "task_status": 0, "task_result": {"stdout": "s"}}
        status, _ = await m.call("POST", path, said)  # as Swarmer's client does: no header
        assert status == 204
        query = path.partition("?")[2]
        # Anywhere else on the Swarmer API a job's token may do nothing; elsewhere it is no
        # credential at all.
        status, _ = await m.call("GET", f"/status/{made['id']}?{query}")
        assert status == 403
        status, _ = await m.call("POST", f"/submit?{query}", body)
        assert status == 403
        status, _ = await m.call("POST", f"/submit/{made['id']}/tasks?{query}", {"tasks": tasks})
        assert status == 403
        status, _ = await m.call("GET", f"/projects/swarmer?{query}")
        assert status == 401
        for bad in ("asj_forged_1_00", "asj_x_1_%C3%A9", f"asj_x_{'9' * 5000}_00", m.admin):
            status, answer = await m.call("POST", f"/result/{made['id']}?token={bad}", said)
            assert status == 401, (bad[:40], answer)
        fin = Finish(
            attempt=lease.attempt, state="succeeded", status=0, reason=None,
            started_at=1.0, ended_at=2.0,
        )  # fmt: skip
        await client.finish(worker, lease.job, fin)
        status, _ = await m.call("POST", path, said)  # its job has ended: the token with it
        assert status == 401
