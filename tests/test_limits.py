"""Limits: reading them from a job's JSON and from a worker's flag, and merging the two."""

from __future__ import annotations

from typing import Any

import pytest

from asphalt.errors import BadRequest
from asphalt.limits import NO_LIMITS, Limits, parse_limits, parse_limits_flag

MIB, GIB = 1 << 20, 1 << 30


def test_a_job_sets_memory_in_bytes_or_with_a_unit_cpus_and_pids() -> None:
    limits = parse_limits({"memory": "512m", "cpus": 1.5, "pids": 256}, "limits")
    assert limits == Limits(memory=512 * MIB, cpus=1.5, pids=256)


@pytest.mark.parametrize(
    ("memory", "size"),
    [
        ("2G", 2 * GIB),
        ("6m", 6 * MIB),
        ("10240k", 10 * MIB),
        ("7340032", 7 * MIB),
        (8 * MIB, 8 * MIB),
    ],
)
def test_memory_units_are_k_m_g_whatever_their_case(memory: Any, size: int) -> None:
    assert parse_limits({"memory": memory}, "limits").memory == size


def test_what_is_left_out_or_null_is_not_set() -> None:
    assert parse_limits({"cpus": 2}, "limits") == Limits(cpus=2.0)
    assert parse_limits({"memory": None}, "limits") == NO_LIMITS
    assert parse_limits(None, "limits") == NO_LIMITS


def test_a_view_reads_back_as_the_same_limits() -> None:
    limits = Limits(memory=64 * MIB, cpus=0.25, pids=10)
    assert limits.view() == {"memory": 64 * MIB, "cpus": 0.25, "pids": 10}
    assert parse_limits(limits.view(), "limits") == limits
    assert Limits(pids=5).view() == {"pids": 5}


def test_the_jobs_own_limits_win_and_the_defaults_fill_the_rest() -> None:
    job, worker = Limits(memory=GIB), Limits(memory=2 * GIB, pids=100)
    assert job.merged(worker) == Limits(memory=GIB, pids=100)
    assert NO_LIMITS.merged(worker) == worker
    assert job.merged(NO_LIMITS) == job


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"memory": "5m"}, "jobs.main.limits.memory"),  # below what Docker allows
        ({"memory": "1.5g"}, "jobs.main.limits.memory"),
        ({"memory": "512mb"}, "jobs.main.limits.memory"),
        ({"memory": 1 << 51}, "jobs.main.limits.memory"),
        ({"memory": True}, "jobs.main.limits.memory"),
        ({"memory": 64.0 * MIB}, "jobs.main.limits.memory"),
        ({"cpus": 0}, "jobs.main.limits.cpus"),
        ({"cpus": 0.001}, "jobs.main.limits.cpus"),
        ({"cpus": 2000}, "jobs.main.limits.cpus"),
        ({"cpus": "2"}, "jobs.main.limits.cpus"),
        ({"cpus": float("nan")}, "jobs.main.limits.cpus"),
        ({"pids": 0}, "jobs.main.limits.pids"),
        ({"pids": 2.5}, "jobs.main.limits.pids"),
        ({"pids": False}, "jobs.main.limits.pids"),
        ({"swap": "1g"}, "jobs.main.limits.swap"),
        ("512m", "jobs.main.limits"),
        ([1], "jobs.main.limits"),
    ],
)
def test_a_bad_limit_is_refused_naming_its_field(value: Any, field: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_limits(value, "jobs.main.limits")
    assert refused.value.field == field
    assert refused.value.message.startswith(field)


def test_the_refusal_says_what_a_good_value_looks_like() -> None:
    with pytest.raises(BadRequest, match=r'limits\.memory must be .*"512m"'):
        parse_limits({"memory": "lots"}, "limits")
    with pytest.raises(BadRequest, match=r"limits\.cpus must be .* from 0\.01 to 1024"):
        parse_limits({"cpus": -1}, "limits")
    with pytest.raises(BadRequest, match="the limits are memory, cpus and pids"):
        parse_limits({"disk": "1g"}, "limits")


def test_a_worker_flag_sets_the_same_limits() -> None:
    flag = parse_limits_flag("memory=512m,cpus=1.5,pids=256")
    assert flag == Limits(memory=512 * MIB, cpus=1.5, pids=256)
    assert parse_limits_flag(" pids = 64 , MEMORY=1G ") == Limits(memory=GIB, pids=64)
    assert parse_limits_flag("") == NO_LIMITS


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("memory", "not NAME=VALUE"),
        ("disk=1g", "not NAME=VALUE"),
        ("pids=1,pids=2", "pids is given twice"),
        ("memory=1k", "memory must be"),
        ("cpus=many", "cpus must be"),
        ("cpus=nan", "cpus must be"),
        ("pids=1.5", "pids must be"),
        ("pids=", "pids must be"),
    ],
)
def test_a_bad_flag_is_a_value_error_that_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"^limits: .*{says}"):
        parse_limits_flag(text)
