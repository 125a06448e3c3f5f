"""The host runtime, and what it shares with the singularity runtime: the process-group runner
and the clean environment (working directories: workdirs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import (
    DEFAULT_PATH,
    JobSpec,
    OutputPipe,
    OutputSink,
    RuntimeFailure,
    check_env_allow,
    copy_all,
    output_pipes,
    passed_env,
    quiet_s,
    worker_env,
)
from .host_cgroup import CgroupPool, JobCgroup, check_found, reaped
from .workdirs import WorkDirs, worker_prefix

# Every job process carries these, so what a job leaves behind can be found again by its id.
ENV_JOB = "ASPHALT_JOB_ID"
ENV_ATTEMPT = "ASPHALT_ATTEMPT"
ENV_WORKER = "ASPHALT_WORKER_ID"

_POLL_S = 0.05
_DRAIN_S = 2.0
_PROC = Path("/proc")
# Leaders of the jobs running now, by pid, with when each started (so that a pid used again is
# not mistaken for one); each leads its own group and never belongs to another job.
_LEADERS: dict[int, int] = {}
_SHORT_JOB_S = 1.0  # far too short for pids to wrap around and reach the job's own again
_UNSURE_LOOKS, _UNSURE_S = 10, 0.01
_KERNEL_THREAD = 0x00200000  # PF_KTHREAD in /proc/PID/stat flags: never a job's

# What applied() says of the limits on a job that runs as a plain process: none are enforced.
NONE_ENFORCED = {"pidsLimit": None, "memory": None, "cpus": None}


def job_env(spec: JobSpec) -> dict[str, str]:
    """The variables that mark a process (or container) as belonging to this job attempt."""
    return {ENV_JOB: spec.job_id, ENV_ATTEMPT: str(spec.attempt), ENV_WORKER: spec.worker_id}


def exit_code(returncode: int) -> int:
    """A shell-style exit code: a process killed by signal N gives 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class HostRuntime:
    """Runs `/bin/sh -c ACTION` (or an argv) as a plain process group on this machine."""

    name = "host"

    def __init__(
        self,
        *,
        env_allow: Iterable[str] = (),
        work_root: Path | None = None,
        cgroups: bool = False,
    ) -> None:
        self._env_allow = check_env_allow(env_allow)
        self._dirs = WorkDirs(work_root)
        # With cgroups, its jobs are measured in groups of their own, where one can be made.
        self._groups = CgroupPool() if cgroups else None
        # The worker's environment does not change while it runs: what jobs get of it neither.
        self._given = {"PATH": DEFAULT_PATH, **worker_env(self._env_allow)}

    async def available(self) -> bool:
        return True

    def applied(self, spec: JobSpec) -> dict[str, Any]:
        passed = passed_env(self._given, spec.env, job_env(spec))
        applied = {"runtime": "host", "cleanEnv": True, "envAllowed": passed, "workdir": "fresh"}
        return {**applied, **NONE_ENFORCED}

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        argv = ["/bin/sh", "-c", spec.action] if isinstance(spec.action, str) else spec.action
        outputs = spec.outputs.env() if spec.outputs is not None else {}
        env = {**self._given, **spec.env, **job_env(spec), **outputs}
        async with self._dirs.fresh(spec) as cwd:
            return await run_process(
                argv, env=env, cwd=cwd, spec=spec, sink=sink, grace_s=grace_s, groups=self._groups
            )

    async def close(self) -> None:
        """Wait for the working directories of ended jobs to be removed."""
        await self._dirs.close()
        if self._groups is not None:
            self._groups.close()

    async def reap(self, worker_id: str) -> list[str]:
        return await asyncio.to_thread(reap_processes, worker_id, self._dirs)


