"""`GET /openapi.json`: an OpenAPI 3.1 document of the user API, generated from the running app's
routes and the Structs that read each route's body (model/bodies.py), never written by hand.
The only table here says which body a route reads; a route added without one documents no body,
and the test that runs schemathesis against a live master finds it."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from asphalt import __version__, wire
from asphalt.master.http.common import reply
from asphalt.model import bodies

REF = "#/components/schemas/{name}"
# The body each route reads, by route name (one of them, where there are two).
BODIES: dict[str, tuple[Any, ...]] = {
    "create_project": (bodies.ProjectBody,),
    "update_project": (bodies.ProjectSettingsBody,),
    "create_task": (bodies.TaskBody, bodies.BareTaskBody, bodies.BareTemplateTaskBody),
    "add_jobs": (bodies.JobsBody,),
    "create_token": (bodies.TokenBody,),
    "create_hook": (bodies.HookBody,),
    "create_schedule": (bodies.ScheduleBody,),
    "create_template": (bodies.TemplateBody,),
    "update_template": (bodies.TemplateBody,),
    "put_receiver": (bodies.ReceiverBody,),
}
# The query each route reads, by route name (the Structs its handler reads it with).
QUERIES: dict[str, Any] = {
    "project": bodies.TasksQuery,
    "task": bodies.RunQuery,
    "job_output": bodies.OutputQuery,
    "workers": bodies.WorkersQuery,
    "template": bodies.TemplateQuery,
    "artifacts": bodies.ArtifactsQuery,
    "artifact": bodies.ArtifactsQuery,
}
HIDDEN = frozenset({"login", "login_post", "logout", "static", "openapi"})  # pages, and this
CREATED = frozenset(
    {"create_project", "create_task", "add_jobs", "rerun_task", "rerun_job"}
    | {"create_template", "update_template"}
)
_PARAM = re.compile(r"\{(\w+)\}")

routes = web.RouteTableDef()


@routes.get("/openapi.json", name="openapi")
async def openapi(request: web.Request) -> web.Response:
    return reply(document(request.app))


def document(app: web.Application) -> dict[str, Any]:
    """The document for `app`'s own routes (not a sub-application's: the worker protocol)."""
    kinds = [kind for shapes in BODIES.values() for kind in shapes]
    schemas, components = wire.json_schemas([*kinds, bodies.ErrorAnswer, *QUERIES.values()], REF)
    queries = {
        name: _ecma(_parameters(components[kind.__name__])) for name, kind in QUERIES.items()
    }
    for kind in QUERIES.values():
        components.pop(kind.__name__, None)  # they are parameters, not a schema of their own
    by_kind = dict(zip(kinds, schemas, strict=False))
    body_schema = {
        name: by_kind[shapes[0]] if len(shapes) == 1 else {"oneOf": [by_kind[k] for k in shapes]}
        for name, shapes in BODIES.items()
    }
    error = schemas[len(kinds)]  # ErrorAnswer's, after the bodies'
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        name, method = route.name, route.method.lower()
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if not name or name in HIDDEN or method == "head" or not path or "/_worker" in path:
            continue
        operation = _operation(name, path, body_schema.get(name), error)
        operation["parameters"] += queries.get(name, [])
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Asphalt",
            "version": __version__,
            "description": "Run commands and containers across machines. Errors are "
            '`{"error": "what is wrong and how to fix it", "field": "the field at fault"}` '
            "with a 4xx status.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _ecma(components),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],  # no token from the master's own box
    }


def _operation(
    name: str, path: str, body: dict[str, Any] | None, error: dict[str, Any]
) -> dict[str, Any]:
    ok = "201" if name in CREATED else "200"
    media = "text/plain" if name == "metrics" else "application/json"  # Prometheus' format
    answers: dict[str, Any] = {
        ok: {"description": "done", "content": {media: {"schema": {}}}},
        "4XX": {
            "description": "refused: the answer says why and how to fix it",
            "content": {"application/json": {"schema": error}},
        },
    }
    operation: dict[str, Any] = {
        "operationId": name,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in _PARAM.findall(path)
        ],
        "responses": answers,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A query Struct's fields as optional query parameters, each with its rule's wording."""
    found = []
    for name, field in schema["properties"].items():
        given = [o for o in field.get("anyOf", ()) if o != {"type": "null"}]
        if len(given) == 1:  # a query leaves out what it does not give: null is not a value
            field = given[0]
        found.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": field,
                "description": bodies.HINTS.get(name, ""),
            }
        )
    return found


def _ecma(value: Any) -> Any:
    """Patterns as JSON Schema reads them (ECMA regexes): Python's `\\Z` end is `$` there."""
    if isinstance(value, dict):
        return {
            k: (v.replace("\\Z", "$") if k == "pattern" and isinstance(v, str) else _ecma(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_ecma(v) for v in value]
    return value
