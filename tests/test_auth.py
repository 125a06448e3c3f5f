"""The guards against a real in-process master on loopback: what a token, a header or a stored
file lets through, and what it does not."""

from __future__ import annotations

import stat

import pytest
from harness import REG, MasterFactory

from asphalt.web.login import _safe_next
from asphalt.worker.client import MasterClient


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "header",
    ["Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "Via", "True-Client-IP"],
)
async def test_a_request_that_came_through_a_proxy_is_not_trusted_as_local(
    master: MasterFactory, header: str
) -> None:
    m = await master()
    assert (await m.call("GET", "/"))[0] == 200
    status, body = await m.call("GET", "/", headers={header: "1.2.3.4"})
    assert status == 401 and "Authorization: Bearer" in body["error"], body
    assert (await m.call("GET", "/", headers={header: "x", **_bearer(m.admin)}))[0] == 200


async def test_an_admin_token_cannot_be_limited_to_projects(master: MasterFactory) -> None:
    m = await master()
    body = {"name": "x", "scope": "admin", "projects": ["web"]}
    status, answer = await m.call("POST", "/tokens", body)
    assert status == 400 and answer["field"] == "projects", answer
    assert [t["name"] for t in (await m.call("GET", "/tokens"))[1]["tokens"]] == ["admin"]


async def test_a_submit_token_is_warned_about_the_masters_own_worker(
    master: MasterFactory,
) -> None:
    alone = await master()
    status, answer = await alone.call("POST", "/tokens", {"name": "ci", "scope": "submit"})
    assert status == 201 and "warning" not in answer
    shared = await master(own_worker=True)
    status, answer = await shared.call("POST", "/tokens", {"name": "ci", "scope": "submit"})
    assert status == 201 and "-no-worker" in answer["warning"], answer


async def test_a_token_limited_to_a_project_sees_no_job_ids_of_others(
    master: MasterFactory,
) -> None:
    m = await master()
    for name in ("mine", "theirs"):
        assert (await m.call("POST", "/", {"name": name}))[0] == 201
    status, other = await m.call("POST", "/projects/theirs", {"action": "sleep 1"})
    assert status == 201
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        lease = await client.lease(worker)
        assert lease is not None and lease.job == other["jobs"]["main"]["id"]
        body = {"name": "r", "scope": "read", "projects": ["mine"]}
        limited = (await m.call("POST", "/tokens", body))[1]["token"]
        everyone = (await m.call("GET", "/workers"))[1]["workers"]
        assert everyone[0]["running"] == [lease.job]
        status, seen = await m.call("GET", "/workers", headers=_bearer(limited))
        assert status == 200 and seen["workers"][0]["running"] == []
        status, _ = await m.call("GET", f"/jobs/{lease.job}", headers=_bearer(limited))
        assert status == 403


async def test_the_data_directory_and_store_are_the_masters_users_alone(
    master: MasterFactory,
) -> None:
    m = await master()
    for path in (m.data, m.data / "store"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (m.data / "store" / "data.mdb", m.data / "admin.token", m.data / "join.token"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        ("/workers", "/workers"),
        ("/projects/p?limit=5", "/projects/p?limit=5"),
        ("//evil.example/x", "/"),
        ("/\t/evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/login?next=/x", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_signing_in_a_browser_goes_only_to_a_page_of_this_master(
    asked: str | None, goes: str
) -> None:
    assert _safe_next(asked) == goes
