"""A data directory written by the release before job graphs opens with this one, every project,
task, run, job and output intact, and can be written to after.

The fixture (tests/fixtures/store_v1, made by tests/fixtures/make_store_v1.py with the code of
commit 913b04c) holds that data directory and the views that release showed for it. Each view is
read again here and must still hold every field it had, with the same value; fields the new
release adds are welcome. Exempt, because they are computed at read time rather than stored:
- the `reason` of a queued job: it says which live workers could take it, and there are others
  now (the old views were read from a master with no worker);
- a token's `lastUsed`: reading the views with the admin token moves it on.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import Http, Proc, free_port, start_master, start_worker, wait_until

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "store_v1"
KEYED = {"/workers?all=true": "workers", "/tokens": "tokens"}  # lists matched by id, not place


def fixture() -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads((FIXTURE / "views.json").read_text())
    return recorded


def extract(into: Path) -> Path:
    with tarfile.open(FIXTURE / "data.tar.gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # Python 3.11 before 3.11.4
            tar.extractall(into)
    return into / "data"


def settled(value: Any) -> Any:
    """A view without the parts computed from live state at read time (see the module doc)."""
    if isinstance(value, list):
        return [settled(item) for item in value]
    if not isinstance(value, dict):
        return value
    body = {key: settled(item) for key, item in value.items()}
    if "role" in body and body.get("state") == "queued":
        body.pop("reason", None)
    return body


def keyed(path: str, view: Any) -> Any:
    """Lists whose order is not part of the view (workers, tokens) as objects by id."""
    if path not in KEYED:
        return view
    items = {item["id"]: dict(item) for item in view[KEYED[path]]}
    for item in items.values():
        item.pop("lastUsed", None)
    return items


def differences(old: Any, new: Any, where: str) -> Iterator[str]:
    """How `new` fails to hold all of `old`: objects may gain keys, nothing else may change."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            yield f"{where}: was an object, now {new!r}"
            return
        for key, value in old.items():
            if key not in new:
                yield f"{where}.{key}: gone (was {value!r})"
            else:
                yield from differences(value, new[key], f"{where}.{key}")
    elif isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            yield f"{where}: was {old!r}, now {new!r}"
            return
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from differences(a, b, f"{where}[{i}]")
    elif old != new or isinstance(old, bool) != isinstance(new, bool):
        yield f"{where}: was {old!r}, now {new!r}"


def check_views(http: Http, views: dict[str, Any], texts: dict[str, str]) -> None:
    """Every view still holds what it did, and every output reads the same."""
    found: list[str] = []
    for path, old in views.items():
        new = http.get(path)
        found += differences(keyed(path, settled(old)), keyed(path, settled(new)), path)
    for path, text in texts.items():
        now = http.text(path)
        if now != text:
            found.append(f"{path}: output was {text!r}, now {now!r}")
    assert not found, "\n".join(found)


def task_view(http: Http, project: str, task: str, run: int | None = None) -> dict[str, Any]:
    query = f"?run={run}" if run else ""
    view: dict[str, Any] = http.get(f"/projects/{project}/tasks/{task}{query}")
    return view


def ended(http: Http, project: str, task: str) -> dict[str, Any] | None:
    view = task_view(http, project, task)
    return view if view["status"] == "complete" else None


def open_old_store(tmp: Path, data: Path, port: int, admin: str) -> tuple[Proc, Http]:
    """The current master on the fixture's data directory, every request needing a token."""
    extra = ("-auth", "always", "-state", str(tmp / "state"))
    proc, bare = start_master(data, port, *extra, ready=401)
    return proc, Http(bare.base, admin)


