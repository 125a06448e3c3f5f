"""Run Asphalt's benchmarks B1-B7 in one go: `python -m bench [--quick] [--only B2,B4]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Row, git_commit, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
Bench = Callable[[Path, bool], Awaitable[tuple[list[Row], dict[str, Any]]]]
# id -> (module, time limit in seconds for the full run)
BENCHES: dict[str, tuple[str, float]] = {
    "B1": ("bench.b1", 180.0),
    "B2": ("bench.b2", 120.0),
    "B3": ("bench.b3", 480.0),
    "B4": ("bench.b4", 120.0),
    "B5": ("bench.b5", 300.0),
    "B6": ("bench.b6", 360.0),
    "B7": ("bench.b7", 240.0),
}
MISSING: dict[str, str] = {}
SETTLE_S = 3.0


def versions() -> dict[str, str]:
    found: dict[str, str] = {"python": sys.version.split()[0]}
    for name in ("asphalt", "aiohttp", "lmdb", "msgpack", "docker"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    with contextlib.suppress(Exception):
        import docker

        client = docker.from_env()
        found["docker-engine"] = str(client.version().get("Version"))
        client.close()
    return found


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def table(rows: list[Row]) -> str:
    head = ["id", "figure", "asphalt", "unit", "baseline", "ratio", "target", "holds"]
    body = [
        [
            r.bench,
            r.metric,
            fmt(r.value),
            r.unit,
            fmt(r.baseline),
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.target,
            {True: "yes", False: "NO", None: "-"}[r.holds] + (f" ({r.note})" if r.note else ""),
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in [head, ["-" * w for w in widths], *body]
    ]
    return "\n".join(lines)


async def settle() -> None:
    """Let the last benchmark's writes reach the disk before the next starts measuring.

    B1 leaves Docker removing containers; while that I/O drains, a master's synced commits can
    stall for tens of milliseconds, which B2's tail would charge to Asphalt.
    """
    await asyncio.to_thread(os.sync)
    await asyncio.sleep(SETTLE_S)


async def run_all(
    chosen: list[str], quick: bool, workdir: Path
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for index, name in enumerate(chosen):
        if index:
            await settle()
        if name in MISSING:
            rows.append(Row(name, MISSING[name], None, "", note="not measured"))
            continue
        module, limit_s = BENCHES[name]
        bench: Bench = importlib.import_module(module).run
        started = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        here = workdir / name
        here.mkdir()
        try:
            async with asyncio.timeout(limit_s / (3 if quick else 1)):
                got, figures = await bench(here, quick)
        except Exception as e:
            traceback.print_exc()
            got = [Row(name, "failed", None, "", note=f"{type(e).__name__}: {e}"[:120])]
            figures = {"error": repr(e)}
        figures["seconds"] = time.perf_counter() - started
        print(f"{name} done in {figures['seconds']:.1f} s", file=sys.stderr, flush=True)
        rows.extend(got)
        raw[name] = figures
    return rows, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B2,B4")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = parser.parse_args(argv)
    everything = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
    chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()] or everything
    unknown = [b for b in chosen if b not in everything]
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="asphalt-bench-"))
    try:
        rows, raw = asyncio.run(run_all(chosen, args.quick, workdir))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", file=sys.stderr)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "git": git_commit(ROOT),
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "versions": versions(),
        "rows": [dataclasses.asdict(r) for r in rows],
        "raw": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows))
    print(f"\nload average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"results: {args.out}")
    return 1 if any(r.metric == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
