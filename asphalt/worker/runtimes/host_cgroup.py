"""How a host job's use is measured: in a control group of its own, under the worker's, where
the worker may make one (root, or a delegated cgroup v2 subtree), whose CPU time and peak
memory are the kernel's exact account of every process of the job. Elsewhere by wait4's rusage
of its first process and those it waited for, which counts the worker's own resident memory at
the fork as the job's (the kernel keeps the larger of the memory before and after exec), so a
small job shows about the worker's size.

The job enters its group before anything of it runs: a command line's shell (`sh -c ACTION`)
writes its own pid to the group first, in the same shell; an argv is run through a shell that
does so and then execs it. Groups are used again where the kernel allows (CgroupPool)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .base import DEFAULT_PATH, JobSpec, Meter, RuntimeFailure
from .workdirs import worker_prefix

_ROOT = Path("/sys/fs/cgroup")
_HIERARCHIES = (("memory", "memory"), ("cpuacct", "cpuacct"), ("cpu,cpuacct", "cpuacct"), ("", ""))
_ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1" 2>/dev/null; shift; done; shift; exec "$@"'


async def reaped(proc: subprocess.Popen[bytes], meter: Meter | None) -> int:
    """Wait for the job's first process to exit, reap it, and measure what it used together
    with every process it waited for (a shell's commands): CPU and the largest peak of memory.
    The wait is on a pidfd, so no thread is held while the job runs."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # an old kernel: wait in a thread instead
        _, status, usage = await asyncio.to_thread(os.wait4, proc.pid, 0)
    else:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        # The pidfd is readable once the process has exited: this reaps it without waiting.
        _, status, usage = os.wait4(proc.pid, 0)  # noqa: ASYNC222
    proc.returncode = os.waitstatus_to_exitcode(status)
    if meter is not None:
        meter.cpu_s = usage.ru_utime + usage.ru_stime
        meter.peak_memory = usage.ru_maxrss * 1024  # KiB on Linux
        meter.measured = "rusage of the job's process and those it waited for"
        own = _own_peak()
        if own is not None and meter.peak_memory <= own:
            meter.measured += (
                f"; at most the worker's own {own >> 20} MiB, which the kernel counts too "
                "(-measure cgroup is exact)"
            )
    return proc.returncode


class _OwnPeak:
    """The worker's own peak of resident memory, in bytes (VmHWM), read again every few
    seconds: it is the process's, it only grows, and slowly."""

    EVERY_S = 5.0

    def __init__(self) -> None:
        self._read_at = -self.EVERY_S
        self._bytes: int | None = None

    def __call__(self) -> int | None:
        now = time.monotonic()
        if now - self._read_at >= self.EVERY_S:
            self._read_at, self._bytes = now, None
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self._bytes = int(line.split()[1]) * 1024
        return self._bytes


_own_peak = _OwnPeak()


def check_found(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
    """Fail a job whose program is not there as a plain spawn would: in a group, a shell runs
    it first, which would only say "not found" and exit 127."""
    program = argv[0]
    found = (
        os.access(cwd / program, os.X_OK)
        if "/" in program
        else shutil.which(program, path=env.get("PATH", DEFAULT_PATH)) is not None
    )
    if not found:
        raise RuntimeFailure(f"executable not found: {program}")


class CgroupPool:
    """Control groups for one runtime's jobs. With cgroup v1 an ended job's group is used again
    (its counters reset, once no process is left in it): making a memory group for every job
    costs the kernel more than the job's own start (bench B3). v2's peak cannot be reset on
    every kernel, so there each job gets a fresh group."""

    IDLE = 64  # groups kept for reuse at most

    def __init__(self) -> None:
        self._idle: list[JobCgroup] = []
        self._usable: bool | None = None  # unknown until the first group is tried

    def take(self, spec: JobSpec) -> JobCgroup | None:
        """A group for this job, or None where none can be made (or nothing is measured)."""
        if spec.meter is None or self._usable is False:
            return None
        prefix = worker_prefix(spec.worker_id)
        for group in list(self._idle):
            if group.name.startswith(prefix) and group.reset():
                self._idle.remove(group)
                return group  # else the last job's processes are still leaving it: not yet
        made = JobCgroup.make(prefix + os.urandom(6).hex())
        self._usable = made is not None
        return made

    def release(self, group: JobCgroup) -> None:
        """The job is over: keep its group for the next one, or remove it (if its processes
        have not all left yet, it stays idle until they have, and is removed at close)."""
        if (group.reusable and len(self._idle) < self.IDLE) or not group.remove():
            self._idle.append(group)

    def close(self) -> None:
        """Remove the idle groups (one a process still holds is left for the next start's
        reaping, by the worker's name prefix)."""
        for group in self._idle:
            group.remove()
        self._idle.clear()


class JobCgroup:
    """The group (one directory per v1 hierarchy, or one in v2) one job attempt runs in."""

    def __init__(self, dirs: list[Path], v2: bool) -> None:
        self._dirs = dirs
        self._v2 = v2
        self.name = dirs[0].name
        self.reusable = not v2

    @classmethod
    def make(cls, name: str, root: Path = _ROOT) -> JobCgroup | None:
        """A new group named `name` under the worker's own, or None if none can be made."""
        try:
            own = _own_groups()
            if "memory" in own:  # cgroup v1: memory and cpuacct are hierarchies of their own
                cpuacct = next(
                    (
                        root / h / own["cpuacct"]
                        for h in ("cpuacct", "cpu,cpuacct")
                        if "cpuacct" in own and (root / h / own["cpuacct"]).is_dir()
                    ),
                    None,
                )
                if cpuacct is None:
                    return None
                dirs = [root / "memory" / own["memory"] / name, cpuacct / name]
                v2 = False
            elif "" in own:  # v2: only where memory is delegated to the worker's subtree
                parent = root / own[""]
                if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                    return None
                dirs, v2 = [parent / name], True
            else:
                return None
            made: list[Path] = []
            try:
                for path in dirs:
                    path.mkdir()
                    made.append(path)
            except OSError:
                for path in made:
                    with contextlib.suppress(OSError):
                        path.rmdir()
                return None
            return cls(dirs, v2)
        except (OSError, ValueError):
            return None

    def wrap(self, argv: list[str]) -> list[str]:
        """argv, run so that its first process enters this group before the job runs: in the
        job's own shell for a command line, else through a shell that then execs it."""
        procs = [str(path / "cgroup.procs") for path in self._dirs]
        if len(argv) == 3 and argv[:2] == ["/bin/sh", "-c"]:
            enter = "; ".join(f"echo $$ > {shlex.quote(p)}" for p in procs)
            return ["/bin/sh", "-c", f"{{ {enter}; }} 2>/dev/null; {argv[2]}"]
        return ["/bin/sh", "-c", _ENTER, "asphalt-cgroup", *procs, "--", *argv]

    def measure(self, meter: Meter) -> None:
        """Read what the group's processes used into meter (once they have all ended)."""
        try:
            if self._v2:
                stat = (self._dirs[0] / "cpu.stat").read_text().split()
                meter.cpu_s = int(stat[stat.index("usage_usec") + 1]) / 1e6
                meter.peak_memory = int((self._dirs[0] / "memory.peak").read_text())
            else:
                meter.peak_memory = int((self._dirs[0] / "memory.max_usage_in_bytes").read_text())
                meter.cpu_s = int((self._dirs[1] / "cpuacct.usage").read_text()) / 1e9
            meter.measured = f"the job's own cgroup {'v2' if self._v2 else 'v1'}"
        except (OSError, ValueError, IndexError):
            return

    def reset(self) -> bool:
        """Make the group's counters start again for a new job; False if a process of the
        last one is still in it (or it is gone)."""
        try:
            if (self._dirs[0] / "cgroup.procs").read_text().strip():
                return False
            (self._dirs[0] / "memory.max_usage_in_bytes").write_text("0")
            (self._dirs[1] / "cpuacct.usage").write_text("0")
        except OSError:
            return False
        return True

    def remove(self) -> bool:
        """Remove the group; False if it still holds a process (it stays)."""
        removed = True
        for path in self._dirs:
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed

    @staticmethod
    def remove_left(prefix: str, root: Path = _ROOT) -> None:
        """Remove the groups named `prefix`... that an earlier run of the worker left (their
        processes are ended already)."""
        with contextlib.suppress(OSError, ValueError):
            own = _own_groups()
            parents = {root / h / own[c] for h, c in _HIERARCHIES if c in own}
            for parent in parents:
                for left in parent.glob(f"{prefix}*") if parent.is_dir() else ():
                    with contextlib.suppress(OSError):
                        left.rmdir()


def _own_groups() -> dict[str, str]:
    """The worker's own group in each hierarchy, by controller ("" for cgroup v2)."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{os.getpid()}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path.lstrip("/")
    return found
