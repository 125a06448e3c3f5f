"""A job's secrets reach its environment and nowhere else: not answers, pages, output or logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, wait_until

from asphalt.protocol import STDERR, STDOUT
from asphalt.worker.masking import Masker

SECRET = "s3cr3t-Value-42"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


class Pieces:
    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.streams: list[int] = []

    async def __call__(self, chunk: bytes, stream: int) -> None:
        self.seen.append(chunk)
        self.streams.append(stream)


@pytest.mark.parametrize("cut", range(1, len(SECRET) + 4))
async def test_a_secret_split_across_pieces_of_output_is_masked_whole(cut: int) -> None:
    text = f"a{SECRET}b {SECRET}".encode()
    pieces = Pieces()
    masker = Masker(pieces, [SECRET, "Value"])
    await masker.write(text[:cut], STDOUT)
    await masker.write(text[cut:], STDOUT)
    await masker.flush()
    assert b"".join(pieces.seen) == b"a***b ***"


async def test_a_secret_split_on_one_stream_is_masked_whatever_the_other_prints() -> None:
    pieces = Pieces()
    masker = Masker(pieces, [SECRET])
    await masker.write(SECRET[:5].encode(), STDERR)
    await masker.write(b"plain\n", STDOUT)
    await masker.write(SECRET[5:].encode() + b"\n", STDERR)
    await masker.flush()
    assert list(zip(pieces.streams, pieces.seen, strict=True)) == [
        (STDOUT, b"plain\n"),
        (STDERR, b"***\n"),
    ]


async def test_output_that_only_looks_like_a_secret_is_held_back_then_sent_at_the_end() -> None:
    pieces = Pieces()
    masker = Masker(pieces, [SECRET])
    await masker.write(b"tail s3cr", STDOUT)
    assert b"".join(pieces.seen) == b"tail "
    await masker.flush()
    assert b"".join(pieces.seen) == b"tail s3cr"


def test_secrets_reach_the_job_and_are_masked_in_every_answer_page_and_log(
    cluster: Cluster,
) -> None:
    http = cluster.master()
    http.post("/", {"name": "p"})
    action = 'echo "token is $TOKEN"; printf "%s" "$TOKEN" | cut -c1-4; printf "%s\\n" "$TOKEN"'
    task = http.post(
        "/projects/p",
        {
            "id": "t",
            "jobs": {
                "main": {"action": action, "secrets": {"TOKEN": SECRET}, "env": {"A": "1"}},
                "after": {"action": 'echo "after sees ${TOKEN:-nothing}"'},
            },
        },
    )
    assert task["jobs"]["main"]["secrets"] == {"TOKEN": "***"}
    done = wait_until(lambda: http.task_done("p", "t"), 30, "the task to complete")
    main = done["jobs"]["main"]
    assert main["state"] == "succeeded", main
    assert main["output"] == "token is ***\ns3cr\n***\n"  # it ran with the value, shown masked
    assert done["jobs"]["after"]["output"] == "after sees nothing\n"
    rerun = http.post("/projects/p/tasks/t/rerun", None)
    again = wait_until(lambda: http.task_done("p", "t"), 30, "the rerun to complete")
    assert rerun["run"] == 2 and again["jobs"]["main"]["output"] == main["output"]
    job = main["id"]
    answers = [
        http.text("/"),
        http.text("/projects/p"),
        http.text("/projects/p/tasks/t"),
        http.text("/projects/p/tasks/t?run=1"),
        http.text(f"/jobs/{job}"),
        http.text(f"/jobs/{job}/output"),
        http.text(f"/jobs/{job}/output?follow=1"),
    ]
    for path in ("/projects/p/tasks/t", f"/jobs/{job}", "/workers", "/"):
        status, page = http.call("GET", path, headers={"Accept": "text/html"})
        assert status == 200
        answers.append(page)
    assert "***" in answers[4]
    for answer in answers:
        assert SECRET not in answer and SECRET[:8] not in answer
    assert cluster.master_proc is not None
    logs = cluster.master_proc.logs()
    assert SECRET not in logs and "s3cr3t" not in logs


def test_a_secret_may_not_be_named_in_env_too_nor_be_empty(cluster: Cluster) -> None:
    http = cluster.master("-no-worker")
    http.post("/", {"name": "p"})
    both = {"action": "true", "env": {"X": "1"}, "secrets": {"X": "2"}}
    status, answer = http.call("POST", "/projects/p", both)
    assert status == 400 and answer["field"] == "secrets", answer
    status, answer = http.call("POST", "/projects/p", {"action": "true", "secrets": {"X": ""}})
    assert status == 400 and answer["field"] == "secrets.X", answer
    status, answer = http.call("POST", "/projects/p", {"action": "true", "secrets": ["X"]})
    assert status == 400 and answer["field"] == "secrets", answer
    body = json.dumps(http.get("/projects/p"))
    assert '"tasks": []' in body  # nothing half made


@pytest.mark.parametrize(
    ("secrets", "text"),
    [(["hunter2", "hunter2@db.internal"], b"password is hunter2"), (["abab"], b"ababab")],
    ids=["a-secret-that-begins-another", "a-secret-that-overlaps-itself"],
)
async def test_what_is_held_back_at_the_end_is_masked_too(secrets: list[str], text: bytes) -> None:
    pieces = Pieces()
    masker = Masker(pieces, secrets)
    await masker.write(text, STDOUT)
    await masker.flush()
    assert secrets[0].encode() not in b"".join(pieces.seen), pieces.seen
    assert masker.text(f"could not run: {secrets[0]}") == "could not run: ***"