def test_a_store_of_the_previous_release_opens_intact_and_takes_writes(tmp_path: Path) -> None:
    recorded = fixture()
    meta, views, texts = recorded["meta"], recorded["json"], recorded["text"]
    web, lab = meta["projects"]["web"], meta["projects"]["lab"]
    data = extract(tmp_path)
    assert (data / "admin.token").read_text().strip() == meta["adminToken"]

    port = free_port()
    proc, http = open_old_store(tmp_path, data, port, meta["adminToken"])
    procs = [proc]
    try:
        # The old credentials still open it: the admin token, a read token for one project.
        assert Http(http.base).call("GET", "/")[0] == 401
        assert Http(http.base, "asp_nope_nope").call("GET", "/")[0] == 401
        check_views(http, views, texts)
        reader = Http(http.base, meta["readerToken"])
        assert reader.get("/projects/lab")["id"] == lab
        assert reader.call("GET", f"/projects/{web}")[0] in (403, 404)
        assert reader.call("POST", "/projects/lab", {"action": "true"})[0] == 403

        # What an idempotency key made before, the same key gives back, making nothing new.
        idem = meta["idempotent"]
        status, again = http.call(
            "POST", idem["path"], {"action": "echo once"}, headers={"Idempotency-Key": idem["key"]}
        )
        assert (status, again["id"]) == (201, idem["task"])
        key = {"Idempotency-Key": meta["idempotentProject"]["key"]}
        status, project = http.call("POST", "/", {"name": "lab", "id": "lab"}, headers=key)
        assert (status, project["id"]) == (201, lab)
        assert not list(differences(views["/"], http.get("/"), "/"))  # no project more
        assert len(http.get(f"/projects/{web}")["tasks"]) == len(views[f"/projects/{web}"]["tasks"])

        # The job queued in the old store is still queued, and runs once a worker of its type
        # comes, joined with the old join token.
        queued = meta["queued"]
        assert (data / "join.token").read_text().strip() == meta["joinToken"]
        procs.append(start_worker(port, tmp_path, "-types", "nope", join=meta["joinToken"]))
        done = wait_until(lambda: ended(http, queued["project"], queued["task"]), 15, "queued")
        assert done["outcome"] == "succeeded", done
        assert done["jobs"]["main"]["output"] == "ran at last as main\n"
        assert done["jobs"]["after"]["state"] == "succeeded"
        procs.pop().stop()

        # A new task in an old project, with the four roles of old.
        jobs = {
            "main": {"action": 'echo "new in $ASPHALT_ROLE"'},
            "success": {"action": 'echo "main was $ASPHALT_MAIN_STATE"'},
            "failure": {"action": "echo never"},
            "after": {"action": "echo after"},
        }
        http.post(f"/projects/{web}", {"id": "after-upgrade", "jobs": jobs})
        done = wait_until(lambda: ended(http, web, "after-upgrade"), 15, "the new task")
        assert done["outcome"] == "succeeded", done
        states = {role: job["state"] for role, job in done["jobs"].items()}
        assert states == {
            "main": "succeeded",
            "success": "succeeded",
            "failure": "skipped",
            "after": "succeeded",
        }
        assert done["jobs"]["main"]["output"] == "new in main\n"
        assert done["jobs"]["success"]["output"] == "main was succeeded\n"

        # An old task run again: a third run, the first two as they were.
        rerun = http.post(f"/projects/{web}/tasks/twice/rerun", None)
        assert (rerun["run"], rerun["runs"]) == (3, 3)
        done = wait_until(lambda: ended(http, web, "twice"), 15, "the rerun of twice")
        assert done["outcome"] == "succeeded"
        assert done["jobs"]["main"]["output"] == "run 3\n"
        for run in (1, 2):
            old = settled(views[f"/projects/{web}/tasks/twice?run={run}"])
            old.pop("runs")
            old.pop("history")
            new = task_view(http, web, "twice", run)
            assert not list(differences(old, new, f"twice run {run}"))
        history = [(h["run"], h["outcome"]) for h in done["history"]]
        assert history == [(3, "succeeded"), (2, "succeeded"), (1, "succeeded")]

        # The old secret still reaches its job on a rerun, and is still masked in its output.
        http.post(f"/projects/{lab}/tasks/deploy/rerun", None)
        done = wait_until(lambda: ended(http, lab, "deploy"), 15, "the rerun of deploy")
        assert done["jobs"]["main"]["output"] == f"key is ***\n{meta['secretSha256']}  -\n"
        assert done["jobs"]["main"]["secrets"] == {"API_KEY": "***"}

        # One old job run again: its old attempts are kept, in order, and a new one is added.
        flaky = task_view(http, lab, "flaky")["jobs"]["main"]
        old_flaky = views[f"/jobs/{flaky['id']}"]
        http.post(f"/jobs/{flaky['id']}/rerun", None)
        wait_until(lambda: ended(http, lab, "flaky"), 15, "the rerun of the flaky job")
        job = http.get(f"/jobs/{flaky['id']}")
        assert (job["state"], job["attempt"]) == ("succeeded", 3)
        fields = ("attempt", "state", "status", "startedAt", "endedAt", "worker")
        old_attempts = [*old_flaky["attempts"], {k: old_flaky[k] for k in fields}]
        assert not list(differences(old_attempts, job["attempts"], "flaky attempts"))
        for attempt in (1, 2):
            path = f"/jobs/{flaky['id']}/output?attempt={attempt}"
            assert http.text(path) == texts[path]

        # What the store holds now, read again after a second start on the same directory.
        after = {path: http.get(path) for path in views if path not in KEYED}
        new_task = task_view(http, web, "after-upgrade")
        after[f"/projects/{web}/tasks/after-upgrade"] = new_task
        for job in new_task["jobs"].values():
            after[f"/jobs/{job['id']}"] = http.get(f"/jobs/{job['id']}")
        outputs = {path: http.text(path) for path in texts}
        assert procs.pop().stop() == 0

        proc, http = open_old_store(tmp_path, data, port, meta["adminToken"])
        procs.append(proc)
        check_views(http, after, outputs)
        check_views(http, {path: views[path] for path in KEYED}, {})
    finally:
        for each in reversed(procs):
            each.stop()
