"""HostRuntime with real processes: exit codes, a clean env, a fresh working directory,
streaming, cancellation, no strays."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from harness import Output

from asphalt.protocol import STDERR, STDOUT
from asphalt.worker.outputs import FILE_LIMIT, OutputsError, parse_outputs
from asphalt.worker.runtimes import HostRuntime, JobSpec, RuntimeFailure
from asphalt.worker.runtimes.base import BASIC_ENV, DEFAULT_PATH
from asphalt.worker.runtimes.outputs_file import OutputsFile

JOB_MARKERS = {"ASPHALT_JOB_ID", "ASPHALT_ATTEMPT", "ASPHALT_WORKER_ID"}


def spec(action: str | list[str], worker: str = "", **env: str) -> JobSpec:
    job_id = f"host-{uuid.uuid4().hex[:8]}"
    return JobSpec(job_id=job_id, attempt=2, action=action, env=env, worker_id=worker)


def names(env_output: str) -> set[str]:
    return {line.split("=", 1)[0] for line in env_output.splitlines()}


def basic(name: str) -> bool:
    return name in BASIC_ENV or name.startswith("LC_")


def read_text(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def is_dir(path: Path) -> bool:
    return path.is_dir()


async def wait_for_text(path: Path) -> str:
    for _ in range(500):
        if text := read_text(path):
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing was written to {path}")


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def gone(pid: int, within_s: float = 5.0) -> None:
    """Wait for a process that was sent SIGKILL to be gone (it is not, if it never was)."""
    for _ in range(int(within_s / 0.02)):
        if not alive(pid):
            return
        await asyncio.sleep(0.02)
    assert not alive(pid), f"process {pid} still runs {within_s} s after it was killed"


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


async def test_the_job_sees_the_workers_path_its_own_env_and_its_id() -> None:
    out = Output()
    job = spec('echo "$GREETING|$ASPHALT_JOB_ID|$ASPHALT_ATTEMPT|$PATH"', GREETING="hi there")
    await HostRuntime().run(job, out, grace_s=1)
    assert out.text == f"hi there|{job.job_id}|2|{os.environ['PATH']}\n"


async def test_the_job_sees_nothing_of_the_workers_env_but_the_basics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASPHALT_JOIN", "the-join-token")
    monkeypatch.setenv("ASPHALT_TEST_SECRET", "the-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-key")
    monkeypatch.setenv("LC_TIME", "C")
    runtime, out = HostRuntime(), Output()
    job = spec(["env"], GREETING="hi")
    assert await runtime.run(job, out, grace_s=1) == 0
    assert not any(value in out.text for value in ("the-join-token", "the-secret", "the-key"))
    from_worker = names(out.text) - {"GREETING"} - JOB_MARKERS
    assert "LC_TIME" in from_worker
    assert all(map(basic, from_worker)), from_worker
    assert sorted(from_worker) == runtime.applied(job)["envAllowed"]


async def test_allowed_names_and_prefixes_pass_but_never_the_workers_own_asphalt_vars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CI_TOKEN", "BUILD_A", "BUILD_B", "BUILDX", "AX", "ASPHALT_JOIN"):
        monkeypatch.setenv(name, f"value of {name}")
    runtime, out = HostRuntime(env_allow=("CI_TOKEN", "BUILD_*", "A*")), Output()
    job = spec(["env"])
    await runtime.run(job, out, grace_s=1)
    seen = names(out.text)
    assert {"CI_TOKEN", "BUILD_A", "BUILD_B", "AX"} <= seen
    assert not {"BUILDX", "ASPHALT_JOIN"} & seen
    assert "value of CI_TOKEN" in out.text
    assert sorted(seen - JOB_MARKERS) == runtime.applied(job)["envAllowed"]


@pytest.mark.parametrize("item", ["ASPHALT_JOIN", "ASPHALT_*", "*", "TWO WORDS", "A*B", ""])
def test_an_allow_list_of_the_workers_own_vars_or_of_no_names_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="cannot allow"):
        HostRuntime(env_allow=("CI", item))


async def test_the_jobs_own_env_passes_and_wins_over_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")
    runtime, out = HostRuntime(), Output()
    job = spec('echo "$LANG|$ASPHALT_PROJECT"', LANG="de_DE.UTF-8", ASPHALT_PROJECT="web")
    await runtime.run(job, out, grace_s=1)
    assert out.text == "de_DE.UTF-8|web\n"
    assert "LANG" not in runtime.applied(job)["envAllowed"]  # the job's, not the worker's


async def test_a_worker_without_path_gives_jobs_a_sane_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH")
    out = Output()
    await HostRuntime().run(spec('echo "$PATH"'), out, grace_s=1)
    assert out.text == f"{DEFAULT_PATH}\n"


def test_applied_says_the_env_is_clean_the_directory_fresh_and_no_limits_are_enforced() -> None:
    applied = HostRuntime().applied(spec("true"))
    assert applied == {
        "runtime": "host",
        "cleanEnv": True,
        "envAllowed": applied["envAllowed"],
        "workdir": "fresh",
        "pidsLimit": None,
        "memory": None,
        "cpus": None,
    }


async def test_each_job_runs_in_a_fresh_private_directory_removed_afterwards(
    tmp_path: Path,
) -> None:
    root = tmp_path / "work"
    runtime = HostRuntime(work_root=root)
    action = "pwd; stat -c %a .; ls -A | wc -l; mkdir -p a/b; touch a/b/c; chmod 0 a/b a"
    jobs = [spec(action, worker="w-1") for _ in range(2)]
    outs = [Output(), Output()]
    await asyncio.gather(*(runtime.run(j, o, grace_s=1) for j, o in zip(jobs, outs, strict=True)))
    await runtime.close()  # removal runs in the background, owned by the runtime
    dirs = []
    for job, out in zip(jobs, outs, strict=True):
        cwd, mode, entries = out.text.split()
        dirs.append(Path(cwd))
        assert Path(cwd).parent == root
        assert Path(cwd).name.startswith(f"w-1+{job.job_id}-2-")  # reap finds them by worker
        assert (mode, entries) == ("700", "0")
        assert not is_dir(Path(cwd))
    assert dirs[0] != dirs[1]
    assert Path.cwd() not in dirs


async def test_the_working_directory_is_removed_after_a_cancel(tmp_path: Path) -> None:
    root, where = tmp_path / "work", tmp_path / "cwd"
    runtime = HostRuntime(work_root=root)
    run = asyncio.create_task(runtime.run(spec(f"pwd >{where}; sleep 100"), Output(), grace_s=5))
    cwd = Path(await wait_for_text(where))
    assert is_dir(cwd) and cwd.is_relative_to(root)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await runtime.close()
    assert not is_dir(cwd)


async def test_the_working_directory_is_removed_when_the_job_cannot_start(tmp_path: Path) -> None:
    root = tmp_path / "work"
    runtime = HostRuntime(work_root=root)
    with pytest.raises(RuntimeFailure, match="executable not found"):
        await runtime.run(spec(["/nonexistent/tool"]), Output(), grace_s=1)
    await runtime.close()
    assert list(root.iterdir()) == []


async def test_a_work_root_that_cannot_be_made_is_a_runtime_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    runtime = HostRuntime(work_root=tmp_path / "file" / "work")
    with pytest.raises(RuntimeFailure, match="cannot make a working directory"):
        await runtime.run(spec("true"), Output(), grace_s=1)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
async def test_a_work_root_of_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(RuntimeFailure, match="not a directory of this user"):
        await HostRuntime(work_root=root).run(spec("true"), Output(), grace_s=1)


async def test_reap_removes_the_working_directories_of_that_worker_only(tmp_path: Path) -> None:
    root = tmp_path / "work"
    for worker in ("w", "w-1", "w-10"):
        (root / f"{worker}+job-1-abc").mkdir(parents=True)
        (root / f"{worker}+job-1-abc" / "left").write_text("over")
    assert await HostRuntime(work_root=root).reap("w-1") == []
    assert sorted(p.name for p in root.iterdir()) == ["w+job-1-abc", "w-10+job-1-abc"]


async def test_stdout_and_stderr_arrive_each_on_its_own_stream() -> None:
    out = Output()
    await HostRuntime().run(spec("echo out; echo err >&2; echo out2"), out, grace_s=1)
    assert out.of(STDOUT) == "out\nout2\n" and out.of(STDERR) == "err\n"
    assert sorted(out.text.splitlines()) == ["err", "out", "out2"]


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
    # SIGKILL went to the whole group at once; the child's end is the kernel's, a moment later.
    await gone(child)
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


async def test_a_process_that_escaped_holding_only_stderr_does_not_hang_the_job(
    tmp_path: Path,
) -> None:
    # Its own session and no job variables: nothing finds it to stop it. It holds stderr and
    # not stdout; the job ends once stderr has been quiet a moment, as with one pipe.
    pids = tmp_path / "pids"
    job = spec(f"env -i KEEP=1 setsid sleep 30 >/dev/null </dev/null & echo $! >{pids}; echo done")
    started = time.monotonic()
    out = Output()
    try:
        status = await asyncio.wait_for(HostRuntime().run(job, out, grace_s=1), 25)
        assert (status, out.text) == (0, "done\n")
        assert time.monotonic() - started < 20  # not the escaped sleep's 30 s
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int(pids.read_text()), signal.SIGKILL)  # the one we started, by its id


async def test_a_failing_sink_stops_the_job(tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    async def broken(chunk: bytes, stream: int) -> None:
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

    async def slow(chunk: bytes, stream: int) -> None:
        await asyncio.sleep(0.8)  # three of these outlast the wait for a quiet pipe
        await out(chunk, stream)

    await HostRuntime().run(spec("seq 1 30000"), slow, grace_s=1)  # more than a pipe holds
    assert out.text == "".join(f"{n}\n" for n in range(1, 30001))


# $ASPHALT_OUTPUTS: the runtime points the job at the file; the runner reads it afterwards


def outputs_in(tmp_path: Path) -> OutputsFile:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    return OutputsFile.create(private)


async def test_a_job_writes_both_forms_of_outputs_to_a_file_outside_its_working_directory(
    tmp_path: Path,
) -> None:
    outputs = outputs_in(tmp_path)
    action = """
        echo "$ASPHALT_OUTPUTS"; ls -A | wc -l
        echo "A=1" >> "$ASPHALT_OUTPUTS"
        printf 'B<<END\\nline one\\nline two\\nEND\\n' >> "$ASPHALT_OUTPUTS"
    """
    job = replace(spec(action, ASPHALT_OUTPUTS="the job's own, overridden"), outputs=outputs)
    out = Output()
    assert await HostRuntime(work_root=tmp_path / "work").run(job, out, grace_s=1) == 0
    assert out.text.split() == [str(outputs.path), "0"]
    assert parse_outputs(outputs.read()) == {"A": "1", "B": "line one\nline two"}


async def test_a_job_without_an_outputs_file_gets_no_asphalt_outputs() -> None:
    out = Output()
    await HostRuntime().run(spec('echo "[$ASPHALT_OUTPUTS]"'), out, grace_s=1)
    assert out.text == "[]\n"


@pytest.mark.parametrize(
    "action",
    [
        'rm "$ASPHALT_OUTPUTS"; ln -s /etc/passwd "$ASPHALT_OUTPUTS"',
        'rm "$ASPHALT_OUTPUTS"; mkfifo "$ASPHALT_OUTPUTS"',
        'rm "$ASPHALT_OUTPUTS"; mkdir "$ASPHALT_OUTPUTS"',
    ],
)
async def test_a_link_a_pipe_or_a_directory_for_outputs_is_refused_never_followed(
    tmp_path: Path, action: str
) -> None:
    outputs = outputs_in(tmp_path)
    assert await HostRuntime().run(replace(spec(action), outputs=outputs), Output(), grace_s=1) == 0
    with pytest.raises(OutputsError, match=r"^ASPHALT_OUTPUTS is not a regular file$"):
        outputs.read()


async def test_an_outputs_file_the_job_removed_holds_no_outputs(tmp_path: Path) -> None:
    outputs = outputs_in(tmp_path)
    job = replace(spec('echo A=1 >"$ASPHALT_OUTPUTS"; rm "$ASPHALT_OUTPUTS"'), outputs=outputs)
    await HostRuntime().run(job, Output(), grace_s=1)
    assert outputs.read() == b""


async def test_an_outputs_file_is_read_with_a_bound_however_big_the_job_made_it(
    tmp_path: Path,
) -> None:
    outputs = outputs_in(tmp_path)
    job = spec(f'head -c {FILE_LIMIT} /dev/zero | tr "\\0" x >"$ASPHALT_OUTPUTS"')
    await HostRuntime().run(replace(job, outputs=outputs), Output(), grace_s=1)
    assert len(outputs.read()) == FILE_LIMIT  # as much as may be read, and all of it
    job = spec('truncate -s 1T "$ASPHALT_OUTPUTS"')  # sparse: far more than this box's memory
    await HostRuntime().run(replace(job, outputs=outputs), Output(), grace_s=1)
    started = time.monotonic()
    with pytest.raises(OutputsError, match=r"^ASPHALT_OUTPUTS is over 1 MiB$"):
        outputs.read()
    assert time.monotonic() - started < 5
