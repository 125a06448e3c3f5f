"""Receivers of git pushes: a project's receiver for a service (set, shown without its secret,
removed), and a verified push turned into a task whose id is the pushed commit, with
ASPHALT_GIT_REF, ASPHALT_GIT_SHA and ASPHALT_GIT_REPO in its jobs' env. The same push again
(a redelivery) makes nothing new."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from asphalt import log
from asphalt.errors import BadRequest, NotFound, Unauthorized
from asphalt.master.core.inputs import parse_task
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.store import receivers as table
from asphalt.model import bodies
from asphalt.model.bodies import ReceiverBody
from asphalt.model.receivers import KINDS, Push, Receiver, push_of, signed
from asphalt.model.records import Project

_log = log.get("asphalt.receivers")
SHA_EXAMPLE = "0" * 39 + "1"


class Receivers:
    def __init__(self, scheduler: Scheduler, *, now: Callable[[], float] = time.time) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.now = now

    def put(self, project: Project, kind: str, body: Any) -> tuple[Receiver, str | None]:
        """Set the project's receiver for `kind`; the secret made for it when none was given
        (shown this once)."""
        _kind(kind)
        given = bodies.read(body, ReceiverBody)
        if (given.task is None) == (given.template is None):
            raise BadRequest(
                'give a "task" (a task body) or a "template" (a template\'s name), one of them',
                field="task",
            )
        made = None if given.secret else secrets.token_urlsafe(24)
        receiver = Receiver(
            project=project.id,
            kind=kind,
            secret=given.secret or made or "",
            created_at=self.now(),
            task=given.task,
            template=given.template,
            branches=tuple(dict.fromkeys(given.branches)),
        )
        push = Push(ref="refs/heads/main", sha=SHA_EXAMPLE, repo="https://example.com/r.git")
        parse_task(_task_body(receiver, push), self.scheduler.templates.find)  # checked now
        self.store.change(lambda tables: table.put(tables, receiver))
        return receiver, made

    def get(self, project: Project, kind: str) -> Receiver:
        found = self.store.look(lambda tables: table.get(tables, project.id, _kind(kind)))
        if found is None:
            raise NotFound(
                f"project {project.name!r} has no {kind} receiver; set one with PUT",
                field="kind",
            )
        return found

    def of(self, project: Project) -> list[Receiver]:
        return self.store.look(lambda tables: table.of(tables, project.id))

    def delete(self, project: Project, kind: str) -> None:
        if not self.store.change(lambda tables: table.delete(tables, project.id, _kind(kind))):
            raise NotFound(f"project {project.name!r} has no {kind} receiver", field="kind")

    def drop_project(self, project: Project) -> None:
        """The project is deleted: its receivers go with it."""
        for receiver in self.of(project):
            self.store.change(partial(table.delete, project=project.id, kind=receiver.kind))

    def verified(
        self, project_ref: str, kind: str, headers: Mapping[str, str], body: bytes
    ) -> Receiver:
        """The receiver a request is for, if it is signed with its secret; else 401 (logged)."""
        project = self.scheduler.store.project(project_ref)
        found = (
            self.store.look(lambda tables: table.get(tables, project.id, kind))
            if project is not None and kind in KINDS
            else None
        )
        if found is None or not signed(kind, found.secret, headers, body):
            _log.warning("receiver_refused", project=project_ref[:64], kind=kind[:16])
            raise Unauthorized(f"this {kind} delivery is not signed with the receiver's secret")
        return found

    def receive(self, receiver: Receiver, payload: Any) -> tuple[int, dict[str, Any]]:
        """Make the task a push asks for: (status, answer). Not a push, a deleted branch or a
        branch not followed: 202, nothing made; the same commit again: 200."""
        push = push_of(receiver.kind, payload)
        if push is None or push.sha == "0" * len(push.sha):
            return 202, {"made": False, "why": "not a push of a commit"}
        if not receiver.wants(push.branch):
            return 202, {"made": False, "why": f"{push.ref} is not a branch this receiver takes"}
        project = self.scheduler.tasks.project(receiver.project)
        if self.store.task(project.id, push.sha) is not None:  # the same push again
            return 200, {"made": False, "task": push.sha, "why": "this commit's task exists"}
        given = parse_task(_task_body(receiver, push), self.scheduler.templates.find)
        task = self.scheduler.tasks.create_task(project, given)
        _log.info("push_received", project=project.id, kind=receiver.kind, sha=push.sha)
        url = f"/projects/{project.id}/tasks/{task.id}"
        return 201, {"made": True, "task": task.id, "url": url}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"no receiver kind {kind[:40]!r}; kinds: {', '.join(KINDS)}", field="kind")
    return kind


def _task_body(receiver: Receiver, push: Push) -> dict[str, Any]:
    """The task body a push makes: the receiver's task (or template), its id the commit, and
    the push in every job's env."""
    env = {"ASPHALT_GIT_REF": push.ref, "ASPHALT_GIT_SHA": push.sha, "ASPHALT_GIT_REPO": push.repo}
    if receiver.template is not None:
        return {"id": push.sha, "template": receiver.template, "env": env}
    body: dict[str, Any] = copy.deepcopy(dict(receiver.task or {}))
    body["id"] = push.sha
    jobs = body.get("jobs")
    targets = list(jobs.values()) if isinstance(jobs, dict) else [body]
    for job in targets:
        if isinstance(job, dict):
            own = job.get("env")
            job["env"] = {**(own if isinstance(own, dict) else {}), **env}
    return body
