"""Templates: made and changed as versions, launched with arguments checked against their JSON
Schema (defaults filled in), the merged arguments handed to the command as one argv element."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import Master, MasterFactory

from asphalt.master.core.templates import Templates
from asphalt.master.store import Store

TRAIN: dict[str, Any] = {
    "name": "train",
    "description": "Trains a model",
    "container": "asphalt-test:busybox",
    "command": "/app/run",
    "args": {
        "type": "object",
        "properties": {
            "epochs": {"type": "integer", "minimum": 1, "default": 3, "description": "passes"},
            "rate": {"type": "number", "default": 0.1},
            "model": {"type": "string", "enum": ["small", "large"]},
            "note": {"type": "string"},
        },
        "required": ["model"],
    },
    "results_dir": "/results",
    "logs_dir": "/logs",
    "timeout": 600,
    "max_running": 2,
}


async def _started(master: MasterFactory) -> Master:
    m = await master()
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    status, made = await m.call("POST", "/templates", TRAIN)
    assert status == 201, made
    return m


async def test_a_launch_fills_in_defaults_and_passes_the_args_as_one_argv_element(
    master: MasterFactory,
) -> None:
    m = await _started(master)
    note = 'it\'s "quoted" $HOME; `rm -rf /`'
    status, task = await m.call(
        "POST", "/projects/p", {"template": "train", "args": {"model": "small", "note": note}}
    )
    assert status == 201, task
    job = task["jobs"]["main"]
    assert job["template"] == {"name": "train", "version": 1}
    assert job["args"] == {"model": "small", "note": note, "epochs": 3, "rate": 0.1}
    assert job["action"][:-1] == ["/app/run"] and json.loads(job["action"][-1]) == job["args"]
    assert job["runtime"] == "docker" and job["container"] == "asphalt-test:busybox"
    assert job["timeout"] == 600 and job["results_dir"] == "/results"
    # In a graph, beside a plain job, with a shorter timeout of its own.
    graph = {
        "jobs": {
            "fit": {"template": "train", "args": {"model": "large"}, "timeout": 60},
            "report": {"action": "echo done", "needs": ["fit"]},
        }
    }
    status, task = await m.call("POST", "/projects/p", graph)
    assert status == 201, task
    assert task["jobs"]["fit"]["timeout"] == 60 and task["jobs"]["fit"]["args"]["epochs"] == 3


async def test_bad_args_are_400s_naming_the_argument_and_the_rule(master: MasterFactory) -> None:
    m = await _started(master)
    cases = [
        ({"model": "small", "epochs": 0}, "args.epochs", "0 is less than the minimum of 1"),
        ({"model": "small", "epochs": "3"}, "args.epochs", "is not of type 'integer'"),
        ({"model": "huge"}, "args.model", "is not one of ['small', 'large']"),
        ({"model": "small", "epoch": 2}, "args.epoch", "not an argument of the template"),
        ({"model": "small", "epochs": 2**64}, "args", "beyond 64 bits"),
        ({"model": "small", "rate": float("inf")}, "args", "finite"),
        ({}, "args.model", "is required"),
    ]
    for args, field, words in cases:
        status, refused = await m.call("POST", "/projects/p", {"template": "train", "args": args})
        assert status == 400 and refused["field"] == field, (args, refused)
        assert words in refused["error"], refused
    graph = {"jobs": {"main": {"template": "train", "args": {"model": 1}}}}
    status, refused = await m.call("POST", "/projects/p", graph)
    assert status == 400 and refused["field"] == "jobs.main.args.model", refused
    for body, field in [
        ({"template": "nope"}, "template"),
        ({"template": "train", "version": 9, "args": {"model": "small"}}, "version"),
        ({"template": "train", "args": {"model": "small"}, "action": "x"}, "action"),
        ({"template": "train", "args": {"model": "small"}, "container": "x"}, "container"),
    ]:
        status, refused = await m.call("POST", "/projects/p", body)
        assert status == 400 and refused["field"] == field, (body, refused)
    # Nothing was made by any of them.
    status, project = await m.call("GET", "/projects/p")
    assert project["tasks"] == []


async def test_additional_properties_in_the_schema_lets_unnamed_args_through(
    master: MasterFactory,
) -> None:
    m = await _started(master)
    loose = {**TRAIN, "name": "loose", "args": {**TRAIN["args"], "additionalProperties": True}}
    assert (await m.call("POST", "/templates", loose))[0] == 201
    status, task = await m.call(
        "POST", "/projects/p", {"template": "loose", "args": {"model": "small", "extra": [1]}}
    )
    assert status == 201 and task["jobs"]["main"]["args"]["extra"] == [1], task


async def test_an_update_is_a_new_version_and_jobs_say_which_they_ran(
    master: MasterFactory,
) -> None:
    m = await _started(master)
    status, again = await m.call("POST", "/templates", TRAIN)
    assert status == 409 and again["field"] == "name", again
    changed = {**TRAIN, "command": ["/app/run", "--fast"]}
    status, v2 = await m.call("PUT", "/templates/train", changed)
    assert status == 201 and v2["version"] == 2, v2
    status, shown = await m.call("GET", "/templates/train")
    assert shown["version"] == 2 and shown["versions"] == [1, 2], shown
    status, old = await m.call("GET", "/templates/train?version=1")
    assert old["command"] == "/app/run", old
    status, listed = await m.call("GET", "/templates")
    assert [(t["name"], t["version"]) for t in listed["templates"]] == [("train", 2)]
    args = {"model": "small"}
    status, new = await m.call("POST", "/projects/p", {"template": "train", "args": args})
    assert new["jobs"]["main"]["template"]["version"] == 2
    assert new["jobs"]["main"]["action"][:2] == ["/app/run", "--fast"]
    pinned = {"template": "train", "version": 1, "args": args}
    status, old_task = await m.call("POST", "/projects/p", pinned)
    assert old_task["jobs"]["main"]["template"]["version"] == 1
    assert old_task["jobs"]["main"]["action"][0] == "/app/run"
    status, renamed = await m.call("PUT", "/templates/train", {**TRAIN, "name": "other"})
    assert status == 400 and renamed["field"] == "name", renamed
    status, _ = await m.call("PUT", "/templates/nope", {**TRAIN, "name": "nope"})
    assert status == 404
    # Deleting it leaves the jobs made from it as they were.
    assert (await m.call("DELETE", "/templates/train"))[0] == 200
    assert (await m.call("GET", "/templates/train"))[0] == 404
    job = old_task["jobs"]["main"]["id"]
    status, kept = await m.call("GET", f"/jobs/{job}")
    assert kept["template"] == {"name": "train", "version": 1}, kept
    # Made again, it goes on from the versions that were: (train, 1) still means that one.
    status, again = await m.call("POST", "/templates", TRAIN)
    assert status == 201 and again["version"] == 3, again


async def test_a_bad_template_is_a_400_naming_the_field(master: MasterFactory) -> None:
    m = await master()
    cases = [
        ({**TRAIN, "args": {"type": "object", "properties": {"a": {"type": "nope"}}}}, "args"),
        ({**TRAIN, "args": {"type": "array"}}, "args"),
        (
            {**TRAIN, "args": {"properties": {"a": {"type": "integer", "default": "x"}}}},
            "args.properties.a.default",
        ),
        ({**TRAIN, "runtime": "docker", "container": None}, "container"),
        ({**TRAIN, "command": []}, "command"),
        ({**TRAIN, "results_dir": "/a/../etc"}, "results_dir"),
        ({**TRAIN, "logs_dir": "logs"}, "logs_dir"),
        ({**TRAIN, "env_from_host": ["A-B"]}, "env_from_host"),
        ({**TRAIN, "env_from_host": ["ASPHALT_JOIN"]}, "env_from_host"),
        ({**TRAIN, "results_dir": "/r,/:/host"}, "results_dir"),
        ({**TRAIN, "logs_dir": "/logs:ro"}, "logs_dir"),
        ({**TRAIN, "max_running": 0}, "max_running"),
        ({**TRAIN, "comand": "x"}, "comand"),
        ({**TRAIN, "args": {"properties": {"a": {"maximum": 2**70}}}}, "args"),
    ]
    for body, field in cases:
        status, refused = await m.call("POST", "/templates", body)
        assert status == 400 and refused["field"] == field, (field, refused)
    status, listed = await m.call("GET", "/templates")
    assert listed["templates"] == []


async def test_every_version_is_kept_in_the_store_across_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    templates = Templates(store, now=lambda: 1.0)
    templates.create(TRAIN)
    templates.update("train", {**TRAIN, "timeout": 5})
    await store.flushed()
    store.close()
    store = Store(tmp_path / "store")
    try:
        again = Templates(store, now=lambda: 2.0)
        assert [t.version for t in again.versions("train")] == [1, 2]
        assert again.find("train").timeout == 5 and again.find("train", 1).timeout == 600
        assert again.find("train").args == TRAIN["args"]
    finally:
        store.close()
