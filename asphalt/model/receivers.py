"""Git push receivers: a project's receiver for one service (GitHub, GitLab, Gitea, or the
generic one), how each service signs what it sends, and what a push says (ref, commit, repo);
pure."""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asphalt.model.hooks import signature
from asphalt.wire import Record

KINDS = ("github", "gitlab", "gitea", "generic")
ZERO_SHA = "0" * 40  # the `after` of a push that deleted the branch
GENERIC_TOLERANCE_S = 300  # how old a generic push's signed time may be


class Receiver(Record, frozen=True, kw_only=True):
    """What a project does with one service's pushes: the task (or template) each push makes,
    for the branches given (all, without any)."""

    project: str
    kind: str
    secret: str
    created_at: float
    task: Mapping[str, Any] | None = None  # a task body, as POST /projects/{p} takes
    template: str | None = None  # or a template, launched with no args
    branches: tuple[str, ...] = ()

    def view(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": f"/hooks/{self.project}/{self.kind}",
            "secret": "***",
            "task": _masked(self.task) if self.task is not None else None,
            "template": self.template,
            "branches": list(self.branches),
        }

    def wants(self, branch: str | None) -> bool:
        """Whether a push to this branch (None: a tag, or not a branch) makes a task."""
        if not self.branches:
            return branch is not None
        return branch is not None and any(fnmatch.fnmatchcase(branch, b) for b in self.branches)


def _masked(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task body as it may be shown: its jobs' secrets and its callback's secret as ***."""
    shown = copy.deepcopy(dict(task))
    jobs = shown.get("jobs")
    for job in [*(jobs.values() if isinstance(jobs, dict) else ()), shown]:
        if isinstance(job, dict) and isinstance(job.get("secrets"), dict):
            job["secrets"] = dict.fromkeys(job["secrets"], "***")
    if isinstance(shown.get("callback"), dict) and "secret" in shown["callback"]:
        shown["callback"]["secret"] = "***"
    return shown


def signed(kind: str, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the request is signed with `secret` by the service's own scheme (a header that
    cannot even be read as one is not)."""
    try:
        return _signed(kind, secret, headers, body)
    except (UnicodeError, ValueError):
        return False


def _signed(kind: str, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    if kind == "github":
        given = headers.get("X-Hub-Signature-256", "")
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), f"sha256={mac}".encode())
    if kind == "gitea":
        given = headers.get("X-Gitea-Signature", "")
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), mac.encode())
    if kind == "gitlab":
        return hmac.compare_digest(headers.get("X-Gitlab-Token", "").encode(), secret.encode())
    parts = dict(
        p.split("=", 1) for p in headers.get("Asphalt-Signature", "").split(",") if "=" in p
    )
    stamp = parts.get("t", "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return False
    if abs(time.time() - int(stamp)) > GENERIC_TOLERANCE_S:
        return False
    expected = signature(secret, int(stamp), body)
    return hmac.compare_digest(f"t={stamp},v1={parts.get('v1', '')}".encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Push:
    ref: str
    sha: str
    repo: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


def push_of(kind: str, payload: Any) -> Push | None:
    """The push a service's event describes, or None when it is not one (a ping, a tag's
    deletion, an event of another kind)."""
    if not isinstance(payload, dict):
        return None
    if kind == "generic":
        ref, sha, repo = payload.get("ref"), payload.get("sha"), payload.get("repo")
    else:
        ref, sha = payload.get("ref"), payload.get("after") or payload.get("checkout_sha")
        where = payload.get("project" if kind == "gitlab" else "repository")
        where = where if isinstance(where, dict) else {}
        repo = where.get("git_http_url" if kind == "gitlab" else "clone_url") or where.get(
            "path_with_namespace" if kind == "gitlab" else "full_name"
        )
    if not all(isinstance(v, str) and v for v in (ref, sha, repo)):
        return None
    assert isinstance(ref, str) and isinstance(sha, str) and isinstance(repo, str)
    if len(sha) not in (40, 64) or any(c not in "0123456789abcdef" for c in sha):
        return None
    return Push(ref=ref[:500], sha=sha, repo=repo[:500])
