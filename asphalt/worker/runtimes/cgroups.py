"""What a container uses, read from its control group on this machine while it runs: the CPU
time it was charged and its peak of memory (cgroup v1 or v2). The daemon removes the group with
the container, so it is sampled (every SAMPLE_S) and the last sample is the bill: up to one
sample's worth of CPU at the very end can be missed. A peak is the kernel's own high-water
mark, so it is whole as long as it came before the last sample."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from .base import Meter

SAMPLE_S = 0.2
_ROOT = Path("/sys/fs/cgroup")


class CgroupSampler:
    """Samples one process's control group into a Meter until stopped."""

    def __init__(self, pid: int, meter: Meter, root: Path = _ROOT) -> None:
        self._meter = meter
        self._cpu, self._memory, self._v2 = _files(pid, root)
        self._task: asyncio.Task[None] | None = None
        if self._cpu is None and self._memory is None:
            meter.measured = "not measured: the container's cgroup is not readable here"
        else:
            meter.measured = f"cgroup {'v2' if self._v2 else 'v1'}, sampled every {SAMPLE_S} s"

    def start(self) -> None:
        if self._cpu is not None or self._memory is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """One last sample (if the group is still there), then no more."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)

    def sample(self) -> None:
        cpu = _read(self._cpu)
        if cpu is not None:
            if self._v2:  # cpu.stat: "usage_usec N" among others
                found = [line.split()[1] for line in cpu.splitlines() if line.startswith("usage_")]
                if found:
                    self._meter.cpu_s = int(found[0]) / 1e6
            else:  # cpuacct.usage: nanoseconds
                self._meter.cpu_s = int(cpu) / 1e9
        memory = _read(self._memory)
        if memory is not None and memory.strip().isdigit():
            self._meter.peak_memory = max(self._meter.peak_memory or 0, int(memory))


def _files(pid: int, root: Path) -> tuple[Path | None, Path | None, bool]:
    """The files that hold the group's CPU time and peak memory, and whether it is cgroup v2."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None, None, False
    groups: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path.lstrip("/")
    if "memory" in groups or "cpuacct" in groups:  # v1: a hierarchy per controller
        cpu = _existing(root / "cpuacct" / groups.get("cpuacct", ""), "cpuacct.usage")
        cpu = cpu or _existing(root / "cpu,cpuacct" / groups.get("cpuacct", ""), "cpuacct.usage")
        memory = _existing(root / "memory" / groups.get("memory", ""), "memory.max_usage_in_bytes")
        return cpu, memory, False
    if "" in groups:
        group = root / groups[""]
        return _existing(group, "cpu.stat"), _existing(group, "memory.peak"), True
    return None, None, False


def _existing(directory: Path, name: str) -> Path | None:
    path = directory / name
    return path if path.is_file() else None


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None  # the group went with its container
