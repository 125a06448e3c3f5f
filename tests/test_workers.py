"""The worker registry: who is listed, and for how long after leaving."""

from __future__ import annotations

from harness import REG

from asphalt.master.core.workers import KEEP_SHOWING_S, Registry
from asphalt.wire import replace

DAY = 24 * 3600.0


def test_workers_that_left_are_listed_for_a_day_and_then_only_when_asked() -> None:
    now, now_m = 10 * DAY, 1000.0
    registry = Registry([], lease_s=45.0, now_m=now_m)
    ids = {}
    for name, last_seen, gone in (
        ("live", now, False),
        ("left-an-hour-ago", now - 3600, True),
        ("left-two-days-ago", now - 2 * DAY, True),
        ("lost-two-days-ago", now - 2 * DAY, False),
    ):
        worker = replace(
            registry.new(replace(REG, name=name), now=last_seen, secret_hash=""),
            last_seen=last_seen,
            gone=gone,
        )
        registry.add(worker, now_m=now_m if name == "live" else now_m - 2 * DAY)
        ids[name] = worker.id
    shown = {w["name"]: w["state"] for w in registry.views(now_m, now=now)}
    assert shown == {"live": "live", "left-an-hour-ago": "gone"}
    every = {w["name"]: w["state"] for w in registry.views(now_m, now=now, every=True)}
    assert every == {
        "live": "live",
        "left-an-hour-ago": "gone",
        "left-two-days-ago": "gone",
        "lost-two-days-ago": "lost",
    }
    assert KEEP_SHOWING_S == DAY
    assert registry.name(ids["left-two-days-ago"]) == "left-two-days-ago"  # old jobs keep names
