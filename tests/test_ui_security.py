"""The pages' security in a real Chromium against real masters: the login page, sessions,
tokens and workers managed from the pages, framing refused, no inline script, -auth off."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, shot
from harness import REG, Http, free_port, join_token, start_master, wait_until
from playwright.sync_api import Browser, BrowserContext, Page, expect

from asphalt.wire import to_json

SESSION_COOKIE = "asphalt_session"

pytestmark = pytest.mark.ui


class Site:
    """One master process for a test, and a client that sends its admin token."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.data = tmp / "data"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        ready = 401 if "always" in extra else 200  # a locked master says 401 to a bare GET
        self.proc, _ = start_master(self.data, self.port, *extra, ready=ready)
        self.admin = (self.data / "admin.token").read_text().strip()
        self.http = Http(self.base, token=self.admin)

    def stop(self) -> None:
        self.proc.stop()

    def task_with_a_finished_job(self) -> str:
        """Project p with task t, whose one job printed a line; the job's id."""
        self.http.post("/", {"name": "p"})
        task = self.http.post("/projects/p", {"id": "t", "action": "echo hello from t"})
        wait_until(lambda: self.http.task_done("p", "t"), 60, "task t")
        return str(task["jobs"]["main"]["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """Start masters with the flags given; each is stopped after the test."""
    started: list[Site] = []

    def start(*extra: str) -> Site:
        site = Site(tmp_path / f"master{len(started)}", *extra)
        started.append(site)
        return site

    yield start
    for site in reversed(started):
        site.stop()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """New browser contexts (each its own cookie jar); each is closed after the test."""
    made: list[BrowserContext] = []

    def new() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        made.append(context)
        return context

    yield new
    for context in made:
        context.close()


def sign_in(page: Page, token: str) -> None:
    """Sign in on the login page the browser is showing."""
    expect(page.locator("h1")).to_have_text("Sign in")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def fetch(
    url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one request, whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def register(base: str, join: str) -> int:
    """The status a worker gets when it registers with `join`."""
    body = to_json(REG)  # a registration the harness's in-process tests use
    status, _, _ = fetch(
        base + "/_worker/register",
        headers={"Authorization": f"Bearer {join}", "Content-Type": "application/json"},
        body=json.dumps(body).encode(),
    )
    return status


def test_a_locked_master_signs_a_browser_in_with_a_token_and_out_again(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-auth", "always", "-no-worker")
    context = contexts()
    page = context.new_page()

    response = page.goto(site.base + "/")
    assert response is not None and response.status == 401
    expect(page.locator("h1")).to_have_text("Sign in")
    expect(page.get_by_role("link", name="Tokens")).to_have_count(0)
    shot(page, "login")

    page.goto(site.base + "/workers")  # the page first asked for
    sign_in(page, "asp_notatoken_0123")
    expect(page.locator(".banner.error")).to_contain_text("not valid")
    expect(page.locator("h1")).to_have_text("Sign in")
    shot(page, "login-wrong-token")

    sign_in(page, site.admin)
    expect(page).to_have_url(site.base + "/workers")
    expect(page.locator("h1")).to_have_text("Workers")
    (session,) = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    cookie = f"{SESSION_COOKIE}={session['value']}"
    assert fetch(site.base + "/", headers={"Cookie": cookie})[0] == 200

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("h1")).to_have_text("Sign in")
    response = page.goto(site.base + "/workers")
    assert response is not None and response.status == 401
    expect(page.locator("h1")).to_have_text("Sign in")
    assert fetch(site.base + "/", headers={"Cookie": cookie})[0] == 401  # ended on the master


def test_an_admin_makes_a_read_token_on_the_tokens_page_and_revokes_it(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-auth", "always", "-no-worker")
    site.http.post("/", {"name": "p"})
    site.http.post("/", {"name": "q"})
    admin = contexts().new_page()
    admin.goto(site.base + "/tokens")
    sign_in(admin, site.admin)
    expect(admin.locator("h1")).to_have_text("Tokens")

    admin.get_by_label("Name").fill("reader")
    admin.get_by_label("Scope").select_option("read")
    admin.get_by_label("Projects").fill("p")
    admin.get_by_role("button", name="Make token").click()
    expect(admin.locator("#new-token")).to_contain_text("asp_")
    secret = admin.locator("#new-token").inner_text().strip()
    assert secret.startswith("asp_")
    row = admin.locator("table.tokens tbody tr", has_text="reader")
    expect(row.locator("td").nth(1)).to_have_text("read")
    expect(row.locator(".tag")).to_have_text(["p"])
    shot(admin, "tokens-new-secret")

    admin.goto(site.base + "/tokens")
    expect(admin.locator("#new-token")).to_have_count(0)
    expect(row).to_have_count(1)
    assert secret not in admin.content()  # shown that once, and never again

    reader = contexts().new_page()
    reader.goto(site.base + "/")
    sign_in(reader, secret)
    expect(reader.locator("h1")).to_have_text("Projects")
    expect(reader.get_by_role("link", name="p", exact=True)).to_be_visible()
    expect(reader.get_by_role("link", name="q", exact=True)).to_have_count(0)
    expect(reader.get_by_role("link", name="Tokens")).to_have_count(0)
    shot(reader, "dashboard-read-token")
    response = reader.goto(site.base + "/projects/q")
    assert response is not None and response.status == 403
    response = reader.goto(site.base + "/tokens")
    assert response is not None and response.status == 403

    reader.goto(site.base + "/projects/p")
    expect(reader.get_by_label("Action")).to_have_count(0)  # no form it may not send
    # Sent anyway (a page of the admin's, kept open after the token changed): refused, in a page.
    posted = reader.evaluate(
        """async () => {
            const csrf = document.cookie;  // HttpOnly: the form token cookie is not readable
            const r = await fetch('/projects/p', {method: 'POST', headers: {'Accept': 'text/html'},
                body: new URLSearchParams({action: 'echo a reader may not', _csrf: 'x'})});
            return [r.status, csrf, await r.text()];
        }"""
    )
    assert posted[0] == 403 and "Not allowed" in posted[2], posted
    assert site.http.get("/projects/p")["tasks"] == []

    admin.locator("table.tokens tbody tr", has_text="reader").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(admin.locator("h1")).to_have_text("Tokens")
    expect(row).to_have_count(0)
    response = reader.goto(site.base + "/projects/p")
    assert response is not None and response.status == 401
    expect(reader.locator("h1")).to_have_text("Sign in")


def test_an_admin_revokes_the_embedded_worker_and_makes_a_new_join_token(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites()
    wait_until(
        lambda: [w for w in site.http.get("/workers")["workers"] if w["state"] == "live"],
        30,
        "the master's own worker",
    )
    old = join_token(site.data)
    page = contexts().new_page()
    page.goto(site.base + "/workers")
    row = page.locator("table.workers tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("live")

    row.get_by_role("button", name="Revoke").click()
    expect(page).to_have_url(site.base + "/workers")
    expect(row.locator(".badge")).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    assert [w["state"] for w in site.http.get("/workers")["workers"]] == ["revoked"]

    page.get_by_role("button", name="New join token").click()
    command = page.locator("#join-command")
    expect(command).to_contain_text("-join ASPHALT-1-")
    shot(page, "workers-new-join-token")
    new = command.inner_text().strip().rpartition("-join ")[2]
    assert new != old and join_token(site.data) == new
    assert register(site.base, old) == 401
    assert register(site.base, new) == 201

    page.goto(site.base + "/workers")
    expect(page.locator("#join-command")).to_have_count(0)  # the command is shown once


def test_a_secret_shown_once_fits_on_a_phone(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-no-worker")
    page = contexts().new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site.base + "/tokens")
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name="Make token").click()
    expect(page.locator("#new-token")).to_contain_text("asp_")
    shot(page, "tokens-new-secret-phone")
    tokens_width = page.evaluate("document.documentElement.scrollWidth")
    page.goto(site.base + "/workers")
    page.get_by_role("button", name="New join token").click()
    expect(page.locator("#join-command")).to_contain_text("-join ASPHALT-1-")
    shot(page, "workers-new-join-token-phone")
    workers_width = page.evaluate("document.documentElement.scrollWidth")
    # Nothing runs off a phone (as tests/test_ui.py asks of the task page): a secret wraps.
    assert {"tokens": tokens_width, "workers": workers_width} == {"tokens": 390, "workers": 390}


class Framing:
    """A site of its own on another port whose page frames the master's, and one of its own."""

    def __init__(self, target: str) -> None:
        page = (
            "<!doctype html><title>framing</title>"
            f'<iframe id="master" src="{target}" width="600" height="300"></iframe>'
            '<iframe id="own" src="/own" width="600" height="100"></iframe>'
        ).encode()
        own = b"<!doctype html><p id='own-text'>framed fine</p>"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = own if self.path == "/own" else page
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # nothing on the test's output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="framing")
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_another_site_cannot_frame_a_page_of_the_master(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-no-worker")
    status, headers, _ = fetch(site.base + "/", headers={"Accept": "text/html"})
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]

    framing = Framing(site.base + "/")
    try:
        page = contexts().new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        with page.expect_response(lambda r: r.url == site.base + "/") as framed:
            page.goto(framing.url)
        assert framed.value.status == 200  # the master answered; the browser would not show it
        own = page.frame_locator("#own")
        expect(own.locator("#own-text")).to_have_text("framed fine")  # framing itself works
        frame = page.locator("#master").element_handle()
        assert frame is not None
        content = frame.content_frame()
        assert content is not None
        wait_until(lambda: content.url != site.base + "/" or None, 10, "the refusal")
        assert not content.url.startswith(site.base)
        assert content.locator("a.brand").count() == 0
        shot(page, "framed-refused")
        assert any("frame-ancestors" in text or "X-Frame-Options" in text for text in console), (
            console
        )
    finally:
        framing.stop()


def test_every_answer_carries_the_security_headers(sites: Callable[..., Site]) -> None:
    site = sites("-auth", "always")
    job = site.task_with_a_finished_job()
    token = {"Authorization": f"Bearer {site.admin}"}
    html = {"Accept": "text/html"}
    answers = {
        "login page": fetch(site.base + "/", headers=html),
        "401 JSON": fetch(site.base + "/"),
        "JSON": fetch(site.base + "/projects/p", headers=token),
        "dashboard": fetch(site.base + "/", headers={**token, **html}),
        "job page": fetch(f"{site.base}/jobs/{job}", headers={**token, **html}),
        "404 page": fetch(site.base + "/nothing", headers={**token, **html}),
        "raw output": fetch(f"{site.base}/jobs/{job}/output", headers=token),
        "stylesheet": fetch(site.base + "/static/asphalt.css"),
    }
    assert {name: a[0] for name, a in answers.items()} == {
        "login page": 401,
        "401 JSON": 401,
        "JSON": 200,
        "dashboard": 200,
        "job page": 200,
        "404 page": 404,
        "raw output": 200,
        "stylesheet": 200,
    }
    for name, (_, headers, _) in answers.items():
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        if name in ("401 JSON", "JSON"):
            continue  # JSON is not shown as a page: nosniff is what it needs
        csp = headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, (name, headers)
        assert "unsafe-inline" not in csp, name
        assert headers.get("X-Frame-Options") == "DENY", name
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert headers.get("Referrer-Policy") == "same-origin", name


class Scripts(HTMLParser):
    """What a page holds that a CSP without 'unsafe-inline' would refuse to run."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in named
        for name, value in attrs:
            if name.startswith("on"):
                self.inline.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.inline.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline.append(f"<script>{data[:60]}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "script":
            self._in_script = False


def test_no_page_holds_an_inline_script_and_chromium_reports_no_csp_refusal(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-auth", "always")
    job = site.task_with_a_finished_job()
    pages = ["/", "/projects/p", "/projects/p/tasks/t", f"/jobs/{job}", "/workers", "/tokens"]
    token = {"Authorization": f"Bearer {site.admin}", "Accept": "text/html"}
    for path in pages:
        status, _, text = fetch(site.base + path, headers=token)
        assert status == 200, (path, status)
        scripts = Scripts()
        scripts.feed(text)
        assert scripts.inline == [], path
        assert "<script" in text, path  # the scan saw the page's own (external) script
    status, _, text = fetch(site.base + "/projects/p", headers={"Accept": "text/html"})
    assert status == 401 and 'name="token"' in text  # the login page
    scripts = Scripts()
    scripts.feed(text)
    assert scripts.inline == [], "login page"

    context = contexts()
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(site.base + "/")
    sign_in(page, site.admin)
    for path in pages:
        page.goto(site.base + path)
        page.wait_for_load_state("load")
    assert refused == []


def test_with_auth_off_every_page_warns_that_anyone_may_run_commands(
    sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-auth", "off")
    job = site.task_with_a_finished_job()
    page = contexts().new_page()
    for path in ["/", "/projects/p", "/projects/p/tasks/t", f"/jobs/{job}", "/workers", "/tokens"]:
        page.goto(site.base + path)
        expect(page.locator(".banner.auth-off")).to_contain_text("Authentication is off")
    shot(page, "auth-off-tokens")


@pytest.mark.parametrize("path", ["/login", "/nothing/here"], ids=["login", "not-found"])
def test_with_auth_off_the_login_and_not_found_pages_warn_too(
    path: str, sites: Callable[..., Site], contexts: Callable[[], BrowserContext]
) -> None:
    site = sites("-auth", "off", "-no-worker")
    page = contexts().new_page()
    page.goto(site.base + path)
    expect(page.locator("h1")).to_have_text("Sign in" if path == "/login" else "Not here")
    shot(page, f"auth-off-{path.strip('/').replace('/', '-')}")
    expect(page.locator(".banner.auth-off")).to_contain_text("Authentication is off")
