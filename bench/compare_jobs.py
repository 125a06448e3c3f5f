"""Runs inside bench/.venv-compare only: the same `true` job for RQ and Celery, and a driver.

`python -m bench.compare_jobs rq|celery JOBS` enqueues JOBS jobs and prints the seconds from the
first enqueue until every result is in, as JSON. The Redis URL comes from BENCH_REDIS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=REDIS, backend=REDIS)
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=False, result_expires=600)


def run_true() -> int:
    """The job: the same process Asphalt's host runtime starts."""
    return subprocess.run(["/bin/sh", "-c", "true"], check=False, start_new_session=True).returncode


@app.task(name="bench.true")
def celery_true() -> int:
    return run_true()


def drive_rq(jobs: int) -> float:
    from redis import Redis
    from rq import Queue

    queue = Queue("bench", connection=Redis.from_url(REDIS))
    started = time.perf_counter()
    made = [queue.enqueue("bench.compare_jobs.run_true") for _ in range(jobs)]
    for job in made:
        while job.get_status(refresh=True) not in ("finished", "failed"):
            time.sleep(0.005)
    return time.perf_counter() - started


def drive_celery(jobs: int) -> float:
    started = time.perf_counter()
    results = [celery_true.delay() for _ in range(jobs)]
    for result in results:
        result.get(timeout=600)
    return time.perf_counter() - started


def main() -> None:
    kind, jobs = sys.argv[1], int(sys.argv[2])
    seconds = drive_rq(jobs) if kind == "rq" else drive_celery(jobs)
    print(json.dumps({"kind": kind, "jobs": jobs, "seconds": seconds}))


if __name__ == "__main__":
    main()
