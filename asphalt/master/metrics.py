"""Prometheus metrics (the only importer of prometheus_client).

Counters and histograms are fed by the domain events, so they count what was committed; the
gauges (jobs queued and running, workers, the store's room) are read from the core when
Prometheus scrapes, so they are never out of date. Counters start at zero with each master
process, as Prometheus expects of a counter that restarts."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from asphalt.master import events
from asphalt.master.core.scheduler import Scheduler
from asphalt.model.records import Job, JobState

# The text format every Prometheus reads (generate_latest writes it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


def job_type(job: Job) -> str:
    """The label of the workers a job waits for: its types, or "any" when it names none."""
    return ",".join(job.spec.types) or "any"


class Metrics:
    """The master's metrics, in a registry of its own (two masters in one process stay apart)."""

    def __init__(self, scheduler: Scheduler, *, monotonic: Callable[[], float] = time.monotonic):
        self.registry = CollectorRegistry(auto_describe=False)
        self._now_m = monotonic
        self._ended = Counter(
            "asphalt_jobs_ended",
            "Jobs that ended, by the state they ended in and their project's id",
            ["state", "project"],
            registry=self.registry,
        )
        self._waited = Histogram(
            "asphalt_job_queued_seconds",
            "Seconds from a job being ready to run to its attempt starting on a worker",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self._ran = Histogram(
            "asphalt_job_duration_seconds",
            "Seconds an attempt ran, from start to end, as its worker reported them",
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self._deliveries = Counter(
            "asphalt_hook_deliveries",
            "Webhook delivery tries, by outcome: delivered, retry (to be tried again), failed",
            ["outcome"],
            registry=self.registry,
        )
        self.backlog: Callable[[], int] = lambda: 0  # deliveries still to send (the sender's)
        self.registry.register(_Live(scheduler, lambda: self.backlog()))
        self._ready_m: dict[str, float] = {}  # job id -> when it became ready (monotonic)
        scheduler.events.subscribe(events.JobQueued, self._queued)
        scheduler.events.subscribe(events.JobUpdated, self._queued)
        scheduler.events.subscribe(events.JobStarted, self._started)
        scheduler.events.subscribe(events.JobEnded, self._job_ended)

    def text(self) -> bytes:
        """Every metric in Prometheus' text format."""
        return bytes(generate_latest(self.registry))

    def delivery_tried(self, outcome: str) -> None:
        self._deliveries.labels(outcome=outcome).inc()

    def _queued(self, event: events.JobQueued | events.JobUpdated) -> None:
        job = event.job
        if job.state is JobState.QUEUED and job.ready:
            self._ready_m.setdefault(job.id, self._now_m())

    def _started(self, event: events.JobStarted) -> None:
        ready = self._ready_m.pop(event.job.id, None)
        if ready is not None:
            self._waited.observe(max(0.0, self._now_m() - ready))

    def _job_ended(self, event: events.JobEnded) -> None:
        job = event.job
        self._ready_m.pop(job.id, None)
        self._ended.labels(state=str(job.state), project=job.project).inc()
        if job.started_at is not None and job.ended_at is not None:
            self._ran.observe(max(0.0, job.ended_at - job.started_at))


class _Live:
    """The gauges, computed from the core at each scrape (a collector needs only `collect`)."""

    def __init__(self, scheduler: Scheduler, backlog: Callable[[], int]) -> None:
        self._scheduler = scheduler
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        scheduler = self._scheduler
        queued = GaugeMetricFamily(
            "asphalt_jobs_queued",
            "Jobs ready to run and waiting for a worker, by the worker type they need",
            labels=["type"],
        )
        for kind, count in sorted(Tally(map(job_type, scheduler.dispatch.queues)).items()):
            queued.add_metric([kind], count)
        yield queued
        running = GaugeMetricFamily(
            "asphalt_jobs_running",
            "Jobs running on a worker, by the worker type they need",
            labels=["type"],
        )
        jobs = scheduler.store.jobs(scheduler.dispatch.running_ids())
        for kind, count in sorted(Tally(map(job_type, jobs)).items()):
            running.add_metric([kind], count)
        yield running
        workers = GaugeMetricFamily(
            "asphalt_workers", "Workers the master knows, by state", labels=["state"]
        )
        registry, now_m = scheduler.registry, scheduler.now_m()
        states = Tally(registry.state(w, now_m) for w in registry.records())
        for state in ("live", "draining", "lost", "gone", "revoked"):
            workers.add_metric([state], states.get(state, 0))
        yield workers
        yield GaugeMetricFamily(
            "asphalt_hook_outbox", "Webhook deliveries waiting to be sent", value=self._backlog()
        )
        used, size = scheduler.store.usage()
        yield GaugeMetricFamily("asphalt_store_used_bytes", "Bytes the store uses", value=used)
        yield GaugeMetricFamily(
            "asphalt_store_map_bytes", "The store's map size (-map-size)", value=size
        )
        yield GaugeMetricFamily(
            "asphalt_store_free_bytes", "Room left in the store's map", value=size - used
        )
