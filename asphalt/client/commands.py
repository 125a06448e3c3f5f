"""The client's subcommands and their flags (Go style, as the server's): each prints for people
by default and JSON with -json; a refused call is one line and exit 1, bad usage exit 2."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from asphalt.client import run as running
from asphalt.client.api import Api, CallFailed, base_url, store

JOB_ID = re.compile(r"^[0-9a-f]{16}$")  # a job's id; a task's is anything else


def _parser(name: str, usage: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"asphalt {name}", usage=usage, allow_abbrev=False)
    for flag, help_ in (
        ("master", "HOST:PORT of the master (or ASPHALT_MASTER; this box's by default)"),
        ("token", "an API token (or ASPHALT_TOKEN, or what `asphalt login` stored)"),
    ):
        p.add_argument(f"-{flag}", f"--{flag}", help=help_)
    p.add_argument("-json", "--json", action="store_true", help="print JSON, for scripts")
    return p


def _api(args: argparse.Namespace) -> Api:
    return Api.find(args.master, args.token)


def _print(args: argparse.Namespace, value: Any, human: Callable[[Any], str]) -> None:
    print(json.dumps(value, indent=2) if args.json else human(value))


def cmd_run(argv: Sequence[str]) -> int:
    p = _parser(
        "run",
        "asphalt run [-project P] [-container IMAGE] [-types T] [-env K=V] "
        "[-timeout S] [-detach] -- CMD ARGS...",
    )
    p.add_argument("-project", "--project", default="default")
    p.add_argument("-container", "--container")
    p.add_argument("-types", "--types", default="")
    p.add_argument("-env", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-timeout", "--timeout", type=float)
    p.add_argument("-detach", "--detach", action="store_true")
    p.add_argument("-f", "--file", metavar="TASK.json", help="run a whole task or graph file")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.file:
        return _run_file(args, p)
    if not command:
        p.error("give the command after --, e.g. asphalt run -- make test")
    body: dict[str, Any] = {"action": command}
    if args.container:
        body["container"] = args.container
    if args.types:
        body["types"] = [t for t in args.types.split(",") if t]
    if args.timeout is not None:
        body["timeout"] = args.timeout
    env = dict(pair.split("=", 1) for pair in args.env if "=" in pair)
    if len(env) != len(args.env):
        p.error("-env takes NAME=value")
    if env:
        body["env"] = env
    api = _api(args)
    with running.cancelled_early(api, args.project, body):
        task = running.submit(api, args.project, body)
        if args.detach:
            _print(args, task, lambda t: str(t["id"]))
            return 0
        return running.follow(api, args.project, task["id"], task["jobs"]["main"]["id"])


def _run_file(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    try:
        body = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as e:
        p.error(f"-f {args.file}: {e}")
    api = _api(args)
    if not isinstance(body, dict):
        p.error(f"-f {args.file}: a task is a JSON object")
    with running.cancelled_early(api, args.project, body):
        task = running.submit(api, args.project, body)
        if args.detach:
            _print(args, task, lambda t: str(t["id"]))
            return 0
        return running.follow_task(api, args.project, task)


def cmd_logs(argv: Sequence[str]) -> int:
    p = _parser("logs", "asphalt logs [-f] JOB")
    p.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    p.add_argument("job")
    args = p.parse_args(argv)
    path = f"/jobs/{quote(args.job)}/output" + ("?follow=1" if args.follow else "")
    for chunk in _api(args).stream(path):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    seconds = max(time.time() - _stamp(stamp), 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_COLOURS = {
    "succeeded": "32",
    "failed": "31",
    "timed_out": "31",
    "lost": "31",
    "running": "34",
    "cancelled": "33",
    "live": "32",
    "gone": "90",
}


def _table(rows: list[list[str]]) -> str:
    """Aligned columns; on a terminal, states in colour (plain when piped)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if sys.stdout.isatty():
        return "\n".join(
            "  ".join(_coloured(c, w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        )
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _coloured(cell: str, width: int) -> str:
    code = _COLOURS.get(cell)
    return f"\033[{code}m{cell}\033[0m{' ' * (width - len(cell))}" if code else cell.ljust(width)


def cmd_ls(argv: Sequence[str]) -> int:
    p = _parser("ls", "asphalt ls [PROJECT]")
    p.add_argument("project", nargs="?")
    args = p.parse_args(argv)
    api = _api(args)
    if args.project is None:
        found = api.call("GET", "/")
        rows = [["PROJECT", "ID", "CREATED"]] + [
            [x["name"], x["id"], _age(x["createdAt"])] for x in found["projects"]
        ]
        _print(args, found, lambda _: _table(rows))
        return 0
    found = api.call("GET", f"/projects/{quote(args.project)}")
    rows = [["TASK", "STATUS", "OUTCOME", "JOBS", "AGE", "DURATION"]]
    for t in found["tasks"]:
        took = "-"
        if t.get("startedAt") and t.get("endedAt"):
            took = f"{_stamp(t['endedAt']) - _stamp(t['startedAt']):.1f}s"
        rows.append(
            [
                t["id"],
                t["status"],
                t["outcome"] or "-",
                str(len(t["jobs"])),
                _age(t["createdAt"]),
                took,
            ]
        )
    _print(args, found, lambda _: _table(rows))
    return 0


def _target(api: Api, project: str, ref: str) -> tuple[str, dict[str, Any]]:
    """("job", its view) or ("task", its view) for what the user named."""
    if JOB_ID.fullmatch(ref):
        found = api.call("GET", f"/jobs/{ref}", ok=(404,))
        if isinstance(found, dict) and "id" in found:
            return "job", found
    task: dict[str, Any] = api.call("GET", f"/projects/{quote(project)}/tasks/{quote(ref)}")
    return "task", task


def _ref_parser(name: str) -> argparse.ArgumentParser:
    p = _parser(name, f"asphalt {name} [-project P] TASK|JOB")
    p.add_argument("-project", "--project", default="default")
    p.add_argument("ref", metavar="TASK|JOB")
    return p


def _summary(kind: str, view: dict[str, Any]) -> str:
    if kind == "job":
        lines = [f"job {view['id']} ({view['name']} of task {view['task']}): {view['state']}"]
        if view.get("status") is not None:
            lines.append(f"exit {view['status']}")
        if view.get("reason"):
            lines.append(f"reason: {view['reason']}")
        return "\n".join(lines)
    rows = [["JOB", "ID", "STATE", "EXIT", "REASON"]] + [
        [
            name,
            j["id"],
            j["state"],
            "-" if j["status"] is None else str(j["status"]),
            j.get("reason") or "",
        ]
        for name, j in view["jobs"].items()
    ]
    head = f"task {view['id']} run {view['run']}: {view['status']} {view['outcome'] or ''}".rstrip()
    return head + "\n" + _table(rows)


def cmd_show(argv: Sequence[str]) -> int:
    args = _ref_parser("show").parse_args(argv)
    kind, view = _target(_api(args), args.project, args.ref)
    _print(args, view, lambda v: _summary(kind, v))
    return 0


def _act(name: str, argv: Sequence[str]) -> int:
    args = _ref_parser(name).parse_args(argv)
    api = _api(args)
    kind, view = _target(api, args.project, args.ref)
    if kind == "job":
        path = (
            f"/jobs/{view['id']}/{name}"
            if name == "rerun"
            else (f"/projects/{quote(view['project'])}/tasks/{quote(view['task'])}/cancel")
        )
    else:
        path = f"/projects/{quote(view['project'])}/tasks/{quote(view['id'])}/{name}"
    done = api.call("POST", path, {})
    _print(
        args,
        done,
        lambda v: f"{name}: {v.get('id')} {v.get('status') or v.get('state') or ''}".rstrip(),
    )
    return 0


def cmd_workers(argv: Sequence[str]) -> int:
    args = _parser("workers", "asphalt workers").parse_args(argv)
    found = _api(args).call("GET", "/workers")
    rows = [["NAME", "ID", "STATE", "TYPES", "RUNTIMES", "RUNNING", "SLOTS"]] + [
        [
            w["name"],
            w["id"],
            w["state"],
            ",".join(w["types"]) or "-",
            ",".join(w["runtimes"]),
            str(len(w["running"])),
            str(w["slots"]),
        ]
        for w in found["workers"]
    ]
    _print(args, found, lambda _: _table(rows))
    return 0


def cmd_tokens(argv: Sequence[str]) -> int:
    p = _parser(
        "tokens", "asphalt tokens [list | create NAME [-scope S] [-projects a,b] | revoke ID]"
    )
    p.add_argument("-scope", "--scope", default="read", choices=("read", "submit", "admin"))
    p.add_argument("-projects", "--projects", default="")
    p.add_argument("what", nargs="*", default=["list"])
    args = p.parse_args(argv)
    api = _api(args)
    verb, rest = args.what[0], args.what[1:]
    if verb == "list" and not rest:
        found = api.call("GET", "/tokens")
        rows = [["NAME", "ID", "SCOPE", "PROJECTS", "LAST USED"]] + [
            [t["name"], t["id"], t["scope"], ",".join(t["projects"]) or "all", t["lastUsed"] or "-"]
            for t in found["tokens"]
        ]
        _print(args, found, lambda _: _table(rows))
        return 0
    if verb == "create" and len(rest) == 1:
        projects = [x for x in args.projects.split(",") if x]
        made = api.call(
            "POST", "/tokens", {"name": rest[0], "scope": args.scope, "projects": projects}
        )
        _print(args, made, lambda t: f"{t['token']}\n(shown this once; scope {t['scope']})")
        return 0
    if verb == "revoke" and len(rest) == 1:
        api.call("DELETE", f"/tokens/{quote(rest[0])}")
        print(f"revoked {rest[0]}")
        return 0
    p.error("give list, create NAME or revoke ID")
    return 2


def cmd_login(argv: Sequence[str]) -> int:
    p = _parser("login", "asphalt login [-token TOKEN] HOST:PORT")
    p.add_argument("where", metavar="HOST:PORT")
    args = p.parse_args(argv)
    token = args.token or getpass.getpass("token: ")
    Api(base_url(args.where), token).call("GET", "/")  # refused: nothing stored
    path = store(args.where, token)
    print(f"logged in to {args.where}; kept in {path}")
    return 0


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": cmd_run,
    "logs": cmd_logs,
    "ls": cmd_ls,
    "show": cmd_show,
    "rerun": lambda argv: _act("rerun", argv),
    "cancel": lambda argv: _act("cancel", argv),
    "workers": cmd_workers,
    "tokens": cmd_tokens,
    "login": cmd_login,
}


def main(name: str, argv: Sequence[str]) -> int:
    try:
        return SUBCOMMANDS[name](argv)
    except CallFailed as e:
        print(f"asphalt: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return running.EXIT_CANCELLED
