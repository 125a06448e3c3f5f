"""The templates pages: the list, and each template with a launch form made from its arguments'
JSON Schema (text, number, checkbox, a select for `enum`, a JSON field for the rest, the
descriptions as help). The form posts to the chosen project's task route, as the API's
`{"template": NAME, "args": {...}}`; an error comes back beside the argument at fault."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from asphalt.errors import BadRequest
from asphalt.master.http import auth
from asphalt.master.http.common import SCHEDULER
from asphalt.model.bodies import TemplateQuery, read_query
from asphalt.web import pages

ARG = "arg."  # the form fields of the arguments are arg.NAME


class Fields(Protocol):
    """A posted form: every value given for a field (a checkbox sends a hidden one first)."""

    def getall(self, key: str, default: list[str], /) -> list[str]: ...


def _kind(rule: Mapping[str, Any]) -> str:
    if "enum" in rule:
        return "select"
    kind = rule.get("type")
    if kind in ("integer", "number", "boolean", "string"):
        return {"integer": "number", "number": "number", "boolean": "checkbox"}.get(kind, "text")
    return "json"


def form_fields(schema: Mapping[str, Any], typed: Mapping[str, str]) -> list[dict[str, Any]]:
    """One field per argument, with what was typed (after an error) or its default."""
    required = set(schema.get("required", ()))
    fields = []
    for name, given in dict(schema.get("properties", {})).items():
        rule: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        kind = _kind(rule)
        default = rule.get("default")
        if ARG + name in typed:
            value = typed[ARG + name]
        elif default is None:
            value = ""
        elif kind in ("json", "select"):
            value = json.dumps(default)
        else:
            value = str(default).lower() if isinstance(default, bool) else str(default)
        fields.append(
            {
                "name": name,
                "kind": kind,
                "value": value,
                "checked": value == "true",
                "required": name in required,
                "help": str(rule.get("description", "")),
                "step": "1" if rule.get("type") == "integer" else "any",
                "options": [(json.dumps(o), str(o)) for o in rule.get("enum", ())],
            }
        )
    return fields


def args_from_form(schema: Mapping[str, Any], form: Fields) -> dict[str, Any]:
    """The arguments typed into a launch form, as JSON values; an empty field is left out (its
    default applies). A value that cannot be read is a 400 naming the argument."""
    args: dict[str, Any] = {}
    for name, given in dict(schema.get("properties", {})).items():
        rule: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        kind = _kind(rule)
        values = form.getall(ARG + name, [])
        raw = str(values[-1]) if values else ""
        if kind == "checkbox":
            args[name] = raw == "true"
        elif not raw.strip():
            continue
        elif kind == "text":
            args[name] = raw
        elif kind == "number":
            args[name] = _number(raw, name, integer=rule.get("type") == "integer")
        else:
            try:
                args[name] = json.loads(raw)
            except ValueError:
                raise BadRequest(
                    f'args.{name} must be JSON, e.g. [1, 2] or {{"a": 1}}', field=f"args.{name}"
                ) from None
    return args


def _number(raw: str, name: str, *, integer: bool) -> int | float:
    try:
        return int(raw) if integer else float(raw)
    except ValueError:
        what = "a whole number" if integer else "a number"
        raise BadRequest(f"args.{name} must be {what}", field=f"args.{name}") from None


async def templates(request: web.Request) -> web.Response:
    """Every template, newest version of each."""
    found = sorted(request.app[SCHEDULER].templates.latest(), key=lambda t: t.name)
    context = {"templates": [t.view() for t in found], "title": "Templates"}
    return pages.render(request, "templates.html", context)


async def template(request: web.Request) -> web.Response:
    """A template's page."""
    return launch_page(request, request.match_info["name"])


def launch_page(
    request: web.Request,
    name: str,
    *,
    form: Mapping[str, str] | None = None,
    error: str | None = None,
    field: str | None = None,
) -> web.Response:
    """A template, with its launch form into the project chosen (?project=, or the form's);
    after a bad launch, again with what was typed and the error beside its argument."""
    scheduler = request.app[SCHEDULER]
    templates = scheduler.templates
    version = read_query(request.query, TemplateQuery).version
    if form and form.get("version", "").isdecimal() and len(form["version"]) < 10:
        version = int(form["version"])
    shown = templates.get(name, version)
    who = auth.caller(request)
    projects = sorted((p for p in scheduler.store.projects() if who.sees(p)), key=lambda p: p.name)
    chosen = request.match_info.get("project") or request.query.get("project", "")
    project = next((p for p in projects if chosen in (p.id, p.name)), None)
    if project is None and len(projects) == 1:
        project = projects[0]
    context = {
        "template": shown.view(),
        "versions": [t.version for t in templates.versions(name)],
        "fields": form_fields(shown.args, form or {}),
        "projects": [p.view() for p in projects],
        "project": project.view() if project else None,
        "field_error": field.removeprefix("args.") if field and error else None,
        "title": f"{name} · templates",
    }
    if error is not None:
        context["error"] = error
    return pages.render(request, "template.html", context, status=400 if error else 200)