def reap_processes(worker_id: str, dirs: WorkDirs) -> list[str]:
    """SIGKILL every process a run of this worker left (found by its env), then remove the
    working directories it left; return the jobs of those processes."""
    if not worker_id:
        return []
    marker = f"{ENV_WORKER}={worker_id}".encode()
    jobs: set[str] = set()
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = _environ(entry.name)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if marker in env:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
            prefix = f"{ENV_JOB}=".encode()
            jobs.update(v[len(prefix) :].decode() for v in env if v.startswith(prefix))
    dirs.remove_left(worker_id)
    JobCgroup.remove_left(worker_prefix(worker_id))
    return sorted(jobs)


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    spec: JobSpec,
    sink: OutputSink,
    grace_s: float,
    groups: CgroupPool | None = None,
) -> int:
    """Run argv in its own process group, stream its stdout and stderr, leave nothing behind;
    with `groups`, in a control group of its own that measures it (host_cgroup.py).

    The job is over when its first process exits: whatever it started and left running is
    stopped like a cancelled job (SIGTERM, then SIGKILL after `grace_s`), because a stray
    `sleep 100 &` would otherwise hold the output pipe open and the job would never end.
    """
    if not argv:
        raise RuntimeFailure("empty command")
    if groups is not None and spec.meter is not None:
        check_found(argv, env, cwd)  # before a group is taken: a missing program leaves none
    group = groups.take(spec) if groups is not None else None
    try:
        wrapped = group.wrap(list(argv)) if group is not None else argv
        return await _run_in(wrapped, env, cwd, spec, sink, grace_s)
    finally:
        if group is not None and groups is not None:
            assert spec.meter is not None
            group.measure(spec.meter)
            groups.release(group)


async def _run_in(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    spec: JobSpec,
    sink: OutputSink,
    grace_s: float,
) -> int:
    """Spawn argv with its two output pipes and supervise it to its end (run_process's work)."""
    async with output_pipes() as pipes:
        born = _boot_ticks()  # every process of the job starts at or after this
        try:
            proc = await _spawn(argv, env, cwd, pipes)
        finally:
            for pipe in pipes:  # the children hold copies; EOF comes when they close them
                os.close(pipe.write_fd)
        return await _supervise(proc, pipes, _JobProcesses(proc.pid, spec, born), sink, grace_s)


async def _spawn(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, pipes: tuple[OutputPipe, OutputPipe]
) -> subprocess.Popen[bytes]:
    # Popen rather than asyncio's processes: the job is reaped here, with wait4, whose resource
    # use is the job's bill (asyncio's child watcher reaps it itself and drops that).
    try:
        # As asyncio's own subprocesses do in the loop too: fork and exec, no waiting.
        return subprocess.Popen(  # noqa: ASYNC220
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=pipes[0].write_fd,
            stderr=pipes[1].write_fd,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own session and process group, so it can be killed whole
        )
    except FileNotFoundError as e:
        raise RuntimeFailure(f"executable not found: {argv[0]}") from e
    except (OSError, ValueError) as e:  # ValueError: a NUL or `=` where it cannot be
        raise RuntimeFailure(f"cannot start {argv[0]}: {e}") from e


async def _supervise(
    proc: subprocess.Popen[bytes],
    pipes: tuple[OutputPipe, OutputPipe],
    group: _JobProcesses,
    sink: OutputSink,
    grace_s: float,
) -> int:
    leader_born = _start_ticks(proc.pid)
    if leader_born:
        _LEADERS[proc.pid] = leader_born
    pumping = asyncio.create_task(copy_all(pipes, sink))
    exiting = asyncio.create_task(reaped(proc, group.meter))
    try:
        await asyncio.wait({pumping, exiting}, return_when=asyncio.FIRST_COMPLETED)
        if pumping.done():
            pumping.result()  # a failing sink stops the job
        returncode = await exiting
        await group.stop(grace_s)
        # All the output is read, however slow the sink; but a pipe that stays quiet this long
        # is held by a process that left the job, and waiting on would never end.
        while not pumping.done() and quiet_s(pipes) < _DRAIN_S:
            await asyncio.wait({pumping}, timeout=_POLL_S)
        if pumping.done():
            pumping.result()
        return exit_code(returncode)
    except BaseException:
        await group.stop(grace_s)
        await asyncio.wait({exiting}, timeout=_DRAIN_S)  # reap the leader if it is going
        raise
    finally:
        _LEADERS.pop(proc.pid, None)
        for task in (pumping, exiting):
            task.cancel()
        await asyncio.gather(pumping, exiting, return_exceptions=True)
        if proc.returncode is None:  # stopped and killed, but not reaped in time: reap it now
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(proc.pid, os.WNOHANG)[0]:  # noqa: ASYNC222 (WNOHANG: no wait)
                    proc.returncode = -1


