"""Worker messages are declared once (msgspec Structs in asphalt/protocol.py) and checked on
both ends: a bad message from a worker is a 400 naming the field, and a bad lease from a master
is refused by the worker instead of being run."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asphalt import protocol
from asphalt.errors import BadRequest
from asphalt.limits import Limits
from asphalt.model.records import JobInput
from asphalt.protocol import Finish, Heartbeat, Lease, Registration, to_json
from asphalt.worker.client import MasterClient, MasterError

REG = {"name": "w", "host": "h", "types": [], "runtimes": ["host"], "slots": 1, "version": "t"}
FIN = {"attempt": 1, "state": "succeeded", "status": 0, "reason": None}
TIMES = {"started_at": 1, "ended_at": 2}
LEASE = {"job": "j1", "attempt": 1, "env": {}}
SPEC = {"action": "true", "container": None, "timeout": None, "runtime": "host"}


@pytest.mark.parametrize(
    ("kind", "body", "field", "message"),
    [
        (Registration, {**REG, "slots": 0}, "slots", "slots must be from 1 to 4096"),
        (Registration, {**REG, "slots": True}, "slots", "slots must be from 1 to 4096"),
        (Registration, {k: v for k, v in REG.items() if k != "host"}, "host", "host is required"),
        (
            Registration,
            {**REG, "types": ["gpu", 3]},
            "types",
            "types must be a list of strings (types[1]: expected str",
        ),
        (
            Heartbeat,
            {"running": [["j", -1]]},
            "running",
            "running holds [job, attempt] pairs (running[0][1]: expected int >= 0",
        ),
        (Heartbeat, {"running": "j"}, "running", "running holds [job, attempt] pairs"),
        (Finish, {**FIN, "started_at": 1, "ended_at": 2, "state": "done"}, "state", "state must"),
        (Finish, {**FIN, "started_at": -1, "ended_at": 2}, "started_at", "started_at must be"),
        (Finish, {**FIN, "started_at": 1}, "ended_at", "ended_at is required"),
        (Finish, {**FIN, **TIMES, "applied": {"pids": 2**64}}, "applied", "applied.pids must"),
        (Finish, {**FIN, **TIMES, "applied": {"cpus": float("inf")}}, "applied", "applied.cpus"),
        (Finish, {**FIN, **TIMES, "applied": {"env": ["A"] * 65}}, "applied", "applied.env"),
    ],
)
def test_a_bad_message_names_its_field(
    kind: type[Any], body: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        protocol.read(body, kind)
    assert raised.value.field == field
    assert raised.value.message.startswith(message)


def test_a_message_read_back_from_its_json_is_the_same() -> None:
    limits = Limits(memory=64 << 20, cpus=0.5, pids=100)
    spec = JobInput(action=["sh", "-c", "true"], timeout=5.0, secrets=("K",), limits=limits)
    lease = Lease(job="j1", attempt=1, spec=spec, env={"A": "1"}, secrets={"K": "v"})
    assert protocol.read(to_json(lease), Lease) == lease
    assert type(protocol.read(to_json(lease), Lease).spec.limits.memory) is int  # not 6.7e7
    beat = Heartbeat(running=[("j1", 2)], draining=True)
    assert protocol.read(to_json(beat), Heartbeat) == beat


def test_what_a_runtime_applied_is_cut_to_what_a_finish_carries() -> None:
    """A worker allowed `CI_*` among a hundred such variables still reports its job: the list of
    names ends in a marker instead of being refused (which would leave the job unreported)."""
    names = [f"CI_{n}" for n in range(100)]
    applied = protocol.fit_applied({"envAllowed": names, "image": "x" * 500, "cpus": 0.5})
    fin = protocol.read({**FIN, **TIMES, "applied": applied}, Finish)
    assert fin.applied is not None
    assert fin.applied["envAllowed"][:63] == names[:63]
    assert fin.applied["envAllowed"][63] == "... 37 more"
    assert len(fin.applied["image"]) == 200 and fin.applied["cpus"] == 0.5
    odd = protocol.fit_applied({"big": 2**70, "nan": float("nan"), "nested": [[1]], "obj": {}})
    assert protocol.read({**FIN, **TIMES, "applied": odd}, Finish).applied == {
        "big": str(2**70),
        "nan": "nan",
        "nested": ["[1]"],
        "obj": "{}",
    }


@pytest.mark.parametrize(
    ("lease", "named"),
    [
        ({**LEASE, "attempt": "1", "spec": SPEC}, "attempt"),
        (LEASE, "spec is required"),
        ({**LEASE, "spec": {**SPEC, "action": None}}, "spec.action"),
        ({**LEASE, "spec": {**SPEC, "timeout": -5}}, "spec.timeout"),
        ({**LEASE, "spec": SPEC, "env": {"A": 1}}, "env"),
        ({**LEASE, "spec": {**SPEC, "retries": True}}, "spec.retries"),
        ({**LEASE, "spec": {**SPEC, "limits": {"memory": 1.5}}}, "spec.limits.memory"),
        ({**LEASE, "spec": {**SPEC, "limits": {"memory": 1}}}, "spec.limits.memory"),
    ],
)
async def test_a_worker_refuses_a_lease_that_is_not_valid(
    lease: dict[str, Any], named: str
) -> None:
    """A master (here a stand-in aiohttp server, as the worker can't tell) that sends a broken
    lease gets no job run: the worker's client raises MasterError, a failed call to its agent."""

    async def answer(request: web.Request) -> web.Response:
        if request.path == protocol.REGISTER:
            welcome = {"worker": "w1", "secret": "s", "poll_hold_s": 1.0}
            return web.json_response({**welcome, "heartbeat_s": 1.0, "lease_s": 5.0}, status=201)
        return web.json_response(lease)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        MasterClient(str(server.make_url("/")), join="j") as client,
    ):
        worker = (await client.register(protocol.read(REG, Registration))).worker
        with pytest.raises(MasterError) as raised:
            await client.lease(worker)
    assert "the master sent a lease that is not valid" in str(raised.value)
    assert named in str(raised.value)
