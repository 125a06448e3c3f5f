"""A job's outputs: the $ASPHALT_OUTPUTS parser, the Finish that carries them checked on arrival,
and the finish a real worker runner sends a real master for a real job."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from harness import CONFIG, REG, Master, MasterFactory

from asphalt import protocol, wire
from asphalt.config import WorkerConfig
from asphalt.errors import BadRequest
from asphalt.master.app import build_app
from asphalt.protocol import Finish, to_json
from asphalt.worker.client import MasterClient
from asphalt.worker.masking import Masker
from asphalt.worker.outputs import OutputsError, parse_outputs
from asphalt.worker.runner import Runner, RunningJob
from asphalt.worker.runtimes import DockerRuntime, HostRuntime, Runtime

SECRET = "s3cret-value"
KIB = 1024


async def _nowhere(chunk: bytes, stream: int) -> None:
    pass


def masked(data: bytes, *secrets: str) -> dict[str, str]:
    return parse_outputs(data, Masker(_nowhere, secrets).text)


def refusal(data: bytes, *secrets: str) -> str:
    with pytest.raises(OutputsError) as raised:
        masked(data, *secrets)
    return str(raised.value)


# The parser


def test_key_value_lines_take_everything_after_the_first_equals_sign() -> None:
    data = b"A=1\nPATH_2=/usr/bin:/bin\nB=x=y<<z\nEMPTY=\n_u=  spaced  \n"
    assert parse_outputs(data) == {
        "A": "1",
        "PATH_2": "/usr/bin:/bin",
        "B": "x=y<<z",
        "EMPTY": "",
        "_u": "  spaced  ",
    }


def test_a_heredoc_value_is_the_lines_between_joined_without_the_last_newline() -> None:
    data = b"NOTES<<EOF\nline one\n\nline=two\nX<<Y\nEOF\nNEXT=1\n"
    assert parse_outputs(data) == {"NOTES": "line one\n\nline=two\nX<<Y", "NEXT": "1"}


def test_a_heredoc_takes_any_delimiter_word_and_may_be_empty() -> None:
    data = b"A<<END_OF_A\nEOF\nEND_OF_A\nB<<E=F\nb\nE=F\nC<<EOF\nEOF\n"
    assert parse_outputs(data) == {"A": "EOF", "B": "b", "C": ""}


def test_a_later_key_overrides_an_earlier_one() -> None:
    assert parse_outputs(b"A=1\nB=2\nA<<EOF\nthree\nEOF\n") == {"A": "three", "B": "2"}


def test_blank_lines_crlf_endings_and_a_missing_last_newline_are_fine() -> None:
    assert parse_outputs(b"\n  \nA=1\r\n\t\r\nB<<EOF\r\nb\r\nEOF\r\nC=3") == {
        "A": "1",
        "B": "b",
        "C": "3",
    }


def test_an_empty_file_has_no_outputs() -> None:
    assert parse_outputs(b"") == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"A=1\n\nfoo\n", 'line 3: "foo" is neither KEY=VALUE nor KEY<<EOF'),
        (b"9A=1\n", 'line 1: "9A" is not a valid key'),
        (b"A=1\n A=1\n", 'line 2: " A" is not a valid key'),
        (b"A-B=1\n", 'line 1: "A-B" is not a valid key'),
        (b"=1\n", 'line 1: "" is not a valid key'),
        (b"\xc3\xa9=1\n", 'line 1: "\u00e9" is not a valid key'),
        (b"A B<<EOF\nx\nEOF\n", 'line 1: "A B" is not a valid key'),
        (b"A=1\nB<<EOF\nx\nEO F\n", 'line 2: "B<<EOF" has no line "EOF" to end it'),
        (b"B<<\nx\n\n", 'line 1: "B<<" needs a delimiter word after <<'),
        (b"A=1\nB=\xff\n", "line 2: not UTF-8 text"),
        (b"A=1\nB<<EOF\n\x80\nEOF\n", "line 3: not UTF-8 text"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_line(data: bytes, message: str) -> None:
    assert refusal(data).startswith(f"ASPHALT_OUTPUTS {message}")


def test_a_long_line_is_quoted_cut_short() -> None:
    assert refusal(b"x" * 100) == (
        f'ASPHALT_OUTPUTS line 1: "{"x" * 60}\u2026" is neither KEY=VALUE nor KEY<<EOF'
    )


def test_a_value_may_hold_64_kib_of_utf8_and_no_more() -> None:
    assert parse_outputs(b"A=" + "\u00e9".encode() * (32 * KIB))["A"] == "\u00e9" * (32 * KIB)
    message = refusal(b"A=1\nB=" + b"x" * (64 * KIB + 1))
    assert message == "ASPHALT_OUTPUTS line 2: the value of B is over 64 KiB"
    heredoc = b"A=1\nH<<EOF\n" + b"x" * (32 * KIB) + b"\n" + b"x" * (32 * KIB) + b"\nEOF\n"
    assert refusal(heredoc) == "ASPHALT_OUTPUTS line 2: the value of H is over 64 KiB"


def test_at_most_100_keys_but_overriding_one_adds_none() -> None:
    hundred = b"".join(b"K%d=%d\n" % (n, n) for n in range(100))
    assert len(parse_outputs(hundred + b"K0=again\n")) == 100
    assert refusal(hundred + b"K100=1\n") == "ASPHALT_OUTPUTS line 101: more than 100 keys"


def test_at_most_1_mib_in_all_counting_keys_and_values() -> None:
    value = b"x" * (64 * KIB)
    fifteen = b"".join(b"K%02d=%s\n" % (n, value) for n in range(15))
    assert len(parse_outputs(fifteen + b"K15=" + value[:-100] + b"\n")) == 16
    message = refusal(fifteen + b"K15=" + value + b"\n")
    assert message == "ASPHALT_OUTPUTS line 16: the outputs are over 1 MiB in total"
    assert len(parse_outputs(fifteen + b"K00=\nK15=" + value + b"\n")) == 16  # K00 shrank


def test_secrets_are_masked_in_values_as_in_output() -> None:
    data = f"TOKEN=Bearer {SECRET}\nNOTE<<EOF\nsee {SECRET[:4]}\n{SECRET[4:]}\nEOF\n".encode()
    note = f"*** {SECRET[:4]}\n{SECRET[4:]}"
    assert masked(data, SECRET, "see") == {"TOKEN": "Bearer ***", "NOTE": note}
    assert masked(data, f"{SECRET[:4]}\n{SECRET[4:]}")["NOTE"] == "see ***"  # a value spans lines


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (f"{SECRET}\n".encode(), 'line 1: "***" is neither KEY=VALUE nor KEY<<EOF'),
        (f"{'x' * 58}{SECRET}".encode(), f'line 1: "{"x" * 58}**\u2026" is neither'),
        (b"OK=1\nTOKEN_abc123=1\n", 'line 2: the key "TOKEN_***" holds a secret\'s value'),
        (f"A<<{SECRET}\nx\n".encode(), 'line 1: "A<<***" has no line "***" to end it'),
    ],
)
def test_no_part_of_a_secret_shows_in_a_refusal(data: bytes, message: str) -> None:
    refused = refusal(data, SECRET, "abc123")
    assert refused.startswith(f"ASPHALT_OUTPUTS {message}")
    assert SECRET[:3] not in refused and "abc" not in refused


def test_sizes_count_masked_values_as_the_master_counts_what_it_receives() -> None:
    data = b"A=" + b"ab" * (32 * KIB)  # 64 KiB as written; half as long again once masked
    assert len(parse_outputs(data)["A"]) == 64 * KIB
    assert refusal(data, "ab") == "ASPHALT_OUTPUTS line 1: the value of A is over 64 KiB"


# The finish that carries them


def finish_body(**changes: Any) -> dict[str, Any]:
    body = {"attempt": 1, "state": "succeeded", "status": 0, "reason": None}
    return {**body, "started_at": 1.0, "ended_at": 2.0, **changes}


def test_a_finish_carries_outputs_and_has_none_when_a_worker_sends_none() -> None:
    assert protocol.read(finish_body(), Finish).outputs == {}
    fin = protocol.read(finish_body(outputs={"A": "1", "_b": "two\nlines"}), Finish)
    assert fin.outputs == {"A": "1", "_b": "two\nlines"}
    assert protocol.read(json.loads(json.dumps(to_json(fin))), Finish) == fin


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (["A"], "outputs must be an object of names to strings"),
        ({f"K{n}": "" for n in range(101)}, "outputs must be an object of at most 100 keys"),
        ({"9x": "1"}, "outputs.9x is not a name of letters, digits and _"),
        ({"A": 1}, "outputs must be an object of names to strings"),
        ({"A": "\ud800"}, "outputs.A must be UTF-8 text"),
        ({"A": "x" * (64 * KIB + 1)}, "outputs.A is over 64 KiB"),
        ({f"K{n:02}": "x" * (64 * KIB) for n in range(16)}, "outputs are over 1 MiB in total"),
    ],
)
def test_a_finish_with_outputs_a_worker_never_sends_is_refused(outputs: Any, message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        protocol.read(finish_body(outputs=outputs), Finish)
    assert raised.value.message.startswith(message)
    assert raised.value.field == "outputs"


async def test_the_master_answers_400_to_bad_outputs_and_takes_good_ones(
    master: MasterFactory,
) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}})
        lease = await client.lease(w)
        assert lease is not None
        path = f"{m.url}/_worker/{w}/jobs/{lease.job}/finish"
        bad = json.dumps(finish_body(outputs={"9x": "1"}))
        async with m.session.post(path, data=bad, headers=client.auth_headers()) as answer:
            assert answer.status == 400
            assert (await answer.json())["field"] == "outputs"
        assert (await m.task("p", "t"))["jobs"]["main"]["state"] == "running"
        await client.finish(w, lease.job, Finish(**finish_body(outputs={"A": "1"})))
        assert (await m.task("p", "t"))["jobs"]["main"]["state"] == "succeeded"


# What a worker sends: a real runner, runtime and job, and a real master that notes each finish


Sent = list[dict[str, Any]]
RunJob = Callable[..., Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


@pytest.fixture
async def noting_master(tmp_path: Path) -> AsyncIterator[tuple[Master, Sent]]:
    """A real master whose worker API notes the body of every finish it is sent."""
    sent: Sent = []

    @web.middleware
    async def note(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/finish"):
            sent.append(await request.json())
        response: web.StreamResponse = await handler(request)
        return response

    app = build_app(replace(CONFIG, data_dir=tmp_path / "data"))
    app.middlewares.append(note)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Master(server, session, tmp_path / "data"), sent
    await server.close()


@pytest.fixture
def run_job(noting_master: tuple[Master, Sent], tmp_path: Path) -> RunJob:
    """Runs one job as a worker would, in `runtime`; returns its finish and its view."""
    m, sent = noting_master

    async def run(
        runtime: Runtime, job: dict[str, Any], secrets: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        work = tmp_path / "work"
        config = WorkerConfig(master_url=m.url, name="w", host="h", work_dir=work)
        await m.new_task({"main": {**job, **({"secrets": secrets} if secrets else {})}})
        async with MasterClient(m.url, join=m.join) as client:
            reg = wire.replace(REG, runtimes=(runtime.name,))
            worker = (await client.register(reg)).worker
            lease = await client.lease(worker)
            assert lease is not None
            runner = Runner(config, client, {runtime.name: runtime})
            assert await runner.run(worker, RunningJob(lease), lambda: False) is None
            await runner.close()
            await runtime.close()
        assert list(work.iterdir()) == []  # the outputs file went with its directory
        [fin] = sent
        return fin, (await m.task("p", "t"))["jobs"]["main"]

    return run


BOTH_FORMS = """
echo "GREETING=hello, world" >> "$ASPHALT_OUTPUTS"
printf 'NOTES<<EOF\\nline one\\nline two\\nEOF\\n' >> "$ASPHALT_OUTPUTS"
echo "TOKEN=$TOKEN" >> "$ASPHALT_OUTPUTS"
echo "URL=$ASPHALT_URL" >> "$ASPHALT_OUTPUTS"
echo "GREETING=hello again" >> "$ASPHALT_OUTPUTS"
"""
EXPECTED = {"GREETING": "hello again", "NOTES": "line one\nline two", "TOKEN": "***"}


async def test_a_host_jobs_outputs_go_to_the_master_in_its_finish_with_secrets_masked(
    run_job: RunJob, noting_master: tuple[Master, Sent]
) -> None:
    fin, job = await run_job(HostRuntime(), {"action": BOTH_FORMS}, {"TOKEN": SECRET})
    assert fin["outputs"] == {**EXPECTED, "URL": noting_master[0].url}
    assert (fin["state"], fin["status"], job["state"]) == ("succeeded", 0, "succeeded")


async def test_a_job_that_succeeded_with_a_malformed_file_fails_naming_the_line(
    run_job: RunJob,
) -> None:
    action = f'printf "A=1\\n\\nnot an output {SECRET}\\n" > "$ASPHALT_OUTPUTS"'
    fin, job = await run_job(HostRuntime(), {"action": action}, {"TOKEN": SECRET})
    reason = 'ASPHALT_OUTPUTS line 3: "not an output ***" is neither KEY=VALUE nor KEY<<EOF'
    assert (fin["state"], fin["status"], fin["reason"], fin["outputs"]) == ("failed", 0, reason, {})
    assert (job["state"], job["reason"]) == ("failed", reason)


async def test_a_job_that_failed_keeps_its_own_failure_and_its_well_formed_outputs(
    run_job: RunJob,
) -> None:
    fin, _ = await run_job(HostRuntime(), {"action": 'echo A=1 >"$ASPHALT_OUTPUTS"; exit 3'})
    assert (fin["state"], fin["status"], fin["reason"], fin["outputs"]) == (
        "failed",
        3,
        None,
        {"A": "1"},
    )


async def test_a_job_that_failed_adds_nothing_from_a_malformed_file(run_job: RunJob) -> None:
    fin, _ = await run_job(HostRuntime(), {"action": 'echo "A=1\nbad" >"$ASPHALT_OUTPUTS"; exit 3'})
    assert (fin["state"], fin["status"], fin["reason"], fin["outputs"]) == ("failed", 3, None, {})


@pytest.mark.docker
async def test_a_docker_jobs_outputs_go_to_the_master_in_its_finish(
    run_job: RunJob, noting_master: tuple[Master, Sent], test_image: str
) -> None:
    runtime = DockerRuntime(network="none", pull=False)
    job = {"action": BOTH_FORMS, "container": test_image}
    fin, view = await run_job(runtime, job, {"TOKEN": SECRET})
    assert (fin["state"], view["runtime"]) == ("succeeded", "docker")
    # Set even where it leads nowhere: this job has no network.
    assert fin["outputs"] == {**EXPECTED, "URL": noting_master[0].url}
