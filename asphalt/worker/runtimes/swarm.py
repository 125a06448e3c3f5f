"""The swarm runtime: each job attempt is a one-shot service on the Docker Swarm that this worker's
engine manages (`replicated-job` mode, one replica, restart condition `none`, so that Asphalt
stays the only one to retry), labelled with its job, attempt and worker. Its output is read from
the service's logs as it runs (every POLL_S, from where the last read left off), its exit code
taken from its task, and the service removed once it has ended, is stopped (timeout, cancel)
or is found left by a killed worker."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from asphalt import log
from asphalt.limits import NO_LIMITS, Limits
from asphalt.protocol import STDERR, STDOUT

from .base import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_WORKER,
    JobSpec,
    OutputSink,
    RuntimeFailure,
    settled,
)
from .docker import CAP_ADD, DEFAULT_PIDS, LOG_MAX_FILES, LOG_MAX_SIZE, dispose
from .engine import (
    APIError,
    Client,
    DockerException,
    Engine,
    Resources,
    RestartPolicy,
    Service,
    ServiceMode,
    make_service,
    remove_service,
    tasks_of,
)
from .engine import NotFound as Gone
from .host import job_env

_log = log.get("asphalt.swarm")
POLL_S = 0.25  # how often a running job's task and logs are looked at
ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
_SETTLE_TRIES = 20  # log reads after the end, until one brings nothing new
_QUIET_LOOKS = 3  # looks for a removed service's containers that find none, to be done
WAITING = "[asphalt: the swarm has not placed this job yet: {why}]\n"


class SwarmRuntime:
    """Runs each job (`sh -c ACTION`, or an argv after the image's entrypoint) as a service."""

    name = "swarm"

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        network: str | None = None,  # the services' network (none given: the engine's default)
        constraints: Mapping[str, tuple[str, ...]] | None = None,  # by job type (-swarm-constraint)
        limits: Limits = NO_LIMITS,
        log_max_size: str = LOG_MAX_SIZE,
    ) -> None:
        self._engine = engine or Engine()
        self._network = network
        self._constraints = dict(constraints or {})
        self._limits = limits
        self._log_max_size = log_max_size

    async def available(self) -> bool:
        """Only on a swarm manager: a worker or a lone engine cannot make services."""
        if not await self._engine.answers():
            return False
        try:
            info = await self._engine.call(lambda c: c.info())
        except (RuntimeFailure, DockerException):
            return False
        swarm = info.get("Swarm") or {}
        return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))

    def applied(self, spec: JobSpec) -> dict[str, Any]:
        made = self._service(spec, grace_s=0)
        limits = made["resources"].get("Limits", {})
        return {
            "runtime": "swarm",
            "mode": "replicated-job",
            "restart": "none",
            "capDrop": made["cap_drop"],
            "capAdd": made["cap_add"],
            "init": made["init"],
            "privileged": False,
            "pidsLimit": limits.get("Pids"),
            "memory": limits.get("MemoryBytes"),
            "cpus": limits["NanoCPUs"] / 1e9 if "NanoCPUs" in limits else None,
            "logMaxSize": self._log_max_size,
            "logMaxFiles": LOG_MAX_FILES,
            "network": self._network,
            "constraints": made["constraints"],
        }

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        if not spec.container:
            raise RuntimeFailure("the swarm runtime needs a container image")
        made = self._service(spec, grace_s=grace_s)
        # Shielded: cancelled while the service is being made, the thread goes on making it,
        # and we wait for it so that we can remove it.
        creating = asyncio.ensure_future(self._engine.call(lambda c: _create(c, spec, made)))
        service: Service | None = None
        try:
            service = await asyncio.shield(creating)
            return await self._follow(service, sink, spec)
        finally:
            stopped = False
            if service is None:
                ended = await settled(creating)
                service, stopped = ended
            if service is not None:
                removing = asyncio.ensure_future(self._remove(service, grace_s))
                stopped = (await settled(removing))[1] or stopped
            if stopped:
                raise asyncio.CancelledError  # what came while it was cleaned up

    async def _follow(self, service: Service, sink: OutputSink, spec: JobSpec) -> int:
        """Send the service's output on as it comes, until its task ends; its exit code."""
        logs = _Logs(service, self._engine)
        told = False
        while True:
            try:
                task = await self._engine.call(lambda _: _task(service))
            except Gone as e:
                raise RuntimeFailure("the job's service was removed while it ran") from e
            except APIError as e:
                raise RuntimeFailure(f"the swarm cannot say how the job is: {e.explanation}") from e
            await logs.send(sink)
            status = task.get("Status", {}) if task else {}
            if status.get("State") in ENDED:
                break
            if not told and status.get("State") == "pending" and status.get("Err"):
                told = True
                await sink(WAITING.format(why=status["Err"]).encode(), STDERR)
            await asyncio.sleep(POLL_S)
        for _ in range(_SETTLE_TRIES):  # the logs can lag behind the task's end
            await asyncio.sleep(POLL_S)
            if not await logs.send(sink):
                break
        if spec.meter is not None:
            spec.meter.measured = "not measured: it ran on a swarm node"
        return _exit_code(status)

    async def reap(self, worker_id: str) -> list[str]:
        """Remove the services a previous run of this worker left, and their containers on
        this node; return their job ids. (Containers whose service was removed already are
        the docker runtime's reap: they carry the same worker label.)"""
        if not worker_id:
            raise ValueError("reap needs a worker id")
        label = f"{LABEL_WORKER}={worker_id}"
        found = await self._engine.call(lambda c: c.services.list(filters={"label": label}))
        for service in found:
            await self._remove(service, grace_s=0)  # the worker is gone: no grace
        return [_labels(service).get(LABEL_JOB, "") for service in found]

    async def _remove(self, service: Service, grace_s: float) -> None:
        """Remove the service, then stop and remove its task's containers on this node.

        Docker 20.10 leaves a removed job service's containers behind, running, created or
        exited, so the worker removes them itself: those labelled with the attempt, until none
        has been seen for a few looks (an agent may make one a moment after the service went).
        On another node they are left to that node's engine (docs/runtimes.md). Errors are
        logged, not raised: a reap goes on to the next service."""
        labels = _labels(service)
        wanted = [f"{key}={labels.get(key, '')}" for key in (LABEL_JOB, LABEL_ATTEMPT)]
        try:
            status = ((await self._engine.call(lambda _: _task(service))) or {}).get("Status", {})
        except (APIError, RuntimeFailure):
            status = {}
        # No container yet (or no task yet): the node's agent may still make one, a moment
        # after the service went.
        held = (status.get("ContainerStatus") or {}).get("ContainerID")
        looks = _QUIET_LOOKS * (1 if held or status.get("State") in ENDED else 5)
        quiet, deadline = 0, time.monotonic() + grace_s + 10
        try:
            with contextlib.suppress(Gone):  # first: a task that fails now is not run again
                await self._engine.call(lambda _: remove_service(service))
            while quiet < looks and time.monotonic() < deadline:
                found = await self._engine.call(lambda c: _sweep(c, wanted, grace_s))
                quiet = 0 if found else quiet + 1
                await asyncio.sleep(0.2)
        except (APIError, RuntimeFailure) as e:
            _log.warning("swarm_remove_failed", service=service.id, labels=wanted, error=str(e))
            return
        if quiet < looks:
            _log.warning("swarm_containers_left", service=service.id, labels=wanted)

    async def close(self) -> None:
        await self._engine.close()

    def _service(self, spec: JobSpec, *, grace_s: float) -> dict[str, Any]:
        """The services.create() arguments for this job: what `applied` reports."""
        limits = spec.limits.merged(self._limits)
        resources = Resources(
            cpu_limit=round(limits.cpus * 1e9) if limits.cpus is not None else None,
            mem_limit=limits.memory,
        )
        # The SDK has no word for it; the engine's API does (1.41).
        resources.setdefault("Limits", {})["Pids"] = limits.pids or DEFAULT_PIDS
        wanted = [c for kind in spec.types for c in self._constraints.get(kind, ())]
        return {
            "mode": ServiceMode("replicated-job", concurrency=1, replicas=1),
            "restart_policy": RestartPolicy(condition="none"),
            "resources": resources,
            "init": True,  # passes SIGTERM on, as for docker jobs
            "cap_drop": ["ALL"],
            "cap_add": list(CAP_ADD),
            "stop_grace_period": max(1, math.ceil(grace_s)) * 1_000_000_000,
            "constraints": list(dict.fromkeys(wanted)),
            "networks": [self._network] if self._network else [],
            "log_driver": "json-file",
            "log_driver_options": {"max-size": self._log_max_size, "max-file": str(LOG_MAX_FILES)},
        }


