"""A host job's control group of its own, under the worker's, where the worker may make one
(root, or a delegated cgroup v2 subtree): its CPU time and peak memory are then the kernel's
exact account of every process of the job. Elsewhere the job is measured by wait4's rusage,
which counts the worker's own resident memory at the fork as the job's (the kernel keeps the
larger of the memory before and after exec), so a small job shows about the worker's size.

The job enters its group before anything of it runs: its first process is a shell that writes
its own pid to the group and then execs the job."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from .base import DEFAULT_PATH, JobSpec, Meter, RuntimeFailure
from .workdirs import safe_name, worker_prefix

_ROOT = Path("/sys/fs/cgroup")
_HIERARCHIES = (("memory", "memory"), ("cpuacct", "cpuacct"), ("cpu,cpuacct", "cpuacct"), ("", ""))
_ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1" 2>/dev/null; shift; done; shift; exec "$@"'


def job_group(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, spec: JobSpec
) -> JobCgroup | None:
    """A control group of the job's own to measure it in, if one can be made (and its command
    can be found: in a group, it is run through a shell that would only say "not found")."""
    if spec.meter is None:
        return None
    program = argv[0]
    found = (
        os.access(cwd / program, os.X_OK)
        if "/" in program
        else shutil.which(program, path=env.get("PATH", DEFAULT_PATH)) is not None
    )
    if not found:
        raise RuntimeFailure(f"executable not found: {program}")
    unique = f"{safe_name(spec.job_id)}-{spec.attempt}-{os.urandom(3).hex()}"
    return JobCgroup.make(worker_prefix(spec.worker_id) + unique)


class JobCgroup:
    """The group (one directory per v1 hierarchy, or one in v2) one job attempt runs in."""

    def __init__(self, dirs: list[Path], v2: bool) -> None:
        self._dirs = dirs
        self._v2 = v2

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
        """argv, run so that its first process enters this group before it execs the job."""
        procs = [str(path / "cgroup.procs") for path in self._dirs]
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

    def remove(self) -> None:
        for path in self._dirs:
            with contextlib.suppress(OSError):
                path.rmdir()

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
