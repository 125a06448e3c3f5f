"""SwarmRuntime against a real single-node swarm (conftest's swarm_network) and the local
busybox image: one-shot services, their output and exit codes, and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from harness import docker_cli

from asphalt.limits import Limits
from asphalt.protocol import STDERR, STDOUT
from asphalt.worker.runtimes import JobSpec, RuntimeFailure, SwarmRuntime
from asphalt.worker.runtimes.base import Meter

pytestmark = pytest.mark.docker


def spec(image: str, action: str | list[str], **env: str) -> JobSpec:
    return JobSpec(
        job_id=f"swarm-{uuid.uuid4().hex[:8]}",
        attempt=2,
        action=action,
        container=image,
        env=env,
        worker_id=f"w-{uuid.uuid4().hex[:6]}",
        types=("gpu",),
        meter=Meter(),
    )


class Output:
    def __init__(self) -> None:
        self.streams: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        self.first = asyncio.Event()

    async def __call__(self, chunk: bytes, stream: int) -> None:
        self.streams[stream].append(chunk)
        self.first.set()

    def of(self, stream: int) -> str:
        return b"".join(self.streams[stream]).decode()


async def services(label: str) -> list[str]:
    """The services with this label, and the containers of their tasks: none once a job ends
    (Docker 20.10 leaves a removed job service's containers; the runtime removes them)."""
    found = (await docker_cli("service", "ls", "-q", "--filter", f"label={label}")).split()
    return found + (await docker_cli("ps", "-aq", "--filter", f"label={label}")).split()


@pytest.fixture
async def swarm(swarm_network: str) -> AsyncIterator[SwarmRuntime]:
    runtime = SwarmRuntime(network=swarm_network)
    yield runtime
    await runtime.close()


async def test_it_is_there_on_a_manager(swarm: SwarmRuntime) -> None:
    assert await swarm.available()


async def test_exit_codes_and_both_streams_come_back_and_no_service_is_left(
    swarm: SwarmRuntime, test_image: str
) -> None:
    for code in (0, 5):
        job = spec(test_image, f"echo out; echo err >&2; echo more; exit {code}", GREETING="hi")
        out = Output()
        assert await swarm.run(job, out, grace_s=1) == code
        assert out.of(STDOUT) == "out\nmore\n" and out.of(STDERR) == "err\n"
        assert await services(f"asphalt.job={job.job_id}") == []
        assert job.meter is not None and "swarm" in job.meter.measured


async def test_an_argv_runs_after_the_entrypoint_and_the_job_sees_its_env(
    swarm: SwarmRuntime, test_image: str
) -> None:
    action = ["sh", "-c", 'echo "$GREETING $ASPHALT_JOB_ID"; ip route']
    job = spec(test_image, action, GREETING="hello there")
    out = Output()
    assert await swarm.run(job, out, grace_s=1) == 0
    first, *routes = out.of(STDOUT).split("\n")
    assert first == f"hello there {job.job_id}"
    assert routes and not any(r.startswith("default") for r in routes)  # no route out


async def test_output_streams_while_the_job_runs(swarm: SwarmRuntime, test_image: str) -> None:
    job = spec(test_image, "echo first; sleep 4; echo second")
    out = Output()
    run = asyncio.create_task(swarm.run(job, out, grace_s=1))
    await asyncio.wait_for(out.first.wait(), 30)
    assert out.of(STDOUT) == "first\n" and not run.done()
    assert await run == 0
    assert out.of(STDOUT) == "first\nsecond\n"


async def test_cancel_removes_the_labelled_service(swarm: SwarmRuntime, test_image: str) -> None:
    job = spec(test_image, "echo started; sleep 100")
    out = Output()
    run = asyncio.create_task(swarm.run(job, out, grace_s=2))
    await asyncio.wait_for(out.first.wait(), 30)
    (found,) = (
        await docker_cli("service", "ls", "-q", "--filter", f"label=asphalt.job={job.job_id}")
    ).split()
    (service,) = json.loads(await docker_cli("service", "inspect", found))
    spec_ = service["Spec"]
    assert spec_["Labels"]["asphalt.attempt"] == "2"
    assert spec_["Labels"]["asphalt.worker"] == job.worker_id
    assert "ReplicatedJob" in spec_["Mode"]
    assert spec_["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert spec_["TaskTemplate"]["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert time.monotonic() - started < 30
    assert await services(f"asphalt.job={job.job_id}") == []


async def test_a_missing_image_is_a_runtime_failure_and_a_missing_command_127(
    swarm: SwarmRuntime, test_image: str
) -> None:
    missing = spec("asphalt-test:no-such-tag", "true")
    with pytest.raises(RuntimeFailure, match="No such image"):
        await swarm.run(missing, Output(), grace_s=1)
    assert await services(f"asphalt.job={missing.job_id}") == []
    # The init exits 127 as a shell would, and says why, as for a docker job.
    no_command = spec(test_image, ["no-such-command"])
    out = Output()
    assert await swarm.run(no_command, out, grace_s=1) == 127
    assert "no-such-command" in out.of(STDERR)


async def test_limits_and_constraints_are_applied_as_said(
    swarm_network: str, test_image: str
) -> None:
    runtime = SwarmRuntime(
        network=swarm_network,
        constraints={"gpu": ("node.role==manager",), "other": ("node.role==worker",)},
        limits=Limits(memory=64 << 20, cpus=0.5, pids=100),
    )
    job = spec(
        test_image, "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
    )
    applied = runtime.applied(job)
    assert applied["constraints"] == ["node.role==manager"]
    assert (applied["memory"], applied["cpus"], applied["pidsLimit"]) == (64 << 20, 0.5, 100)
    out = Output()
    assert await runtime.run(job, out, grace_s=1) == 0
    assert out.of(STDOUT).strip() == "100"
    await runtime.close()


async def test_a_job_no_node_can_take_says_so_and_waits(
    swarm_network: str, test_image: str
) -> None:
    runtime = SwarmRuntime(network=swarm_network, constraints={"gpu": ("node.labels.nope==1",)})
    job = spec(test_image, "true")
    out = Output()
    run = asyncio.create_task(runtime.run(job, out, grace_s=1))
    await asyncio.wait_for(out.first.wait(), 30)
    assert "not placed" in out.of(STDERR) and not run.done()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await services(f"asphalt.job={job.job_id}") == []
    await runtime.close()


async def test_reap_removes_only_the_services_of_that_worker(
    swarm: SwarmRuntime, test_image: str
) -> None:
    mine, theirs = spec(test_image, "sleep 100"), spec(test_image, "sleep 100")
    runs = [asyncio.create_task(swarm.run(j, Output(), grace_s=1)) for j in (mine, theirs)]
    for job in (mine, theirs):
        for _ in range(200):
            if await services(f"asphalt.job={job.job_id}"):
                break
            await asyncio.sleep(0.05)
    other = SwarmRuntime()
    assert await other.reap(mine.worker_id) == [mine.job_id]
    assert await services(f"asphalt.job={mine.job_id}") == []
    assert not runs[1].done()
    (ended,) = await asyncio.gather(runs[0], return_exceptions=True)
    assert isinstance(ended, RuntimeFailure), ended
    assert await services(f"asphalt.job={theirs.job_id}") != []
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    assert await services(f"asphalt.job={theirs.job_id}") == []
    await other.close()


async def test_a_second_cancel_while_the_service_is_made_leaves_nothing(
    swarm: SwarmRuntime, test_image: str
) -> None:
    """A forced stop cancels twice; the service being made is still removed, and the run
    ends cancelled."""
    for wait_s in (0.0, 0.05, 0.3):
        job = spec(test_image, "sleep 100")
        run = asyncio.create_task(swarm.run(job, Output(), grace_s=1))
        await asyncio.sleep(wait_s)
        run.cancel()
        await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert await services(f"asphalt.job={job.job_id}") == []
