"""B3's comparison with RQ and Celery: Redis from Debian, both libraries in bench/.venv-compare.

The project's own environment stays clean: RQ, Celery and redis-py live only in that separate
venv, made on first use; `redis-server` comes from Debian's package (installed when missing and
this runs as root).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import HOST, Proc, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv-compare"
PACKAGES = ["rq", "celery", "redis", "packaging"]
SLOTS = 2
RQ_JOBS = 500  # RQ forks a work horse per job: its rate is steady, so fewer jobs show it


def ensure_tools() -> str | None:
    """Redis and the compare venv, made if missing; returns why not, when they cannot be."""
    if shutil.which("redis-server") is None:
        if os.geteuid() != 0:
            return "redis-server is missing and this is not root: apt-get install redis-server"
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"]):
            done = subprocess.run(argv, capture_output=True, check=False, env=_apt_env())
            if done.returncode != 0:
                return f"{' '.join(argv)} failed: {done.stderr.decode()[-200:]}"
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *PACKAGES], capture_output=True, check=False
    )
    if done.returncode != 0:
        return f"pip install {' '.join(PACKAGES)} failed: {done.stderr.decode()[-200:]}"
    return None


def _apt_env() -> dict[str, str]:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def _env(redis: str) -> dict[str, str]:
    return dict(os.environ, BENCH_REDIS=redis, PYTHONPATH=str(ROOT))


def _drive(kind: str, jobs: int, redis: str) -> float:
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "bench.compare_jobs", kind, str(jobs)],
        cwd=ROOT,
        env=_env(redis),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} driver failed: {done.stderr[-400:]}")
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def _workers(kind: str, redis: str, workdir: Path) -> list[Proc]:
    bin_dir = VENV / "bin"
    if kind == "rq":
        argv = [str(bin_dir / "rq"), "worker", "-u", redis, "-q", "bench"]
        return [Proc(f"rq{i}", argv, workdir / f"rq{i}.log") for i in range(SLOTS)]
    argv = [
        str(bin_dir / "celery"),
        "-A",
        "bench.compare_jobs",
        "worker",
        "-c",
        str(SLOTS),
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "warning",
    ]
    return [Proc("celery", argv, workdir / "celery.log")]


def _start(procs: list[Proc], redis: str) -> None:
    for proc in procs:
        log = proc.log_path.open("ab")
        proc.popen = subprocess.Popen(
            proc.argv, cwd=ROOT, env=_env(redis), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()


def measure(workdir: Path, jobs: int) -> dict[str, Any]:
    why = ensure_tools()
    if why is not None:
        return {"skipped": why}
    port = free_port()
    redis_url = f"redis://{HOST}:{port}/0"
    redis = Proc(
        "redis",
        ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"],
        workdir / "redis.log",
    )
    redis.start()
    found: dict[str, Any] = {}
    try:
        for kind in ("rq", "celery"):
            procs = _workers(kind, redis_url, workdir)
            _start(procs, redis_url)
            try:
                _drive(kind, 10, redis_url)  # warm-up: the workers are up once this returns
                count = min(jobs, RQ_JOBS) if kind == "rq" else jobs
                found[f"{kind}_jobs"] = count
                found[f"{kind}_s"] = _drive(kind, count, redis_url)
            finally:
                for proc in procs:
                    proc.stop()
    finally:
        redis.stop()
    return found


async def run(workdir: Path, jobs: int) -> dict[str, Any]:
    return await asyncio.to_thread(measure, workdir, jobs)
