"""One frozen dataclass per mode, built by the CLI; no I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asphalt.limits import NO_LIMITS, Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    master_url: str
    name: str
    host: str
    types: tuple[str, ...] = ()
    untyped: bool = False
    slots: int = 2
    docker_network: str = "bridge"
    swarm_network: str | None = None  # the network swarm jobs' services join (None: the default)
    # Placement constraints of swarm jobs, by job type (-swarm-constraint gpu=node.labels.gpu==1).
    swarm_constraints: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    grace_s: float = 10.0
    drain_s: float = 60.0  # on SIGTERM, how long running jobs may go on before being handed back
    buffer_cap: int = 16 << 20  # output kept per job while the master cannot be reached
    state_dir: Path = Path("asphalt-worker")  # lock files that let a restarted worker reap
    mdns_interface: str | None = None  # with master_url "auto": where to look for one
    join: str | None = None  # the join token (-join or ASPHALT_JOIN); it may pin the master's TLS
    env_allow: tuple[str, ...] = ()  # worker variables host jobs may see: names or PREFIX_*
    limits: Limits = NO_LIMITS  # defaults for a docker job's memory, CPUs and processes
    measure: str = "rusage"  # host jobs' bill: "rusage", or "cgroup" (a group of each job's own)
    # Where host jobs get their fresh working directories; None: the system's temp dir (the
    # embedded worker's choice, so that no job ever works inside the master's data directory).
    work_dir: Path | None = None
    flush_interval_s: float = 1.0
    flush_bytes: int = 64 << 10


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    data_dir: Path = Path("asphalt-data")
    map_size: int = 8 << 30
    poll_hold_s: float = 25.0
    heartbeat_s: float = 10.0
    lease_s: float = 45.0
    output_cap: int = 8 << 20
    max_body: int = 1 << 20
    advertise: bool = False  # announce the master with mDNS, for `asphalt -master auto`
    mdns_interface: str | None = None
    name: str = "asphalt"
    auth: str = "local"  # local: no token needed on this box; always; off (trusted labs only)
    public_url: str | None = None  # how people and workers reach it, e.g. https://ci.example:8080
    allow_hosts: tuple[str, ...] = ()  # more names a Host header may give (DNS rebinding guard)
    tls: str | None = None  # "auto": a self-signed certificate kept in the data directory
    tls_cert: Path | None = None
    tls_key: Path | None = None
    own_worker: bool = False  # it runs a worker of its own (whose host jobs run on this box)
    lost_retries: int = 2  # times a job lost with its worker runs again, apart from its retries
    keep_days: int = 0  # completed tasks older than this many days are removed (0: never)
    hook_retry_s: float = 5.0  # a failed webhook delivery's first wait (then doubling, jittered)
    hook_allow: tuple[str, ...] = ()  # where hooks and callbacks may point (none: anywhere)
    artifact_cap: int = 256 << 20  # bytes of artifacts kept per job attempt
    unrunnable_after_s: float = 600.0  # a job no live worker can run fails after this long
    swarmer_project: str = "swarmer"  # where the Swarmer API's jobs are tasks
    swarmer_runtime: str = "docker"  # what they run in: docker, or swarm

    @property
    def scheme(self) -> str:
        return "https" if self.tls or self.tls_cert else "http"
