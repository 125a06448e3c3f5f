"""A task's jobs as a graph (issue 10's first, pure step): job names, `needs` and `when`; the
checks a graph must pass (names, unknown needs, cycles, size); the graph the four old roles
always were; and the rule that decides, once a job's needs have ended, whether it runs.

Nothing here stores, schedules or imports more than the standard library and the error tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from asphalt.errors import BadRequest

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_RULE = "1-64 letters, digits, '_' or '-'"
MAX_JOBS = 1000
ROLES = ("main", "success", "failure", "after")
# The ends of a job that count as "something failed" for a `when: failure` job. A skipped job
# did not fail: a failure handler runs because something broke, not because nothing ran.
FAILED = frozenset({"failed", "timed_out", "cancelled", "lost"})


class When(StrEnum):
    SUCCESS = "success"  # every job it needs succeeded
    FAILURE = "failure"  # at least one job it needs failed
    ALWAYS = "always"  # in any case, once they have all ended


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One job's place in its task's graph."""

    needs: tuple[str, ...] = ()
    when: When = When.SUCCESS


def roles_as_graph(names: Iterable[str]) -> dict[str, Node]:
    """The graph the four roles always were, for the role-named jobs among `names`: `success`
    and `failure` need `main` (when success, when failure), `after` needs every other job of the
    task and runs always. Jobs with other names are not in the result."""
    given = list(dict.fromkeys(names))
    graph: dict[str, Node] = {}
    if "main" in given:
        graph["main"] = Node()
    if "success" in given:
        graph["success"] = Node(needs=("main",), when=When.SUCCESS)
    if "failure" in given:
        graph["failure"] = Node(needs=("main",), when=When.FAILURE)
    if "after" in given:
        others = [role for role in ROLES if role in given and role != "after"]
        others += [name for name in given if name not in ROLES]
        graph["after"] = Node(needs=tuple(others), when=When.ALWAYS)
    return graph


def check(nodes: Mapping[str, Node], *, existing: Mapping[str, Node] | None = None) -> None:
    """Refuse, naming the field, a graph that cannot run: a bad name, a need that names no job,
    a cycle, too many jobs. `existing` are jobs already in the task (jobs added while it runs
    may need them)."""
    known = {**(existing or {}), **nodes}
    if len(known) > MAX_JOBS:
        raise BadRequest(f"a task has at most {MAX_JOBS} jobs; this one would have {len(known)}")
    for name, node in nodes.items():
        if not NAME_RE.fullmatch(name):
            raise BadRequest(f"job name {name!r} must be {NAME_RULE}", field=f"jobs.{name}")
        for need in node.needs:
            if need not in known:
                raise BadRequest(
                    f"jobs.{name}.needs names {need!r}, which is no job of this task",
                    field=f"jobs.{name}.needs",
                )
    loop = cycle(known)
    if loop is not None:
        raise BadRequest(
            f"jobs.{loop[0]}.needs makes a cycle: {' -> '.join([*loop, loop[0]])}; "
            "a job cannot wait for itself",
            field=f"jobs.{loop[0]}.needs",
        )


def cycle(nodes: Mapping[str, Node]) -> list[str] | None:
    """The jobs of one cycle, in order (each needs the next), or None if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    adjacent = {name: [n for n in node.needs if n in nodes] for name, node in nodes.items()}
    for start in nodes:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            name, index = stack.pop()
            if index == 0:
                state[name] = 1
                path.append(name)
            needs = adjacent[name]
            if index < len(needs):
                stack.append((name, index + 1))
                need = needs[index]
                if state.get(need) == 1:
                    return path[path.index(need) :]
                if not state.get(need):
                    stack.append((need, 0))
            else:
                state[name] = 2
                path.pop()
    return None


def depths(nodes: Mapping[str, Node]) -> dict[str, int]:
    """Each job's column for drawing: 0 for jobs that need none, else one past its deepest need.
    The graph must have passed `check`."""
    found: dict[str, int] = {}
    for start in nodes:
        stack = [start]
        while stack:  # no recursion: a chain of a thousand jobs is fine
            name = stack[-1]
            if name in found:
                stack.pop()
                continue
            waiting = [n for n in nodes[name].needs if n in nodes and n not in found]
            if waiting:
                stack.extend(waiting)
                continue
            needs = [found[n] for n in nodes[name].needs if n in nodes]
            found[name] = 1 + max(needs, default=-1)
            stack.pop()
    return found


def downstream(nodes: Mapping[str, Node], name: str) -> list[str]:
    """Every job that needs `name`, directly or not (what a rerun of it runs again)."""
    needed_by: dict[str, list[str]] = {}
    for other, node in nodes.items():
        for need in node.needs:
            needed_by.setdefault(need, []).append(other)
    seen: list[str] = []
    todo = list(needed_by.get(name, ()))
    while todo:
        other = todo.pop(0)
        if other not in seen:
            seen.append(other)
            todo.extend(needed_by.get(other, ()))
    return seen


def decide(node: Node, ended: Mapping[str, str]) -> str | None:
    """Once every job `node` needs has ended (`ended`: need -> its end state), None if it runs,
    else the reason it is skipped, naming the job that decided it."""
    states = [(need, ended[need]) for need in node.needs]
    if node.when is When.ALWAYS:
        return None
    if node.when is When.SUCCESS:
        for need, state in states:
            if state != "succeeded":
                return f"{need} ended {state}; this job runs only when all it needs succeed"
        return None
    if any(state in FAILED for _, state in states):
        return None
    summary = ", ".join(f"{need} {state}" for need, state in states) or "it needs no job"
    return f"nothing it needs failed ({summary}); this job runs only on a failure"


def outcome(states: Iterable[str], *, cancelled: bool) -> str:
    """A run's outcome once complete: cancelled by a person, failed if any job that ran did not
    succeed, else succeeded."""
    if cancelled:
        return "cancelled"
    return "failed" if any(s in FAILED for s in states) else "succeeded"
