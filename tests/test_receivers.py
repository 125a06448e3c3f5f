"""Git push receivers: a push signed as GitHub, GitLab, Gitea or Asphalt's generic scheme
documents it makes one task whose id is the pushed commit, with the push in its jobs' env; a
redelivery makes nothing new, a branch not followed makes nothing, a bad signature is a 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from harness import Master, MasterFactory

from asphalt.model.hooks import signature

SECRET = "a-receivers-secret-1234"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def _github_push(ref: str = "refs/heads/main", sha: str = SHA) -> dict[str, Any]:
    """A push event's fields as GitHub's webhook documentation shows them (trimmed)."""
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": sha,
        "repository": {
            "full_name": "octo/hello",
            "clone_url": "https://github.com/octo/hello.git",
        },
        "pusher": {"name": "octo"},
        "head_commit": {"id": sha, "message": "Update README"},
    }


async def _deliver(
    m: Master, kind: str, payload: dict[str, Any], headers: dict[str, str]
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    signed = dict(headers)
    if kind == "github":  # X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256 of the body
        mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        signed.setdefault("X-Hub-Signature-256", f"sha256={mac}")
        signed["X-GitHub-Event"] = "push"
    elif kind == "gitea":
        mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        signed.setdefault("X-Gitea-Signature", mac)
    elif kind == "gitlab":
        signed.setdefault("X-Gitlab-Token", SECRET)
    else:
        signed.setdefault("Asphalt-Signature", signature(SECRET, int(time.time()), body))
    return await m.call(
        "POST",
        f"/hooks/p/{kind}",
        data=body,
        headers={"Content-Type": "application/json", **signed},
    )


async def test_a_github_signed_push_makes_one_task_named_by_its_commit(
    master: MasterFactory,
) -> None:
    m = await master()
    status, project = await m.call("POST", "/", {"name": "p"})
    assert status == 201
    spec = {
        "secret": SECRET,
        "task": {"action": "echo $ASPHALT_GIT_SHA", "env": {"CI": "1"}},
        "branches": ["main", "release/*"],
    }
    status, made = await m.call("PUT", "/projects/p/receivers/github", spec)
    assert status == 200 and made["secret"] == "***" and SECRET not in json.dumps(made), made
    assert made["url"] == f"/hooks/{project['id']}/github", made  # by name works too
    status, created = await _deliver(m, "github", _github_push(), {})
    assert status == 201 and created["task"] == SHA, created
    task = await m.task("p", SHA)
    job = task["jobs"]["main"]
    assert job["env"] == {
        "CI": "1",
        "ASPHALT_GIT_REF": "refs/heads/main",
        "ASPHALT_GIT_SHA": SHA,
        "ASPHALT_GIT_REPO": "https://github.com/octo/hello.git",
    }, job["env"]
    # The same push again (GitHub redelivers on a timeout): no second task.
    status, again = await _deliver(m, "github", _github_push(), {})
    assert status == 200 and again["made"] is False, again
    status, listed = await m.call("GET", "/projects/p")
    assert [t["id"] for t in listed["tasks"]] == [SHA]
    # A branch it does not follow, and a deleted branch: nothing made.
    other = "1" * 40
    for ref, sha in (("refs/heads/feature/x", other), ("refs/heads/main", "0" * 40)):
        status, skipped = await _deliver(m, "github", _github_push(ref, sha), {})
        assert status == 202 and skipped["made"] is False, skipped
    status, _ = await _deliver(m, "github", _github_push("refs/heads/release/1.2", other), {})
    assert status == 201
    # A wrong signature, or none: 401, nothing made.
    wrong = "sha256=" + "0" * 64
    third = "2" * 40
    status, refused = await _deliver(
        m, "github", _github_push(sha=third), {"X-Hub-Signature-256": wrong}
    )
    assert status == 401, refused
    assert (await m.call("GET", f"/projects/p/tasks/{third}"))[0] == 404
    status, _ = await m.call("POST", "/hooks/p/github", {"ref": "x"})
    assert status == 401


async def test_gitlab_gitea_and_generic_pushes_are_verified_by_their_own_schemes(
    master: MasterFactory,
) -> None:
    m = await master()
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    for kind in ("gitlab", "gitea", "generic"):
        body = {"secret": SECRET, "task": {"jobs": {"build": {"action": "make"}}}}
        status, _ = await m.call("PUT", f"/projects/p/receivers/{kind}", body)
        assert status == 200
    pushes = {
        "gitlab": {
            "ref": "refs/heads/main",
            "after": "a" * 40,
            "project": {"git_http_url": "https://gitlab.example.com/g/r.git"},
        },
        "gitea": {**_github_push(sha="b" * 40)},
        "generic": {"ref": "refs/heads/dev", "sha": "c" * 40, "repo": "r"},
    }
    for kind, payload in pushes.items():
        status, refused = await _deliver(
            m,
            kind,
            payload,
            {"X-Gitlab-Token": "nope", "X-Gitea-Signature": "00"}
            if kind != "generic"
            else {"Asphalt-Signature": "t=1,v1=00"},
        )
        assert status == 401, (kind, refused)
        status, made = await _deliver(m, kind, payload, {})
        assert status == 201, (kind, made)
        task = await m.task("p", made["task"])
        assert task["jobs"]["build"]["env"]["ASPHALT_GIT_SHA"] == made["task"]
    status, listed = await m.call("GET", "/projects/p/receivers")
    assert sorted(r["kind"] for r in listed["receivers"]) == ["generic", "gitea", "gitlab"]
    assert (await m.call("DELETE", "/projects/p/receivers/gitea"))[0] == 200
    status, _ = await _deliver(m, "gitea", pushes["gitea"], {})
    assert status == 401  # no receiver: not signed with its secret either


async def test_a_receiver_is_checked_when_it_is_set(master: MasterFactory) -> None:
    m = await master()
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    cases = [
        ({"secret": SECRET}, "task"),
        ({"secret": SECRET, "task": {"action": "x"}, "template": "t"}, "task"),
        ({"secret": "short", "task": {"action": "x"}}, "secret"),
        ({"secret": SECRET, "task": {"action": "x", "timeout": -1}}, "timeout"),
        ({"secret": SECRET, "template": "nope"}, "template"),
    ]
    for body, field in cases:
        status, refused = await m.call("PUT", "/projects/p/receivers/github", body)
        assert status == 400 and refused["field"] == field, (body, refused)
    status, _ = await m.call("PUT", "/projects/p/receivers/svn", {"task": {"action": "x"}})
    assert status == 404
    status, made = await m.call("PUT", "/projects/p/receivers/gitlab", {"task": {"action": "x"}})
    assert status == 200 and len(made["secret"]) >= 16 and made["secret"] != "***", made
    status, shown = await m.call("GET", "/projects/p/receivers/gitlab")
    assert shown["secret"] == "***"


async def test_deleting_the_project_removes_its_receivers(master: MasterFactory) -> None:
    m = await master()
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    body = {"secret": SECRET, "task": {"action": "x"}}
    assert (await m.call("PUT", "/projects/p/receivers/github", body))[0] == 200
    assert (await m.call("DELETE", "/projects/p"))[0] == 200
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    status, listed = await m.call("GET", "/projects/p/receivers")
    assert status == 200 and listed["receivers"] == [], listed
    status, _ = await _deliver(m, "github", _github_push(), {})
    assert status == 401


async def test_headers_that_cannot_be_read_are_401s_and_secrets_are_never_shown(
    master: MasterFactory,
) -> None:
    m = await master()
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    task = {"action": "x", "secrets": {"KEY": "job-secret-value"}}
    for kind in ("github", "generic"):
        body = {"secret": SECRET, "task": task}
        assert (await m.call("PUT", f"/projects/p/receivers/{kind}", body))[0] == 200
    status, shown = await m.call("GET", "/projects/p/receivers/github")
    assert status == 200 and "job-secret-value" not in json.dumps(shown), shown
    assert shown["task"]["secrets"] == {"KEY": "***"}
    for kind, header, value in (
        ("github", "X-Hub-Signature-256", b"sha256=\xff\xfe"),
        ("generic", "Asphalt-Signature", b"t=" + b"9" * 5000 + b",v1=00"),
    ):
        status, refused = await m.call(
            "POST", f"/hooks/p/{kind}", data=b"{}", headers={header: value.decode("latin-1")}
        )
        assert status == 401, (kind, refused)


def test_a_read_token_does_not_see_receivers_from_the_network() -> None:
    from asphalt.master.http.auth import ADMIN_READS

    assert {"receivers", "receiver"} <= ADMIN_READS