class _JobProcesses:
    """The live processes of one job: its process group, plus (on Linux) any process that left
    the group but still carries the job's ASPHALT_JOB_ID and ASPHALT_ATTEMPT."""

    def __init__(self, pgid: int, spec: JobSpec, born: int) -> None:
        self.meter = spec.meter
        self._pgid = pgid
        self._marker = {f"{k}={v}".encode() for k, v in job_env(spec).items()}
        self._started = time.monotonic()
        self._born = born  # every process of the job started then or later; older ones are not
        self._unsure = False  # the last look met a new process whose environment was unreadable

    async def stop(self, grace_s: float) -> None:
        """SIGTERM them all, SIGKILL whatever is left after grace_s."""
        if not await self._look(signal.SIGTERM):
            return
        deadline = time.monotonic() + grace_s
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(_POLL_S)
                if not await self._look(0):
                    return
        finally:
            # Also reached when cancelled mid-grace: never leave a job running.
            self._signal(signal.SIGKILL)

    async def _look(self, sig: int) -> bool:
        """_signal, looking again for a moment while a new process's environment is unreadable.

        A process shows an empty environment while it is in the middle of exec (`setsid cmd &`
        does that just as the job's shell ends) and while it is dying, before it is a zombie.
        """
        found = self._signal(sig)
        for _ in range(_UNSURE_LOOKS):
            if found or not self._unsure:
                break
            await asyncio.sleep(_UNSURE_S)
            found = self._signal(sig)
        return found

    def _signal(self, sig: int) -> bool:
        """Send sig to every live process of the job; return whether there was any."""
        if not _PROC.is_dir():
            # Without /proc (macOS) the group is what we can see; the system reaps orphans.
            try:
                os.killpg(self._pgid, sig)
            except (ProcessLookupError, PermissionError):
                return False
            return True
        pids = self._linux_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        return bool(pids)

    def _linux_pids(self) -> list[int]:
        # Zombies are skipped: they are dead, and where nothing reaps orphans (a container's
        # PID 1 that is not an init) they would otherwise look alive forever.
        found = []
        me = os.getpid()
        first = self._first_candidate()
        self._unsure = False
        for name in os.listdir(_PROC):
            if not name.isdigit() or int(name) < first or int(name) == me:
                continue
            try:
                fields = _read(f"/proc/{name}/stat").rsplit(b")", 1)[1].split()
                state, pgrp, flags, born = fields[0], fields[2], int(fields[6]), int(fields[19])
                if state in (b"Z", b"X") or born < self._born or flags & _KERNEL_THREAD:
                    continue
                if int(name) != self._pgid and _LEADERS.get(int(name)) == born:
                    continue  # another job's leader: its group and marker are its own
                if int(pgrp) == self._pgid:
                    found.append(int(name))
                    continue
                env = _environ(name)
                if self._marker <= env:
                    found.append(int(name))
                elif env <= {b""}:
                    self._unsure = True
            except (OSError, ValueError):
                continue  # gone meanwhile, or not ours to read
        return found

    def _first_candidate(self) -> int:
        """The lowest pid that can belong to the job.

        Usually the job ends with its group empty, and then only a process that escaped the group
        can be left: a descendant, so started after the leader and (pids being handed out in
        order) numbered above it. Looking only there spares reading every process on the box
        after every job. The whole of /proc is read when that cannot be relied on: the group
        still has members, the job ran long enough for pids to wrap, or they already did.
        """
        try:
            os.killpg(self._pgid, 0)
            return 0
        except ProcessLookupError:
            pass
        except PermissionError:
            return 0
        if time.monotonic() - self._started > _SHORT_JOB_S:
            return 0
        try:
            last = int(_read("/proc/sys/kernel/ns_last_pid"))
        except (OSError, ValueError):
            return 0
        return self._pgid + 1 if last > self._pgid else 0


def _boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc gives start times in (a tick early)."""
    if not hasattr(time, "CLOCK_BOOTTIME"):
        return 0
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")) - 1


def _start_ticks(pid: int) -> int:
    """When the process started, in clock ticks since boot (0 if it cannot be read)."""
    try:
        return int(_read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _environ(pid: str) -> set[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as file:
        return set(file.read().split(b"\0"))
