"""Templates: made, updated as new versions, listed, deleted, and found for the jobs that name
them. Every version is kept, so a job can always say which one it ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asphalt.errors import BadRequest, Conflict, NotFound
from asphalt.limits import parse_limits
from asphalt.master.core.inputs import no_artifacts, runtime_of, types_of
from asphalt.master.store import Store
from asphalt.master.store import templates as table
from asphalt.model import bodies
from asphalt.model.bodies import TemplateBody
from asphalt.model.templates import Template, check_schema


class Templates:
    def __init__(self, store: Store, *, now: Callable[[], float]) -> None:
        self.store = store
        self.now = now

    def create(self, body: Any) -> Template:
        """A new template: version 1, or after the last of one deleted under its name; a name
        in use is a 409."""
        given = bodies.read(body, TemplateBody)
        if self.versions(given.name):
            raise Conflict(
                f"there is a template {given.name!r} already; PUT /templates/{given.name} makes "
                "a new version of it",
                field="name",
            )
        first = self.store.look(lambda tables: table.last_deleted(tables, given.name)) + 1
        return self._save(_template(given, first, self.now()))

    def update(self, name: str, body: Any) -> Template:
        """The next version of a template, from a whole new description of it."""
        given = bodies.read(body, TemplateBody)
        if given.name != name:
            raise BadRequest(
                f"name must be {name!r}, the template this URL names (a template is not "
                "renamed: make a new one with POST /templates)",
                field="name",
            )
        older = self.versions(name)
        if not older:
            raise NotFound(f"no template {name!r}; make it with POST /templates", field="name")
        return self._save(_template(given, older[-1].version + 1, self.now()))

    def _save(self, template: Template) -> Template:
        self.store.change(lambda tables: table.put(tables, template))
        return template

    def versions(self, name: str) -> list[Template]:
        return self.store.look(lambda tables: table.versions(tables, name))

    def latest(self) -> list[Template]:
        """The newest version of every template, by name."""
        newest: dict[str, Template] = {}
        for template in self.store.look(table.every):
            newest[template.name] = template
        return list(newest.values())

    def find(self, name: str, version: int | None = None, field: str = "template") -> Template:
        """The template's version (the newest without one), or a 400 naming `field`."""
        found = self.versions(name)
        if not found:
            raise BadRequest(
                f"{field}: there is no template {name!r}; list them with GET /templates",
                field=field,
            )
        if version is None:
            return found[-1]
        chosen = next((t for t in found if t.version == version), None)
        if chosen is None:
            where = field.removesuffix("template") + "version"
            raise BadRequest(
                f"{where}: template {name!r} has versions 1 to {found[-1].version}", field=where
            )
        return chosen

    def get(self, name: str, version: int | None = None) -> Template:
        """Like find, for a URL that names the template: an unknown one is a 404."""
        if not self.versions(name):
            raise NotFound(f"no template {name!r}; list them with GET /templates", field="name")
        return self.find(name, version, "template")

    def delete(self, name: str) -> None:
        """Remove every version; jobs made from it keep what they ran (their own copy)."""
        if not self.store.change(lambda tables: table.delete(tables, name)):
            raise NotFound(f"no template {name!r}", field="name")


def _template(given: TemplateBody, version: int, now: float) -> Template:
    runtime = runtime_of(given.runtime, given.container)
    no_artifacts(runtime, given.logs_dir, given.results_dir)
    if isinstance(given.command, list) and not given.command[0].strip():
        raise BadRequest("command must start with the program to run", field="command")
    check_schema(given.args)
    return Template(
        name=given.name,
        version=version,
        created_at=now,
        description=given.description,
        runtime=runtime,
        container=given.container,
        command=given.command,
        args=given.args,
        env_from_host=tuple(dict.fromkeys(given.env_from_host)),
        logs_dir=given.logs_dir,
        results_dir=given.results_dir,
        timeout=given.timeout,
        types=types_of(given.types),
        limits=parse_limits(given.limits, "limits"),
        max_running=given.max_running,
    )