def _create(client: Client, spec: JobSpec, made: dict[str, Any]) -> Service:
    argv = ["sh", "-c", spec.action] if isinstance(spec.action, str) else list(spec.action)
    labels = {
        LABEL_JOB: spec.job_id,
        LABEL_ATTEMPT: str(spec.attempt),
        LABEL_WORKER: spec.worker_id,
    }
    try:
        return make_service(
            client,
            spec.container or "",
            args=argv or None,  # none: the image's own command
            name=f"asphalt-{spec.job_id}-{spec.attempt}",
            env=[f"{k}={v}" for k, v in {**spec.env, **job_env(spec)}.items()],
            labels=labels,
            container_labels=labels,
            **made,
        )
    except APIError as e:
        raise RuntimeFailure(f"the swarm cannot make the job's service: {e.explanation}") from e


def _task(service: Service) -> dict[str, Any] | None:
    """The service's task (the newest, should there be more)."""
    tasks = tasks_of(service)
    return max(tasks, key=lambda t: str(t.get("CreatedAt", ""))) if tasks else None


def _exit_code(status: Mapping[str, Any]) -> int:
    """The task's exit code; a task that never ran is a RuntimeFailure saying why."""
    state, err = status.get("State"), status.get("Err") or ""
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if state == "complete":
        return int(code or 0)
    if state == "failed" and code is not None and not err.startswith("starting container"):
        return int(code)
    why = err or status.get("Message") or state
    raise RuntimeFailure(f"the swarm could not run the job: {why}")


