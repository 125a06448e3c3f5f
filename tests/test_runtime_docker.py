"""DockerRuntime against the real Docker engine and the local busybox image, networking off."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asphalt.worker.runtimes import DockerRuntime, JobSpec, RuntimeFailure

pytestmark = pytest.mark.docker


def spec(image: str, action: str | list[str], **env: str) -> JobSpec:
    job_id = f"docker-{uuid.uuid4().hex[:8]}"
    return JobSpec(
        job_id=job_id, attempt=3, action=action, container=image, env=env, worker_id="w-test"
    )


class Output:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.pieces: list[bytes] = []
        self.first = asyncio.Event()
        self.delay_s = delay_s

    async def __call__(self, chunk: bytes) -> None:
        self.pieces.append(chunk)
        self.first.set()
        await asyncio.sleep(self.delay_s)

    @property
    def text(self) -> str:
        return b"".join(self.pieces).decode()


async def docker_cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def containers_of(job: JobSpec) -> str:
    return await docker_cli("ps", "-aq", "--filter", f"label=asphalt.job={job.job_id}")


async def wait_for_container(job: JobSpec) -> str:
    for _ in range(100):
        if found := await containers_of(job):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no container for {job.job_id}")


@pytest.fixture
async def docker_runtime(test_image: str) -> AsyncIterator[DockerRuntime]:
    runtime = DockerRuntime(network="none", pull=False)
    yield runtime
    await runtime.close()


async def test_available_when_the_daemon_answers(docker_runtime: DockerRuntime) -> None:
    assert await docker_runtime.available()


async def test_exit_code_is_returned_and_no_container_is_left(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    job = spec(test_image, "echo hi; exit 3")
    out = Output()
    assert await docker_runtime.run(job, out, grace_s=1) == 3
    assert out.text == "hi\n"
    assert await containers_of(job) == ""


async def test_the_job_sees_its_env_and_ids_but_no_network(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    action = 'echo "$GREETING|$ASPHALT_JOB_ID|$ASPHALT_ATTEMPT"; ls /sys/class/net'
    job = spec(test_image, action, GREETING="hi, there")
    out = Output()
    assert await docker_runtime.run(job, out, grace_s=1) == 0
    assert out.text == f"hi, there|{job.job_id}|3\nlo\n"


async def test_an_argv_list_runs_without_a_shell(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    out = Output()
    await docker_runtime.run(spec(test_image, ["printf", "%s|", "a b", "$HOME"]), out, grace_s=1)
    assert out.text == "a b|$HOME|"


async def test_a_process_killed_by_a_signal_returns_128_plus_the_signal(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    assert await docker_runtime.run(spec(test_image, "kill -9 $$"), Output(), grace_s=1) == 137


async def test_output_reaches_the_sink_while_the_job_still_runs(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    out = Output()
    job = spec(test_image, "echo first; sleep 2; echo last")
    run = asyncio.create_task(docker_runtime.run(job, out, grace_s=1))
    await asyncio.wait_for(out.first.wait(), 5)
    assert not run.done()
    assert out.text == "first\n"
    assert await run == 0
    assert out.text == "first\nlast\n"


async def test_all_output_arrives_even_through_a_slow_sink(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    # A reader that falls behind as the container exits is where Docker 20.10 cuts a follow.
    out = Output(delay_s=0.3)
    assert await docker_runtime.run(spec(test_image, "seq 1 100000"), out, grace_s=1) == 0
    assert out.text == "".join(f"{n}\n" for n in range(1, 100001))


async def test_cancel_stops_and_removes_the_labelled_container(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    job = spec(test_image, "echo started; sleep 100")
    out = Output()
    run = asyncio.create_task(docker_runtime.run(job, out, grace_s=60))
    await asyncio.wait_for(out.first.wait(), 10)
    container = await wait_for_container(job)
    labels = await docker_cli("inspect", "-f", "{{json .Config.Labels}}", container)
    assert '"asphalt.attempt":"3"' in labels
    assert '"asphalt.worker":"w-test"' in labels
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert time.monotonic() - started < 30  # the init passed SIGTERM on; no waiting out the grace
    assert await containers_of(job) == ""


async def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    job = spec(test_image, "trap '' TERM; echo started; sleep 100 & wait; wait")
    out = Output()
    run = asyncio.create_task(docker_runtime.run(job, out, grace_s=1))
    await asyncio.wait_for(out.first.wait(), 10)
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    elapsed = time.monotonic() - started
    assert elapsed >= 1 and elapsed < 60  # killed after the grace, not after the sleep
    assert await containers_of(job) == ""


async def test_the_log_thread_ends_with_the_run(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    await docker_runtime.run(spec(test_image, "echo hi"), Output(), grace_s=1)
    job = spec(test_image, "sleep 100")
    run = asyncio.create_task(docker_runtime.run(job, Output(), grace_s=1))
    await asyncio.sleep(1)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not [t for t in threading.enumerate() if t.name.startswith("asphalt-logs")]


async def test_a_missing_image_fails_fast_even_when_a_pull_is_tried(test_image: str) -> None:
    runtime = DockerRuntime(network="none", pull=True)  # no registry is reachable here
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match="image not found: asphalt-test/missing:1"):
        await runtime.run(spec("asphalt-test/missing:1", "true"), Output(), grace_s=1)
    assert time.monotonic() - started < 60
    await runtime.close()


async def test_a_missing_image_is_not_pulled_when_pulls_are_off(
    docker_runtime: DockerRuntime,
) -> None:
    with pytest.raises(RuntimeFailure, match="image not found: asphalt-test/missing:1"):
        await docker_runtime.run(spec("asphalt-test/missing:1", "true"), Output(), grace_s=1)


async def test_an_unreachable_daemon_is_unavailable_and_fails_jobs(tmp_path: Path) -> None:
    runtime = DockerRuntime(network="none", base_url=f"unix://{tmp_path}/docker.sock")
    assert not await runtime.available()
    with pytest.raises(RuntimeFailure, match="docker daemon unreachable"):
        await runtime.run(spec("asphalt-test:busybox", "true"), Output(), grace_s=1)
    await runtime.close()


async def test_reap_removes_only_the_containers_of_that_worker(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    mine, theirs = (f"reap-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for worker, job in (("w-old", mine), ("w-other", theirs)):
        await docker_cli(
            *("create", "--network", "none", "--label", f"asphalt.worker={worker}"),
            *("--label", f"asphalt.job={job}", test_image, "sleep", "100"),
        )
    try:
        assert await docker_runtime.reap("w-old") == [mine]
        assert await docker_cli("ps", "-aq", "--filter", f"label=asphalt.job={mine}") == ""
        assert await docker_cli("ps", "-aq", "--filter", f"label=asphalt.job={theirs}") != ""
    finally:
        await docker_runtime.reap("w-other")
