"""The pages in a real headless Chromium (Debian's), driven by Playwright, against a real master."""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browser import chromium, shot
from harness import Http, free_port, start_master, wait_until
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


class Site:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.proc, self.http = start_master(tmp / "data", self.port, *extra)
        self.base = self.http.base

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_dashboard_leads_to_a_project_and_a_task(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "web"})
    site.http.post(
        "/projects/web",
        {
            "id": "9399dda8c384",
            "jobs": {
                "main": {"action": "echo building; printf '\\033[32mgreen\\033[0m\\n'"},
                "success": {"action": "echo deploy"},
                "after": {"action": "echo cleanup"},
            },
        },
    )
    site.http.post("/projects/web", {"id": "broken", "action": "echo oh no; exit 2"})
    site.http.post("/projects/web", {"id": "gpu-work", "action": "train", "types": ["gpu"]})
    wait_until(lambda: site.http.task_done("web", "broken"), 30, "the tasks")
    wait_until(lambda: site.http.task_done("web", "9399dda8c384"), 30, "the tasks")

    page.goto(site.base + "/")
    expect(page.locator(".workers-strip")).to_contain_text("0/")
    expect(page.get_by_role("link", name="9399dda8c384")).to_be_visible()
    expect(page.locator(".count.failed b")).to_have_text("1")
    shot(page, "dashboard")

    page.get_by_role("link", name="web", exact=True).first.click()
    expect(page.locator("h1")).to_have_text("web")
    expect(page.locator("tr", has_text="gpu-work")).to_contain_text("waiting")
    page.get_by_role("link", name="9399dda8c384").click()
    expect(page.locator("#job-main .badge")).to_have_text("succeeded")
    expect(page.locator("#job-main pre")).to_have_text("building\ngreen\n")  # no escape codes
    expect(page.locator("#job-success pre")).to_have_text("deploy\n")
    expect(page.locator("#job-main")).to_contain_text("exit 0")
    shot(page, "task")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "task-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off a phone
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(site.base + "/projects/web/tasks/gpu-work")
    expect(page.locator("#job-main .reason")).to_have_text("no live worker has types gpu")


