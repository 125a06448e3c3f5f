"""A template launched from its page in a real headless Chromium: the form made from its
schema, an error shown by the argument at fault, the job's artifacts and bill on its page."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium, shot
from harness import free_port, start_master, wait_until
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.ui

SAVE = 'echo "$0" > "$ASPHALT_RESULTS_DIR/args.json"; echo "one line" > "$ASPHALT_LOGS_DIR/log.txt"'
TEMPLATE = {
    "name": "train",
    "description": "Trains a model and keeps its arguments",
    "runtime": "host",
    "command": ["/bin/sh", "-c", SAVE],
    "results_dir": "/results",
    "logs_dir": "/logs",
    "args": {
        "type": "object",
        "properties": {
            "epochs": {"type": "integer", "minimum": 1, "default": 3, "description": "passes"},
            "model": {"enum": ["small", "large"], "description": "which one"},
            "fast": {"type": "boolean", "default": False},
            "name": {"type": "string"},
            "layers": {"type": "array", "default": [1, 2]},
        },
        "required": ["name", "model"],
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_a_template_is_launched_from_its_form_and_its_artifacts_shown(
    tmp_path: Path, browser: Browser
) -> None:
    proc, http = start_master(tmp_path / "data", free_port())
    try:
        http.post("/", {"name": "web"})
        http.post("/templates", TEMPLATE)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page: Page = context.new_page()
        page.goto(http.base + "/templates")
        page.get_by_role("link", name="train").click()
        expect(page.locator("h1")).to_contain_text("train")
        expect(page.locator(".launch .help").first).to_have_text("passes")
        page.fill("#arg-epochs", "0")
        page.fill("#arg-name", "first")
        page.select_option("#arg-model", label="large")
        page.check("#arg-fast")
        page.get_by_role("button", name="Launch into web").click()
        # Refused by the schema: the error beside epochs, what was typed kept.
        expect(page.locator(".field.invalid .field-error")).to_contain_text(
            "args.epochs: 0 is less than the minimum of 1"
        )
        expect(page.locator("#arg-name")).to_have_value("first")
        shot(page, "template-error")
        page.fill("#arg-epochs", "5")
        page.get_by_role("button", name="Launch into web").click()
        expect(page.locator("h1")).not_to_contain_text("train ")
        task_url = page.url
        assert "/projects/" in task_url and "/tasks/" in task_url, task_url
        task_id = task_url.rstrip("/").rsplit("/", 1)[-1]
        done = wait_until(lambda: http.task_done("web", task_id), 30, "the launched task")
        job = done["jobs"]["main"]
        assert job["template"] == {"name": "train", "version": 1}
        assert job["args"] == {
            "epochs": 5,
            "name": "first",
            "model": "large",
            "fast": True,
            "layers": [1, 2],
        }
        page.goto(http.base + f"/jobs/{job['id']}")
        expect(page.locator("table.artifacts")).to_contain_text("results/args.json")
        expect(page.locator(".bill-row")).to_contain_text("peak memory")
        link = page.get_by_role("link", name="results/args.json")
        href = link.get_attribute("href")
        assert href is not None
        with urllib.request.urlopen(http.base + href, timeout=30) as response:
            assert json.loads(response.read()) == job["args"]
        expect(page.get_by_role("link", name="All as .tar.gz")).to_be_visible()
        shot(page, "job-artifacts")
        context.close()
    finally:
        proc.stop()
