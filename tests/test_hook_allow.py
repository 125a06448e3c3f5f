"""-hook-allow: where webhooks and task callbacks may point, judged when they are made and again
by the address each delivery goes to (a real receiver on 127.0.0.1, reached by name and address)."""

from __future__ import annotations

import asyncio

import pytest
from harness import MasterFactory, end_jobs, receiver

from asphalt.cli import parse
from asphalt.errors import BadRequest
from asphalt.model.hook_allow import HookAllow


def test_networks_and_domains_decide_and_nothing_given_allows_everywhere() -> None:
    assert HookAllow().everywhere and HookAllow().address_allowed("203.0.113.9")
    allow = HookAllow(["10.0.0.0/8", "192.168.1.20", "example.com", "*.corp.test"])
    assert allow.address_allowed("10.1.2.3") and allow.address_allowed("192.168.1.20")
    assert not allow.address_allowed("192.168.1.21") and not allow.address_allowed("127.0.0.1")
    assert allow.name_allowed("example.com") and allow.name_allowed("ci.Example.com.")
    assert allow.name_allowed("a.corp.test") and not allow.name_allowed("badexample.com")
    allow.check("https://ci.example.com/x", field="url")
    allow.check("http://10.9.9.9:8000/x", field="url")
    allow.check("http://somewhere.else/x", field="url")  # judged by its address when sent
    with pytest.raises(BadRequest, match=r"127\.0\.0\.1 is not among") as refused:
        allow.check("http://127.0.0.1:9/x", field="callback")
    assert refused.value.field == "callback"
    only_names = HookAllow(["example.com"])
    with pytest.raises(BadRequest, match=r"somewhere\.else"):  # no network: no address will do
        only_names.check("http://somewhere.else/x", field="url")
    with pytest.raises(ValueError, match="give a network"):
        HookAllow(["not a name"])
    with pytest.raises(ValueError, match="part of an address"):
        HookAllow(["192.168.1"])  # a /24 mistyped: not taken as a domain


@pytest.mark.parametrize(
    "host", ["127.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "127.0.0.1."]
)
def test_an_address_in_any_spelling_is_judged_as_that_address(host: str) -> None:
    allow = HookAllow(["10.0.0.0/8", "example.com"])
    with pytest.raises(BadRequest):
        allow.check(f"http://{host}:9/x", field="url")
    assert not allow.name_allowed(host.strip("[]"))
    assert HookAllow(["127.0.0.0/8"]).address_allowed(host.strip("[]").rstrip("."))
    assert HookAllow(["10.0.0.0/8"]).address_allowed("::ffff:10.0.0.1")


def test_the_flag_is_a_list_checked_at_start() -> None:
    master, _, _ = parse(["-hook-allow", "10.0.0.0/8, example.com"])
    assert master is not None and master.hook_allow == ("10.0.0.0/8", "example.com")
    with pytest.raises(SystemExit):
        parse(["-hook-allow", "10.0.0.0/33"])


async def test_a_receiver_outside_the_allowed_networks_is_refused_or_never_reached(
    master: MasterFactory,
) -> None:
    async with receiver() as (server, seen):
        port = server.port
        m = await master(hook_allow=("10.0.0.0/8",), hook_retry_s=60)
        await m.call("POST", "/", {"name": "p"})
        by_address = {"url": f"http://127.0.0.1:{port}/a", "events": ["task.completed"]}
        status, refused = await m.call("POST", "/projects/p/hooks", by_address)
        assert status == 400 and refused["field"] == "url", refused
        callback = {"url": f"http://127.0.0.1:{port}/c", "secret": "s" * 16}
        status, refused = await m.call("POST", "/projects/p", {"action": "x", "callback": callback})
        assert status == 400 and refused["field"] == "callback", refused
        # A name is judged by where it leads, when the delivery is sent: here, nowhere allowed.
        by_name = {"url": f"http://localhost:{port}/n", "events": ["task.completed"]}
        status, hook = await m.call("POST", "/projects/p/hooks", by_name)
        assert status == 201, hook
        await m.call("POST", "/projects/p", {"action": "x"})
        await end_jobs(m)
        delivery: dict[str, object] = {}
        for _ in range(100):
            _, listed = await m.call("GET", f"/projects/p/hooks/{hook['id']}/deliveries")
            delivery = listed["deliveries"][0] if listed["deliveries"] else {}
            if delivery.get("tries"):
                break
            await asyncio.sleep(0.05)
        assert delivery["tries"] == 1 and delivery["state"] == "pending", delivery
        assert "-hook-allow does not allow" in str(delivery["lastAnswer"]), delivery
        assert seen.posts == []


@pytest.mark.parametrize("allowed", ["127.0.0.0/8", "localhost"], ids=["network", "domain"])
async def test_a_receiver_inside_what_is_allowed_is_reached(
    master: MasterFactory, allowed: str
) -> None:
    async with receiver() as (server, seen):
        m = await master(hook_allow=(allowed,))
        await m.call("POST", "/", {"name": "p"})
        hook = {"url": f"http://localhost:{server.port}/n", "events": ["task.completed"]}
        status, _ = await m.call("POST", "/projects/p/hooks", hook)
        assert status == 201
        await m.call("POST", "/projects/p", {"action": "x"})
        await end_jobs(m)
        await seen.until(1)
        assert [path for path, _, _ in seen.posts] == ["/n"]