def test_a_running_jobs_output_appears_line_by_line(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    action = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.8; done"
    task = site.http.post("/projects/p", {"id": "live", "action": action})
    job = task["jobs"]["main"]["id"]
    wait_until(lambda: site.http.get(f"/jobs/{job}")["state"] == "running", 30, "the start")
    page.goto(f"{site.base}/jobs/{job}")
    output = page.locator("#output")
    expect(output).to_contain_text("line 2", timeout=20_000)
    assert "line 6" not in output.inner_text()  # seen while the job still runs
    expect(page.locator("[data-live=job-facts] .badge")).to_have_text("running")
    shot(page, "job-live")
    expect(page.locator("[data-live=job-facts] .badge")).to_have_text("succeeded", timeout=20_000)
    expect(page.get_by_role("button", name="Re-run job")).to_be_visible()
    lines = output.inner_text().strip().split("\n")
    assert lines == [f"line {i}" for i in range(1, 7)]  # each line once, in order


def test_rerun_from_the_task_page_makes_a_new_run(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    site.http.post("/projects/p", {"id": "t", "action": "echo run $ASPHALT_RUN"})
    wait_until(lambda: site.http.task_done("p", "t"), 30, "run 1")
    page.goto(site.base + "/projects/p/tasks/t")
    page.get_by_role("button", name="Re-run task").focus()
    page.keyboard.press("Enter")  # reachable and usable from the keyboard
    expect(page.locator("h1")).to_contain_text("run 2")
    expect(page.locator("#job-main pre")).to_have_text("run 2\n", timeout=20_000)
    expect(page.locator("nav.runs")).to_contain_text("1")
    page.locator("nav.runs a", has_text="1").first.click()
    expect(page.locator("#job-main pre")).to_have_text("run 1\n")


def test_cancel_stops_a_sleeping_job(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    site.http.post("/projects/p", {"id": "sleepy", "action": "echo sleeping; sleep 300"})
    wait_until(
        lambda: site.http.get("/projects/p/tasks/sleepy")["jobs"]["main"]["output"], 30, "start"
    )
    page.goto(site.base + "/projects/p/tasks/sleepy")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-main .badge")).to_have_text("cancelled", timeout=20_000)
    expect(page.get_by_role("button", name="Re-run task")).to_be_visible()


def test_a_task_can_be_created_from_the_form(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    page.goto(site.base + "/projects/p")
    expect(page.locator(".empty")).to_contain_text("curl")
    page.get_by_label("Action").fill("echo made with $HOW")
    page.get_by_label("Env").fill("HOW=a form")
    page.get_by_label("Task id").fill("from-form")
    page.get_by_role("button", name="Create task").click()
    expect(page).to_have_url(f"{site.base}/projects/{page_project_id(site)}/tasks/from-form")
    expect(page.locator("#job-main pre")).to_have_text("made with a form\n", timeout=20_000)


def page_project_id(site: Site) -> str:
    return str(site.http.get("/projects/p")["id"])


def test_a_bad_form_says_what_is_wrong(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    page.goto(site.base + "/projects/p")
    page.get_by_label("Action").fill("true")
    page.get_by_label("Timeout (s)").fill("soon")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator(".banner.error")).to_contain_text("timeout")
    expect(page.get_by_label("Action")).to_have_value("true")  # what was typed is kept
    expect(page.get_by_label("Timeout (s)")).to_have_value("soon")


def test_an_error_banner_comes_from_the_form_and_not_from_a_link(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    page.goto(site.base + "/")
    page.get_by_label("Name").fill("p")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator(".banner.error")).to_contain_text("already called 'p'")
    # The same words in a link someone sent do not show: the banner is signed for this browser.
    lure = "your session expired; sign in again at evil.example"
    page.goto(site.base + "/projects/p?error=" + lure.replace(" ", "+") + "&sig=0123")
    expect(page.locator("h1")).to_have_text("p")
    expect(page.locator(".banner.error")).to_have_count(0)


def test_pages_and_forms_work_without_javascript(site: Site, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(site.base + "/")
    page.get_by_label("Name").fill("nojs")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("h1")).to_have_text("nojs")
    page.get_by_label("Action").fill("echo plain html")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#job-main")).to_be_visible()
    wait_until(
        lambda: site.http.get("/projects/nojs")["tasks"][0]["status"] == "complete", 30, "it"
    )
    page.reload()
    expect(page.locator("#job-main pre")).to_have_text("plain html\n")
    context.close()


def test_a_form_post_from_another_site_is_refused(site: Site) -> None:
    site.http.post("/", {"name": "p"})
    status, body = site.http.call(
        "POST", "/projects/p", {"action": "rm -rf /"}, headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and "cross-site" in body["error"]
    status, _ = site.http.call(
        "POST", "/projects/p", {"action": "true"}, headers={"Origin": site.base}
    )
    assert status == 201


def test_a_thousand_tasks_paginate(tmp_path: Path, page: Page) -> None:
    site = Site(tmp_path, "-no-worker")
    try:
        site.http.post("/", {"name": "big"})
        for i in range(1000):
            site.http.post("/projects/big", {"id": f"t{i:04d}", "action": "true"})
        page.goto(site.base + "/projects/big")
        rows = page.locator("table.tasks tbody tr")
        expect(rows).to_have_count(25)
        expect(rows.first).to_contain_text("t0999")
        page.get_by_role("link", name="Older tasks").click()
        expect(rows.first).to_contain_text("t0974")
        page.goto(site.base + "/")
        expect(page.locator(".count.queued b")).to_have_text("1000")
    finally:
        site.stop()


def test_a_job_with_50_mb_of_output_keeps_its_page_small(tmp_path: Path, page: Page) -> None:
    site = Site(tmp_path, "-output-cap", str(64 << 20))
    try:
        site.http.post("/", {"name": "p"})
        task = site.http.post(
            "/projects/p", {"id": "loud", "action": "yes 0123456789abcdef | head -c 50000000"}
        )
        job = task["jobs"]["main"]["id"]
        wait_until(lambda: site.http.task_done("p", "loud"), 120, "50 MB of output")
        html = _get_html(f"{site.base}/jobs/{job}")
        assert len(html) < 200_000 and "earlier bytes" in html
        page.goto(f"{site.base}/jobs/{job}")
        expect(page.locator("#output")).to_contain_text("0123456789abcdef")
        with urllib.request.urlopen(f"{site.base}/jobs/{job}/output") as full:
            assert len(full.read()) == 50_000_000
        assert len(_get_html(f"{site.base}/projects/p/tasks/loud")) < 200_000
    finally:
        site.stop()


def _get_html(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


def test_a_browser_gets_an_html_page_for_an_unknown_address(site: Site, page: Page) -> None:
    for path in ("/nothing/here", "/projects/nope", "/jobs/nope"):
        response = page.goto(site.base + path)
        assert response is not None and response.status == 404
        expect(page.locator("h1")).to_have_text("Not here")


def test_live_output_keeps_what_follows_a_carriage_return(site: Site, page: Page) -> None:
    site.http.post("/", {"name": "p"})
    action = "sleep 1; printf 'pct 10\\rpct 90\\n'; sleep 1; echo done"
    task = site.http.post("/projects/p", {"id": "bar", "action": action})
    page.goto(f"{site.base}/jobs/{task['jobs']['main']['id']}")
    expect(page.locator("#output")).to_contain_text("done", timeout=20_000)
    assert "pct 90" in page.locator("#output").inner_text()


def test_the_project_page_lists_its_schedules_with_their_next_firing(
    site: Site, page: Page
) -> None:
    site.http.post("/", {"name": "web"})
    body = {"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "task": {"action": "true"}}
    made = site.http.post("/projects/web/schedules", body)
    site.http.post("/projects/web/schedules", {**body, "name": "paused-one"})
    site.http.post("/projects/web/schedules/paused-one/pause", None, expect=200)
    page.goto(f"{site.base}/projects/web")
    rows = page.locator("table.schedules tbody tr")
    expect(rows).to_have_count(2)
    nightly = rows.filter(has_text="nightly")
    expect(nightly.locator("code")).to_have_text("0 3 * * *")
    expect(nightly.locator("time")).to_have_attribute("datetime", made["nextAt"])
    expect(nightly).to_contain_text("none yet")
    expect(rows.filter(has_text="paused-one")).to_contain_text("paused")
    shot(page, "project-schedules")


def test_the_task_page_says_how_long_the_task_is_kept(tmp_path: Path, page: Page) -> None:
    site = Site(tmp_path, "-keep-days", "7")
    try:
        site.http.post("/", {"name": "web"})
        site.http.post("/projects/web", {"id": "done", "action": "true"})
        site.http.post("/projects/web", {"id": "waits", "action": "true", "types": ["none"]})
        wait_until(lambda: site.http.task_done("web", "done"), 30, "the task to complete")
        page.goto(f"{site.base}/projects/web/tasks/done")
        expect(page.locator(".summary .kept")).to_contain_text("kept until")
        page.goto(f"{site.base}/projects/web/tasks/waits")
        expect(page.locator(".summary .kept")).to_have_text("kept 7 days after it ends")
        site.http.call("PATCH", "/projects/web", {"keep_days": 0})
        page.goto(f"{site.base}/projects/web/tasks/done")
        expect(page.locator(".summary .kept")).to_have_text("kept until deleted")
    finally:
        site.stop()


class _Receiver:
    """A webhook receiver in a thread on 127.0.0.1 that takes every delivery."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        seen = self.ids

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(self.headers["Asphalt-Delivery"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_hooks_deliveries_are_listed_on_a_page_and_redelivered_with_a_button(
    site: Site, page: Page
) -> None:
    receiver = _Receiver()
    try:
        site.http.post("/", {"name": "web"})
        hook = site.http.post(
            "/projects/web/hooks", {"url": receiver.url, "events": ["task.completed"]}
        )
        site.http.post("/projects/web", {"id": "t", "action": "true"})
        wait_until(lambda: receiver.ids or None, 30, "the delivery")
        page.goto(f"{site.base}/projects/web")
        page.get_by_role("link", name=receiver.url).click()
        row = page.locator("table.deliveries tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text(receiver.ids[0])
        expect(row.locator(".badge")).to_have_text("delivered")
        expect(row).to_contain_text("204")
        shot(page, "hook-deliveries")
        row.get_by_role("button", name="Redeliver").click()
        expect(page).to_have_url(re.compile(rf"/projects/\w+/hooks/{hook['id']}$"))
        wait_until(lambda: len(receiver.ids) == 2 or None, 30, "the redelivery")
        assert receiver.ids[0] == receiver.ids[1]  # sent again under its own id
        page.reload()
        expect(row).to_contain_text("delivered")
    finally:
        receiver.close()


def test_a_hooks_page_needs_admin_and_a_callbacks_page_shows_its_deliveries(
    tmp_path: Path,
) -> None:
    proc, bare = start_master(tmp_path / "data", free_port(), "-auth", "always", ready=401)
    receiver = _Receiver()
    try:
        admin = Http(bare.base, (tmp_path / "data" / "admin.token").read_text().strip())
        admin.post("/", {"name": "web"})
        hook = admin.post("/projects/web/hooks", {"url": receiver.url, "events": ["job.ended"]})
        reader = admin.post("/tokens", {"name": "r", "scope": "read"})["token"]
        html = {"Accept": "text/html", "Authorization": f"Bearer {reader}"}
        status, _ = admin.call("GET", f"/projects/web/hooks/{hook['id']}", headers=html)
        assert status == 403
        status, text = admin.call("GET", "/projects/web", headers=html)
        assert status == 200 and receiver.url not in text  # a read token is not shown hooks
        callback = {"url": receiver.url, "secret": "s" * 16}
        admin.post("/projects/web", {"id": "t", "action": "true", "callback": callback})
        wait_until(lambda: len(receiver.ids) >= 2 or None, 30, "the deliveries")
        status, text = admin.call("GET", "/projects/web/tasks/t/deliveries", headers=html)
        assert status == 200 and "Callback" in text and "delivered" in text, text
        assert "<button" not in text  # redelivering needs submit
    finally:
        receiver.close()
        proc.stop()
