"""DockerRuntime against the real Docker engine and the local busybox image, networking off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from harness import docker_cli

from asphalt.limits import NO_LIMITS, Limits
from asphalt.protocol import STDERR
from asphalt.worker.outputs import OutputsError, parse_outputs
from asphalt.worker.runtimes import DockerRuntime, JobSpec, RuntimeFailure
from asphalt.worker.runtimes.docker import CAP_ADD, DEFAULT_PIDS, LOG_GAP_NOTE
from asphalt.worker.runtimes.outputs_file import OutputsFile

pytestmark = pytest.mark.docker

# The capabilities' bit numbers (linux/capability.h), to read /proc/PID/status with.
CAP_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_BIND_SERVICE": 10,
}


def spec(image: str, action: str | list[str], limits: Limits = NO_LIMITS, **env: str) -> JobSpec:
    job_id = f"docker-{uuid.uuid4().hex[:8]}"
    return JobSpec(
        job_id=job_id,
        attempt=3,
        action=action,
        container=image,
        env=env,
        worker_id="w-test",
        limits=limits,
    )


class Output:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.pieces: list[bytes] = []
        self.stderr: list[bytes] = []
        self.first = asyncio.Event()
        self.delay_s = delay_s

    async def __call__(self, chunk: bytes, stream: int) -> None:
        self.pieces.append(chunk)
        if stream == STDERR:
            self.stderr.append(chunk)
        self.first.set()
        await asyncio.sleep(self.delay_s)

    @property
    def text(self) -> str:
        return b"".join(self.pieces).decode()


async def containers_of(job: JobSpec) -> str:
    return await docker_cli("ps", "-aq", "--filter", f"label=asphalt.job={job.job_id}")


async def wait_for_container(job: JobSpec) -> str:
    for _ in range(100):
        if found := await containers_of(job):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no container for {job.job_id}")


async def inspect_while_running(runtime: DockerRuntime, job: JobSpec) -> dict[str, Any]:
    """`docker inspect` of the job's container while it runs; then the job is cancelled."""
    out = Output()
    run = asyncio.create_task(runtime.run(job, out, grace_s=1))
    try:
        await asyncio.wait_for(out.first.wait(), 30)
        found: list[dict[str, Any]] = json.loads(
            await docker_cli("inspect", await wait_for_container(job))
        )
        assert found[0]["State"]["Running"]
        return found[0]
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


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


async def test_stderr_comes_apart_from_stdout(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    out = Output()
    action = "echo out; echo err >&2; sleep 0.2; echo out2; echo err2 >&2"
    assert await docker_runtime.run(spec(test_image, action), out, grace_s=1) == 0
    assert b"".join(out.stderr) == b"err\nerr2\n"
    assert sorted(out.text.splitlines()) == ["err", "err2", "out", "out2"]


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


async def test_a_running_container_is_hardened_and_limited_as_applied_says(test_image: str) -> None:
    runtime = DockerRuntime(network="none", pull=False, limits=Limits(memory=256 << 20, pids=200))
    job = spec(test_image, "echo started; sleep 100", limits=Limits(memory=64 << 20, cpus=0.5))
    try:
        found = await inspect_while_running(runtime, job)
    finally:
        await runtime.close()
    host = found["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(CAP_ADD)
    assert host["PidsLimit"] == 200  # the worker's default: the job gave none
    assert host["Memory"] == host["MemorySwap"] == 64 << 20  # the job's, and no swap beyond
    assert host["NanoCpus"] == 500_000_000
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "2", "max-size": "50m"},
    }
    assert host["NetworkMode"] == "none"
    assert found["Mounts"] == []
    assert not host["Binds"]
    assert runtime.applied(job) == {
        "runtime": "docker",
        "noNewPrivileges": True,
        "capDrop": ["ALL"],
        "capAdd": host["CapAdd"],
        "init": True,
        "privileged": False,
        "pidsLimit": 200,
        "memory": 64 << 20,
        "cpus": 0.5,
        "logMaxSize": "50m",
        "logMaxFiles": 2,
        "network": "none",
    }


