"""HostRuntime with real processes: exit codes, env, streaming, cancellation, no strays."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest
from harness import Output

from asphalt.worker.runtimes import HostRuntime, JobSpec, RuntimeFailure


def spec(action: str | list[str], **env: str) -> JobSpec:
    return JobSpec(job_id=f"host-{uuid.uuid4().hex[:8]}", attempt=2, action=action, env=env)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def wait_for_pids(path: Path, count: int) -> list[int]:
    for _ in range(200):
        if len(pids := read_pids(path)) >= count:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never listed {count} pids")


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def test_exit_code_is_returned() -> None:
    assert await HostRuntime().run(spec("exit 3"), Output(), grace_s=1) == 3


async def test_a_process_killed_by_a_signal_returns_128_plus_the_signal() -> None:
    assert await HostRuntime().run(spec("kill -9 $$"), Output(), grace_s=1) == 137


async def test_the_job_sees_the_worker_env_its_own_env_and_its_id() -> None:
    out = Output()
    job = spec('echo "$GREETING|$ASPHALT_JOB_ID|$ASPHALT_ATTEMPT|$PATH"', GREETING="hi there")
    await HostRuntime().run(job, out, grace_s=1)
    assert out.text == f"hi there|{job.job_id}|2|{os.environ['PATH']}\n"


async def test_stdout_and_stderr_arrive_merged() -> None:
    out = Output()
    await HostRuntime().run(spec("echo out; echo err >&2; echo out2"), out, grace_s=1)
    assert out.text == "out\nerr\nout2\n"


async def test_an_argv_list_runs_without_a_shell() -> None:
    out = Output()
    await HostRuntime().run(spec(["printf", "%s|", "a b", "$HOME"]), out, grace_s=1)
    assert out.text == "a b|$HOME|"


async def test_the_job_reads_an_empty_stdin() -> None:
    assert await HostRuntime().run(spec("cat"), Output(), grace_s=1) == 0


async def test_output_reaches_the_sink_while_the_job_still_runs() -> None:
    out = Output()
    job = spec("echo first; sleep 2; echo last")
    run = asyncio.create_task(HostRuntime().run(job, out, grace_s=1))
    await asyncio.wait_for(out.first.wait(), 1.5)
    assert not run.done()
    assert out.text == "first\n"
    assert await run == 0
    assert out.text == "first\nlast\n"


async def test_a_lot_of_output_arrives_whole_in_pieces_of_at_most_64_kib() -> None:
    out = Output()
    await HostRuntime().run(spec("seq 1 200000"), out, grace_s=1)
    assert out.text == "".join(f"{n}\n" for n in range(1, 200001))
    assert max(map(len, out.pieces)) <= 65536


async def test_a_missing_executable_is_a_runtime_failure() -> None:
    with pytest.raises(RuntimeFailure, match="executable not found: /nonexistent/tool"):
        await HostRuntime().run(spec(["/nonexistent/tool"]), Output(), grace_s=1)


async def test_cancel_stops_the_job_and_everything_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    action = f"sleep 100 & echo $! >{pids}; echo $$ >>{pids}; echo started; wait"
    run = asyncio.create_task(HostRuntime().run(spec(action), Output(), grace_s=60))
    child, shell = await wait_for_pids(pids, 2)
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert time.monotonic() - started < 30  # they took the SIGTERM; no need to wait the grace
    assert not alive(child)
    assert not alive(shell)


async def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    action = f"trap '' TERM; sleep 100 & echo $! >{pids}; echo $$ >>{pids}; wait; wait"
    run = asyncio.create_task(HostRuntime().run(spec(action), Output(), grace_s=0.5))
    child, shell = await wait_for_pids(pids, 2)
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert 0.5 <= time.monotonic() - started < 60  # after the grace, not after the sleep
    assert not alive(child)
    assert not alive(shell)


async def test_a_background_child_left_running_does_not_hang_the_job(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    out = Output()
    job = spec(f"sleep 100 & echo $! >{pids}; echo done")
    status = await HostRuntime().run(job, out, grace_s=5)
    assert (status, out.text) == (0, "done\n")
    assert time.monotonic() - started < 60  # not the child's 100 s
    assert not alive(int(pids.read_text()))


async def test_a_child_that_left_the_process_group_is_found_by_its_job_id(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    await HostRuntime().run(spec(f"setsid sleep 100 & echo $! >{pids}"), Output(), grace_s=5)
    assert time.monotonic() - started < 60  # not the child's 100 s
    assert not alive(int(pids.read_text()))


async def test_a_failing_sink_stops_the_job(tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    async def broken(chunk: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await HostRuntime().run(spec(f"echo $$ >{pids}; echo hi; sleep 100"), broken, grace_s=1)
    assert not alive(int(pids.read_text()))


async def test_host_is_always_available() -> None:
    assert await HostRuntime().available()


async def test_an_env_name_that_cannot_exist_is_a_runtime_failure() -> None:
    with pytest.raises(RuntimeFailure, match="cannot start /bin/sh"):
        await HostRuntime().run(spec("true", **{"A=B": "x"}), Output(), grace_s=1)


async def test_output_left_in_the_pipe_is_read_whole_however_slow_the_sink() -> None:
    out = Output()

    async def slow(chunk: bytes) -> None:
        await asyncio.sleep(0.8)  # three of these outlast the wait for a quiet pipe
        await out(chunk)

    await HostRuntime().run(spec("seq 1 30000"), slow, grace_s=1)  # more than a pipe holds
    assert out.text == "".join(f"{n}\n" for n in range(1, 30001))
