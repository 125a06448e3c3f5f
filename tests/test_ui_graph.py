"""The task page's graph of jobs in a real headless Chromium against a real master: drawn for
tasks of named jobs, live while they run, and absent for tasks written the old way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, shot
from harness import Http, Proc, free_port, start_master, wait_until
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.ui

DIAMOND = {
    "a": {"action": "true"},
    "b": {"action": "true", "needs": ["a"]},
    "c": {"action": "false", "needs": ["a"]},
    "d": {"action": "true", "needs": ["b", "c"], "when": "always"},
}


class Site:
    def __init__(self, tmp: Path) -> None:
        self.proc: Proc
        self.http: Http
        self.proc, self.http = start_master(tmp / "data", free_port())
        self.base = self.http.base
        self.http.post("/", {"name": "p"})

    def task(self, task: str, jobs: dict[str, Any]) -> dict[str, Any]:
        """A task of project p; once it is complete, its view."""
        self.http.post("/projects/p", {"id": task, "jobs": jobs})
        view: dict[str, Any] = wait_until(lambda: self.http.task_done("p", task), 60, task)
        return view


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.proc.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def boxes(page: Page) -> dict[str, dict[str, Any]]:
    """Each drawn job's name -> where its box is, its colour and the job it links to."""
    found: dict[str, dict[str, Any]] = page.eval_on_selector_all(
        "svg.graph a.box",
        """links => Object.fromEntries(links.map(a => {
            const box = a.querySelector("rect").getBoundingClientRect();
            const fill = getComputedStyle(a.querySelector("rect")).fill;
            return [a.dataset.name, {x: box.x, y: box.y, fill, href: a.getAttribute("href")}];
        }))""",
    )
    return found


def badge_colour(page: Page, name: str) -> str:
    colour: str = page.eval_on_selector(
        f"#job-{name} header .badge", "b => getComputedStyle(b).backgroundColor"
    )
    return colour


def test_the_task_page_draws_a_diamond_in_columns_coloured_by_state(site: Site, page: Page) -> None:
    view = site.task("diamond", DIAMOND)
    assert [view["jobs"][n]["state"] for n in "abcd"] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
    ]
    page.goto(site.base + "/projects/p/tasks/diamond")
    graph = page.locator("[data-live=graph] svg.graph")
    expect(graph).to_be_visible()
    expect(graph).to_have_attribute("role", "img")
    expect(graph).to_have_attribute("aria-label", re.compile("^Graph of .*: 4 jobs in 3 columns"))
    expect(graph.locator("a.box")).to_have_count(4)

    drawn = boxes(page)
    assert drawn["a"]["x"] < drawn["b"]["x"] == drawn["c"]["x"] < drawn["d"]["x"]
    assert drawn["b"]["y"] != drawn["c"]["y"]
    for name in "abcd":  # the colour of the job's badge below, and a link to the job
        assert drawn[name]["fill"] == badge_colour(page, name)
        assert drawn[name]["href"] == f"/jobs/{view['jobs'][name]['id']}"
    assert drawn["c"]["fill"] != drawn["b"]["fill"]
    expect(graph.locator('a.box[data-name="c"] title')).to_have_text("c: failed · needs a")

    into_d = graph.locator('g.in[data-to="d"]')
    expect(into_d.locator("path.edge")).to_have_count(2)
    expect(into_d.locator("text.when")).to_have_text("always")
    expect(graph.locator('g.in[data-to="b"] text.when')).to_have_count(0)

    sections = page.locator("section.job").evaluate_all("s => s.map(e => e.id)")
    assert sections == ["job-a", "job-b", "job-c", "job-d"]
    expect(page.locator("#job-d h2")).to_have_text("d")
    expect(page.locator("#job-d")).to_contain_text("b, c · when always")
    shot(page, "task-graph")
    page.goto(site.base + "/projects/p")  # the task's row names its jobs in the same order
    expect(page.locator("tr", has_text="diamond").locator(".pill")).to_have_text(list("abcd"))
    page.goto(site.base + "/projects/p/tasks/diamond")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "task-graph-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the graph scrolls


def test_the_graph_follows_the_jobs_while_they_run(site: Site, page: Page) -> None:
    jobs = {"first": {"action": "sleep 3"}, "then": {"action": "true", "needs": ["first"]}}
    site.http.post("/projects/p", {"id": "live", "jobs": jobs})
    page.goto(site.base + "/projects/p/tasks/live")
    first = page.locator('svg.graph a.box[data-name="first"]')
    expect(first).to_have_class("box s-running", timeout=20_000)
    expect(page.locator('svg.graph a.box[data-name="then"]')).to_have_class("box s-queued")
    url = page.url
    expect(page.locator('svg.graph a.box[data-name="then"]')).to_have_class(
        "box s-succeeded", timeout=30_000
    )
    expect(first).to_have_class("box s-succeeded")
    assert page.url == url  # swapped in by the live update, not a reload


def test_outputs_show_under_their_job_escaped_and_cut_to_a_line(site: Site, page: Page) -> None:
    action = (
        'echo "version=1.2.3" >> "$ASPHALT_OUTPUTS"; '
        'echo "html=<b>bold</b>" >> "$ASPHALT_OUTPUTS"; '
        "printf 'long=%s\\n' \"$(printf 'x%.0s' $(seq 1 600))\" >> \"$ASPHALT_OUTPUTS\""
    )
    view = site.task(
        "outs", {"build": {"action": action}, "use": {"action": "true", "needs": ["build"]}}
    )
    assert view["jobs"]["build"]["outputs"]["version"] == "1.2.3"
    page.goto(site.base + "/projects/p/tasks/outs")
    outputs = page.locator("#job-build dl.outputs")
    expect(outputs.locator("dt")).to_have_text(["version", "html", "long"])
    expect(outputs.locator("dd").nth(1)).to_have_text("<b>bold</b>")  # text, not markup
    long = outputs.locator("dd code").nth(2)
    assert long.evaluate("c => c.scrollWidth > c.clientWidth")  # one line, cut by the style
    expect(page.locator("#job-use dl.outputs")).to_have_count(0)
    page.goto(site.base + f"/jobs/{view['jobs']['build']['id']}")
    expect(page.locator("dl.outputs dd").nth(0)).to_have_text("1.2.3")
    expect(page.locator("dl.outputs dd").nth(2)).to_have_text("x" * 600)
    shot(page, "job-outputs")


def test_a_task_written_the_old_way_has_no_graph_and_its_roles_in_order(
    site: Site, page: Page
) -> None:
    site.task(
        "old",
        {
            "after": {"action": "echo cleanup"},
            "failure": {"action": "echo alert"},
            "main": {"action": "echo building"},
            "success": {"action": "echo deploy"},
        },
    )
    page.goto(site.base + "/projects/p/tasks/old")
    expect(page.locator("#job-after .badge")).to_have_text("succeeded")
    expect(page.locator("svg.graph")).to_have_count(0)
    assert page.locator("[data-live=graph]").inner_html().strip() == ""
    sections = page.locator("section.job").evaluate_all("s => s.map(e => e.id)")
    assert sections == ["job-main", "job-success", "job-failure", "job-after"]
    expect(page.locator("#job-success h2")).to_have_text("success")
    assert (
        page.locator("#job-success h2").evaluate("h => getComputedStyle(h).textTransform")
        == "capitalize"
    )  # as it always looked
    expect(page.locator("#job-after")).not_to_contain_text("Needs")
    shot(page, "task-old-style")