async def test_without_limits_a_container_gets_the_built_in_pids_limit_only(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    job = spec(test_image, "echo started; sleep 100")
    host = (await inspect_while_running(docker_runtime, job))["HostConfig"]
    assert (host["PidsLimit"], host["Memory"], host["NanoCpus"]) == (DEFAULT_PIDS, 0, 0)
    applied = docker_runtime.applied(job)
    assert (applied["pidsLimit"], applied["memory"], applied["cpus"]) == (DEFAULT_PIDS, None, None)


async def test_the_job_holds_only_the_capabilities_given_and_cannot_gain_more(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    action = "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; mknod /tmp/null c 1 3"
    out = Output()
    assert await docker_runtime.run(spec(test_image, action), out, grace_s=1) != 0
    mask = f"{sum(1 << CAP_BITS[cap] for cap in CAP_ADD):016x}"
    # stdout and stderr are two streams in Docker's log: mknod's complaint may come first.
    lines = [line for line in out.text.splitlines() if ":\t" in line]
    status = dict(line.split(":\t", 1) for line in lines)
    assert status == {"CapBnd": mask, "CapEff": mask, "NoNewPrivs": "1"}
    assert "Operation not permitted" in out.text  # mknod needs the MKNOD left out


async def test_limits_docker_cannot_give_are_a_runtime_failure(
    docker_runtime: DockerRuntime, test_image: str
) -> None:
    job = spec(test_image, "true", limits=Limits(cpus=1024))  # more CPUs than this machine has
    with pytest.raises(RuntimeFailure, match=r"docker cannot run the container: .*CPUs"):
        await docker_runtime.run(job, Output(), grace_s=1)
    assert await containers_of(job) == ""


async def test_a_job_that_prints_more_than_the_log_keeps_ends_with_its_tail_after_a_note(
    test_image: str,
) -> None:
    # 2 MB of output is some 20 MB of Docker's JSON log: it is cut many times on the way. The
    # job waits to be told that its output is being followed, so that its start is seen.
    runtime = DockerRuntime(network="none", pull=False, log_max_size="1m")
    job = spec(test_image, "echo start; until [ -e /tmp/go ]; do sleep 0.1; done; seq 1 300000")
    out = Output()
    run = asyncio.create_task(runtime.run(job, out, grace_s=1))
    try:
        await asyncio.wait_for(out.first.wait(), 30)
        await docker_cli("exec", await wait_for_container(job), "touch", "/tmp/go")
        assert await run == 0
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await runtime.close()
    printed = "start\n" + "".join(f"{n}\n" for n in range(1, 300001))
    head, tail = out.text.split(LOG_GAP_NOTE.decode())  # the note comes once
    assert head.startswith("start\n1\n2\n3\n")
    assert len(tail) > 10000
    assert printed.endswith(tail)


# $ASPHALT_OUTPUTS: a file in the container, copied out to the worker's file once the job ends


def with_outputs(job: JobSpec, tmp_path: Path) -> tuple[JobSpec, OutputsFile]:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    outputs = OutputsFile.create(private)
    return replace(job, outputs=outputs), outputs


@pytest.fixture
async def nobody_image(test_image: str) -> AsyncIterator[str]:
    """The test image, run as user and group 65534 unless told otherwise."""
    name = f"asphalt-test:nobody-{uuid.uuid4().hex[:8]}"
    made = await docker_cli("create", "--network", "none", test_image, "true")
    try:
        await docker_cli("commit", "--change", "USER 65534:65534", made, name)
    finally:
        await docker_cli("rm", made)
    yield name
    await docker_cli("rmi", name)


BOTH_FORMS = """
    echo "$ASPHALT_OUTPUTS"; id -u
    echo "A=1" >> "$ASPHALT_OUTPUTS"
    printf 'B<<END\\nline one\\nline two\\nEND\\n' >> "$ASPHALT_OUTPUTS"
"""


@pytest.mark.parametrize("user", ["root", "nobody"])
async def test_a_job_writes_both_forms_of_outputs_whatever_user_its_image_runs_as(
    docker_runtime: DockerRuntime, test_image: str, nobody_image: str, tmp_path: Path, user: str
) -> None:
    image = nobody_image if user == "nobody" else test_image
    job, outputs = with_outputs(spec(image, BOTH_FORMS, ASPHALT_OUTPUTS="overridden"), tmp_path)
    out = Output()
    assert await docker_runtime.run(job, out, grace_s=1) == 0
    assert out.text.split() == ["/.asphalt/outputs", "65534" if user == "nobody" else "0"]
    assert parse_outputs(outputs.read()) == {"A": "1", "B": "line one\nline two"}
    assert await containers_of(job) == ""


async def test_outputs_need_no_mount_from_the_worker(
    docker_runtime: DockerRuntime, test_image: str, tmp_path: Path
) -> None:
    job, _ = with_outputs(spec(test_image, "echo started; sleep 100"), tmp_path)
    found = await inspect_while_running(docker_runtime, job)
    assert found["Mounts"] == []
    assert not found["HostConfig"]["Binds"]


@pytest.mark.parametrize(
    ("action", "read"),
    [
        ('rm "$ASPHALT_OUTPUTS"', b""),
        ('rm "$ASPHALT_OUTPUTS"; ln -s /etc/passwd "$ASPHALT_OUTPUTS"', "is not a regular file"),
        ('rm "$ASPHALT_OUTPUTS"; mkdir "$ASPHALT_OUTPUTS"', "is not a regular file"),
        ('head -c 2000000 /dev/zero >"$ASPHALT_OUTPUTS"', "is over 1 MiB"),
        ('rm -r /.asphalt; echo "A=1" >/.asphalt', "could not be copied out of the container: .*"),
    ],
)
async def test_what_a_container_leaves_for_outputs_is_judged_as_a_host_jobs_would_be(
    docker_runtime: DockerRuntime, test_image: str, tmp_path: Path, action: str, read: bytes | str
) -> None:
    job, outputs = with_outputs(spec(test_image, action), tmp_path)
    assert await docker_runtime.run(job, Output(), grace_s=1) == 0
    if isinstance(read, bytes):
        assert outputs.read() == read
    else:
        with pytest.raises(OutputsError, match=f"^ASPHALT_OUTPUTS {read}$"):
            outputs.read()
    assert await containers_of(job) == ""