def _labels(service: Service) -> dict[str, str]:
    labels: dict[str, str] = service.attrs.get("Spec", {}).get("Labels") or {}
    return labels


def _sweep(client: Client, wanted: list[str], grace_s: float) -> int:
    """Stop and remove this node's containers with these labels; how many there were."""
    found = client.containers.list(all=True, filters={"label": wanted})
    for container in found:
        dispose(container, grace_s)
    return len(found)


class _Logs:
    """A service's output as far as it was sent: read again from the second of the last line
    sent on, with timestamps, and sent on from where it left off (the engine's log stream
    does not end when its task does, so it is not followed as a stream)."""

    def __init__(self, service: Service, engine: Engine) -> None:
        self._service = service
        self._engine = engine
        self._last: dict[int, tuple[int, int]] = {STDOUT: (0, 0), STDERR: (0, 0)}
        self._at_last: dict[int, int] = {STDOUT: 0, STDERR: 0}

    async def send(self, sink: OutputSink) -> bool:
        """Send what is new, in the order it was written; whether there was any."""
        try:
            lines = await self._engine.call(lambda _: self._new())
        except APIError as e:  # the service went (removed by hand): nothing more to read
            raise RuntimeFailure(f"the job's service is gone: {e.explanation}") from e
        for _, stream, payload in lines:
            await sink(payload, stream)
        return bool(lines)

    def _new(self) -> list[tuple[tuple[int, int], int, bytes]]:
        found: list[tuple[tuple[int, int], int, bytes]] = []
        for stream in (STDOUT, STDERR):
            last, seen = self._last[stream], self._at_last[stream]
            frames = self._service.logs(
                stdout=stream == STDOUT,
                stderr=stream == STDERR,
                timestamps=True,
                since=last[0],
            )
            newest, at_newest, skipped = last, seen, 0
            for frame in frames:
                stamp, _, payload = frame.partition(b" ")
                at = _when(stamp)
                if at < last or (at == last and skipped < seen):
                    skipped += at == last
                    continue
                found.append((at, stream, payload))
                if at > newest:
                    newest, at_newest = at, 1
                elif at == newest:
                    at_newest += 1
            self._last[stream], self._at_last[stream] = newest, at_newest
        return sorted(found, key=lambda line: line[0])


def _when(stamp: bytes) -> tuple[int, int]:
    """An RFC 3339 time with nanoseconds as (seconds, nanoseconds); (0, 0) if it is not one."""
    text = stamp.decode("ascii", "replace").rstrip("Z")
    whole, _, fraction = text.partition(".")
    try:
        seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
        return seconds, int((fraction + "000000000")[:9] or 0)
    except ValueError:
        return 0, 0
