"""The workers the master knows: who is live, what each is running; persisted on change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asphalt.model.members import Worker
from asphalt.model.records import new_id, rfc3339
from asphalt.protocol import Registration
from asphalt.wire import replace

KEEP_SHOWING_S = 24 * 3600  # how long a worker that left or was lost is still listed


class Registry:
    """Liveness uses monotonic time (`now_m`); `last_seen` on the record is wall time."""

    def __init__(self, workers: Iterable[Worker], *, lease_s: float, now_m: float) -> None:
        self.lease_s = lease_s
        self._workers = {w.id: w for w in workers}
        # After a master restart every known worker gets one lease of grace to come back.
        self._seen_m = {w.id: now_m for w in self._workers.values() if not w.gone}
        self.running: dict[str, set[str]] = {w: set() for w in self._workers}

    def new(
        self, reg: Registration, *, now: float, secret_hash: str, embedded: bool = False
    ) -> Worker:
        """A record for a worker registering now; `add` it once it is stored."""
        return Worker(
            embedded=embedded,
            secret_hash=secret_hash,
            id=new_id(8),
            name=reg.name,
            host=reg.host,
            types=reg.types,
            runtimes=reg.runtimes,
            slots=reg.slots,
            version=reg.version,
            untyped=reg.untyped,
            env_allow=reg.env_allow,
            registered_at=now,
            last_seen=now,
        )

    def add(self, worker: Worker, *, now_m: float) -> None:
        self._workers[worker.id] = worker
        self._seen_m[worker.id] = now_m
        self.running[worker.id] = set()

    def get(self, worker_id: str) -> Worker | None:
        worker = self._workers.get(worker_id)
        return None if worker is None or worker.gone or worker.revoked else worker

    def record(self, worker_id: str) -> Worker | None:
        """Any worker ever registered, gone and revoked ones too."""
        return self._workers.get(worker_id)

    def records(self) -> list[Worker]:
        """Every worker ever registered."""
        return list(self._workers.values())

    def name(self, worker_id: str) -> str | None:
        """The name of any worker ever registered, gone ones too."""
        worker = self._workers.get(worker_id)
        return worker.name if worker else None

    def touch(self, worker_id: str, *, now: float, now_m: float) -> Worker:
        """The worker was heard from; returns the record with `last_seen` moved on."""
        worker = replace(self._workers[worker_id], last_seen=now)
        self._workers[worker_id] = worker
        self._seen_m[worker_id] = now_m
        return worker

    def update(self, worker: Worker) -> None:
        self._workers[worker.id] = worker

    def live(self, worker: Worker, now_m: float) -> bool:
        seen = self._seen_m.get(worker.id)
        if worker.gone or worker.revoked or seen is None:
            return False
        return now_m - seen <= self.lease_s

    def live_workers(self, now_m: float) -> list[Worker]:
        return [w for w in self._workers.values() if self.live(w, now_m)]

    def state(self, worker: Worker, now_m: float) -> str:
        if worker.revoked:
            return "revoked"
        if worker.gone:
            return "gone"
        if not self.live(worker, now_m):
            return "lost"
        return "draining" if worker.draining else "live"

    def views(self, now_m: float, *, now: float, every: bool = False) -> list[dict[str, Any]]:
        """Workers newest first: live ones, and others last heard from within a day (or all)."""
        result = []
        for w in sorted(self._workers.values(), key=lambda w: w.registered_at, reverse=True):
            if not every and now - w.last_seen > KEEP_SHOWING_S and not self.live(w, now_m):
                continue  # a worker restarted daily on 300 machines leaves 300 ids a day
            result.append(
                {
                    "id": w.id,
                    "name": w.name,
                    "host": w.host,
                    "types": list(w.types),
                    "runtimes": list(w.runtimes),
                    "slots": w.slots,
                    "untyped": w.untyped,
                    "envAllow": list(w.env_allow),
                    "running": sorted(self.running.get(w.id, ())),
                    "lastSeen": rfc3339(w.last_seen),
                    "registeredAt": rfc3339(w.registered_at),
                    "version": w.version,
                    "state": self.state(w, now_m),
                }
            )
        return result
