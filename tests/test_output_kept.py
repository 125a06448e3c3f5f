"""Output past the cap keeps its start and its end, a job's view stays small, and stderr can be
read apart from stdout: through a real master and its worker, with real processes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Http, wait_until

MIB = 1 << 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def raw(http: Http, path: str) -> bytes:
    request = urllib.request.Request(http.base + path, headers=http.auth)
    with urllib.request.urlopen(request, timeout=60) as response:
        data: bytes = response.read()
        return data


def test_a_job_printing_20_mb_keeps_its_start_and_its_last_line(cluster: Cluster) -> None:
    http = cluster.master()  # the default cap: 8 MiB
    http.post("/", {"name": "p"})
    # 20.9 MB on stdout, a line on stderr near the start and one at the very end.
    action = "echo first >&2; seq 1 3000000; echo 'the build failed here' >&2; exit 3"
    http.post("/projects/p", {"id": "big", "action": action})
    done = wait_until(lambda: http.task_done("p", "big"), 120, "the 20 MB job")
    main = done["jobs"]["main"]
    assert (main["state"], main["status"]) == ("failed", 3)
    printed = len("first\n") + sum(len(f"{n}\n") for n in range(1, 3000001)) + 22
    assert main["outputBytes"] == printed

    kept = raw(http, f"/jobs/{main['id']}/output")
    assert 8 * MIB <= len(kept) < 8 * MIB + 200
    # Each stream is exact; where they meet, the order is the order the worker read them in:
    # the last of stdout may still be in its pipe (64 KiB) when stderr's line is read.
    end = kept[-(256 << 10) :]
    assert b"2999999\n3000000\n" in end and b"\nthe build failed here\n" in end
    assert kept.endswith((b"3000000\n", b"failed here\n"))
    head, marker, tail = kept.partition(b"\n[asphalt: ")
    assert len(head) == MIB and b"1\n2\n3\n" in head  # the first MiB, then the marker
    dropped = printed - 8 * MIB
    assert marker and tail.startswith(b"%d bytes of output dropped here" % dropped)
    assert b"dropped here" not in tail[100:]

    # The job's view carries the last 64 KiB and says where the rest is.
    status, body = http.call("GET", f"/jobs/{main['id']}")
    assert status == 200
    view = json.dumps(body)
    assert len(view) < 80 << 10, len(view)
    assert "2999999\n3000000\n" in body["output"]
    assert body["output"].startswith("[asphalt: ") and body["outputUrl"] in body["output"]
    assert body["outputUrl"] == f"/jobs/{main['id']}/output"
    # So does the task's.
    assert len(json.dumps(http.get("/projects/p/tasks/big"))) < 100 << 10

    # stderr alone: both of its lines, none of stdout's, though stdout went on for 20 MB.
    err = raw(http, f"/jobs/{main['id']}/output?stream=stderr")
    assert err.startswith(b"first\n") and err.endswith(b"\nthe build failed here\n")
    assert len(err) < 200 and b"bytes of output dropped here" in err  # where the gap is
    out = raw(http, f"/jobs/{main['id']}/output?stream=stdout")
    assert out.endswith(b"3000000\n") and b"failed here" not in out and b"first" not in out

    status, body = http.call("GET", f"/jobs/{main['id']}/output?stream=both-of-them")
    assert status == 400 and body["field"] == "stream", body


def test_following_one_stream_gets_only_that_stream(cluster: Cluster) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    action = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done"
    http.post("/projects/p", {"id": "t", "action": action})
    job = wait_until(lambda: http.get("/projects/p/tasks/t")["jobs"]["main"], 10, "the job")
    request = urllib.request.Request(
        f"{http.base}/jobs/{job['id']}/output?follow=1&stream=stderr", headers=http.auth
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.read() == b"err1\nerr2\nerr3\n"
