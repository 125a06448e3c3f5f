"""Webhooks: a project's hooks, and the outbox. Every change the core commits tells this module
its events before it is saved (Lifecycle.outbox); the deliveries they make for the project's
hooks are written in that same transaction, so a change is never stored without them, and the
sender (hooks_sender.py) takes them from there."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from asphalt.errors import BadRequest, NotFound
from asphalt.master import events
from asphalt.master.store import Store
from asphalt.master.store import hooks as tables
from asphalt.master.store.migrations import Tables
from asphalt.master.store.tables import Change
from asphalt.master.views import Views
from asphalt.model.hook_allow import HookAllow
from asphalt.model.hooks import CALLBACK, Delivery, DeliveryState, Hook, callback_hook
from asphalt.model.records import Job, JobState, Project, Task, new_id
from asphalt.wire import json_bytes, replace

# A callback's document: from the task, the run that completed and the jobs changing with it.
Shape = Callable[[Task, int, Mapping[str, Job]], dict[str, Any]]
FAILED = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.LOST})
MAX_HOOKS = 20  # per project
MAX_LISTED = 100  # deliveries listed per hook, newest first
KEPT = 1000  # deliveries kept per hook, newest first (pending ones are kept however many)


def event_names(event: events.Event) -> tuple[str, ...]:
    """The hook events a domain event is, if any."""
    match event:
        case events.TaskCreated():
            return ("task.created",)
        case events.TaskCompleted():
            return ("task.completed",)
        case events.JobStarted():
            return ("job.started",)
        case events.JobEnded(job=job):
            return ("job.ended", "job.failed") if job.state in FAILED else ("job.ended",)
    return ()


class Webhooks:
    def __init__(
        self,
        store: Store,
        views: Views,
        *,
        allow: HookAllow | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.views = views
        self.allow = allow or HookAllow()  # where hooks may point (-hook-allow)
        self.now = now
        # The sender, handed the new deliveries once they are committed.
        self.on_made: Callable[[list[Delivery]], None] = lambda made: None
        # The documents a task callback may carry instead of task.completed, by Callback.shape
        # (set at wiring: the Swarmer API's status document).
        self.shapes: dict[str, Shape] = {}
        found = store.look(lambda t: tables.hooks(t))
        self._by_project: dict[str, list[Hook]] = {}
        for hook in found:
            self._by_project.setdefault(hook.project, []).append(hook)

    def create(
        self, project: Project, url: str, names: Sequence[str], secret: str | None
    ) -> tuple[Hook, str | None]:
        """A new hook; with no secret given one is made, and returned this once."""
        if len(self._by_project.get(project.id, ())) >= MAX_HOOKS:
            raise BadRequest(f"a project has at most {MAX_HOOKS} hooks", field="url")
        self.allow.check(url, field="url")
        made = secrets.token_hex(32) if secret is None else None
        hook = Hook(
            id=new_id(),
            project=project.id,
            url=url,
            events=tuple(dict.fromkeys(names)),
            secret=secret or made or "",
            created_at=self.now(),
        )
        self.store.change(lambda t: tables.put_hook(t, hook))
        self._by_project.setdefault(project.id, []).append(hook)
        return hook, made

    def hooks(self, project: Project) -> list[Hook]:
        return list(self._by_project.get(project.id, ()))

    def hook(self, project: Project, hook_id: str) -> Hook:
        for hook in self._by_project.get(project.id, ()):
            if hook.id == hook_id:
                return hook
        raise NotFound(f"no hook {hook_id!r} in project {project.name!r}", field="hook")

    def find(self, hook_id: str) -> Hook | None:
        """The hook, whatever its project (the sender's look-up); None once deleted. A task's
        callback is a hook made from the task as it is now, signed with the secret it came
        with or else its project's."""
        if hook_id.startswith(CALLBACK):
            project_id, _, task_id = hook_id.removeprefix(CALLBACK).partition("/")
            task, project = self.store.task(project_id, task_id), self.store.project(project_id)
            if task is None or task.callback is None:
                return None
            secret = task.callback.secret or (project.callback_secret if project else None)
            return _callback_hook(task, secret) if secret is not None else None
        for hooks in self._by_project.values():
            for hook in hooks:
                if hook.id == hook_id:
                    return hook
        return None

    def delete(self, project: Project, hook_id: str) -> None:
        hook = self.hook(project, hook_id)
        self._by_project[project.id].remove(hook)
        self.store.change(lambda t: _drop(t, hook))

    def drop_project(self, project: Project) -> None:
        """The project is being removed: so are its hooks (their deliveries stop)."""
        for hook in self._by_project.pop(project.id, []):
            self.store.change(partial(_drop, hook=hook))

    def prune(self) -> int:
        """Keep each hook's newest KEPT deliveries (and every pending one); how many went."""
        removed = 0
        for hooks in list(self._by_project.values()):
            for hook in hooks:
                prune = partial(tables.delete_deliveries, hook=hook.id, keep=KEPT)
                removed += self.store.change(prune)
        return removed

    def deliveries(self, hook: Hook) -> list[Delivery]:
        return self.store.look(lambda t: tables.deliveries(t, hook.id, limit=MAX_LISTED))

    def redeliver(self, hook: Hook, delivery_id: str) -> Delivery:
        """Send a delivery again now, under its own id (receivers dedupe by it)."""
        found = self.store.look(lambda t: tables.delivery(t, delivery_id))
        if found is None or found.hook != hook.id:
            raise NotFound(f"no delivery {delivery_id!r} of this hook", field="delivery")
        now = self.now()
        again = replace(found, state=DeliveryState.PENDING, next_at=now, retry_from=now)
        self.store.change(lambda t: tables.put_delivery(t, again))
        self.store.after_commit(lambda: self.on_made([again]))
        return again

    def outbox(
        self, happened: Sequence[events.Event], jobs: Mapping[str, Job], task: Task | None
    ) -> Change | None:
        """The deliveries these events make, as writes for the transaction that stores them."""
        made: list[Delivery] = []
        for event in happened:
            names = event_names(event)
            project = _project_of(event)
            hooks = [h for h in self._by_project.get(project, ()) if set(h.events) & set(names)]
            if isinstance(event, events.TaskCompleted):
                hooks += self._callback(event, task)
            if not hooks:
                continue
            body = self._body(event, jobs, task)
            now = self.now()
            for name in names:
                for hook in (h for h in hooks if name in h.events):
                    sent = self._shaped(hook, event, jobs, task) or {"event": name, **body}
                    made.append(
                        Delivery(
                            id=new_id(8),
                            hook=hook.id,
                            project=project,
                            event=name,
                            body=json_bytes(sent).decode(),
                            created_at=now,
                            next_at=now,
                        )
                    )
        if not made:
            return None

        def write(t: Tables) -> None:
            for delivery in made:
                tables.put_delivery(t, delivery)
            self.store.after_commit(lambda: self.on_made(made))  # sent once the change is stored

        return write

    def _shaped(
        self, hook: Hook, event: events.Event, jobs: Mapping[str, Job], task: Task | None
    ) -> dict[str, Any] | None:
        """A task callback's own document where its task asked for one (a Swarmer job's)."""
        if not hook.id.startswith(CALLBACK) or not isinstance(event, events.TaskCompleted):
            return None
        if task is None or task.id != event.task:
            task = self.store.task(event.project, event.task)
        if task is None or task.callback is None or task.callback.shape == "asphalt":
            return None
        return self.shapes[task.callback.shape](task, event.run, jobs)

    def _callback(self, event: events.TaskCompleted, task: Task | None) -> list[Hook]:
        """The task's callback, as the hook its deliveries go to; none if it has none."""
        if task is None or task.id != event.task:
            task = self.store.task(event.project, event.task)
        return [_callback_hook(task, "")] if task is not None and task.callback else []

    def callback(self, project: Project, task: Task) -> Hook:
        """A task's callback as the hook its deliveries are sent as; 404 if it has none."""
        found = self.find(callback_hook(project.id, task.id))
        if found is None:
            raise NotFound(f"task {task.id!r} has no callback", field="task")
        return found

    def deliveries_of(self, project: Project, task: Task) -> list[Delivery]:
        """A task callback's deliveries, newest first."""
        hook_id = callback_hook(project.id, task.id)
        return self.store.look(lambda t: tables.deliveries(t, hook_id, limit=MAX_LISTED))

    def _body(
        self, event: events.Event, jobs: Mapping[str, Job], task: Task | None
    ) -> dict[str, Any]:
        """What a delivery carries beside its event name: the job's view, or the task's."""
        if isinstance(event, events.JobStarted | events.JobEnded):
            return {"job": self.views.job(event.job, output=False, jobs={})}
        assert isinstance(event, events.TaskCreated | events.TaskCompleted)
        record = self.store.project(event.project)
        if task is None or task.id != event.task:
            task = self.store.task(event.project, event.task)
        if record is None or task is None:
            return {"task": {"id": event.task, "project": event.project}}
        number = event.run if isinstance(event, events.TaskCompleted) else 1
        run = task.run_number(number) or task.current
        view = self.views.task(record, task, run, output=False, changed=jobs)
        return {"task": view}


def _project_of(event: events.Event) -> str:
    if isinstance(event, events.TaskCreated | events.TaskCompleted):
        return event.project
    if isinstance(
        event, events.JobQueued | events.JobStarted | events.JobEnded | events.JobUpdated
    ):
        return event.job.project
    return ""


def _drop(t: Tables, hook: Hook) -> None:
    """A hook and every delivery of it (what was still to be sent is not sent)."""
    tables.delete_deliveries(t, hook.id)
    tables.delete_hook(t, hook.project, hook.id)


def _callback_hook(task: Task, secret: str) -> Hook:
    """A task's callback as a hook (the outbox needs no secret: the sender signs)."""
    assert task.callback is not None
    return Hook(
        id=callback_hook(task.project, task.id),
        project=task.project,
        url=task.callback.url,
        events=("task.completed",),
        secret=secret,
        created_at=task.created_at,
    )
