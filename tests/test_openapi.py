"""`/openapi.json` is generated from the routes and the Structs that read their bodies: it
validates as OpenAPI 3.1, and a bounded schemathesis run against a live master (no worker, so
nothing it makes runs) finds no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from harness import Http, free_port, start_master
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    proc, http = start_master(
        tmp_path_factory.mktemp("openapi") / "data", free_port(), "-no-worker"
    )
    yield http
    proc.stop()


@pytest.fixture(scope="module")
def api(live: Http) -> Any:
    return schemathesis.openapi.from_url(f"{live.base}/openapi.json")


def test_the_document_validates_and_covers_the_api(live: Http) -> None:
    doc = live.get("/openapi.json")
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    create = paths["/projects/{project}"]["post"]["requestBody"]["content"]["application/json"]
    assert {s["$ref"] for s in create["schema"]["oneOf"]} == {
        "#/components/schemas/TaskBody",
        "#/components/schemas/BareTaskBody",
        "#/components/schemas/BareTemplateTaskBody",
    }
    assert "/templates/{name}" in paths and "put" in paths["/templates/{name}"]
    hook = doc["components"]["schemas"]["HookBody"]
    assert hook["properties"]["events"]["items"]["enum"][0] == "job.ended"
    assert hook["additionalProperties"] is False  # unknown fields are refused, as documented
    assert "/_worker/register" not in paths and "/login" not in paths
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "4XX" in operation["responses"], (method, path)
    # Query parameters come from the Structs their handlers read them with.
    output = {p["name"]: p for p in paths["/jobs/{job}/output"]["get"]["parameters"]}
    assert output["stream"]["schema"]["enum"] == ["both", "stderr", "stdout"]
    assert output["from"]["in"] == "query" and output["attempt"]["schema"]["minimum"] == 1
    listing = {p["name"]: p for p in paths["/projects/{project}"]["get"]["parameters"]}
    assert (
        listing["limit"]["schema"]["maximum"] == 500
        and "$" in listing["before"]["schema"]["pattern"]
    )


CALLS: list[int] = []


def test_no_request_the_document_allows_gets_a_server_error(api: Any) -> None:
    """Each operation, with up to 15 requests schemathesis makes from its schema (bodies that
    fit and that nearly fit, odd path segments), as an admin on the master's own box."""
    tried = 0
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call()
            CALLS.append(response.status_code)
            where = (case.method, case.formatted_path, response.text[:300])
            assert response.status_code < 500, where

        call()
        tried += 1
    assert tried >= 30 and len(CALLS) >= 10 * tried, (tried, len(CALLS))
    assert any(400 <= s < 500 for s in CALLS) and any(s < 300 for s in CALLS)
