"""A task's graph of jobs drawn as inline SVG for its page: a column per depth, a box per job
coloured by state and linking to it, an arrow from each need to the job that needs it, marked
with the job's `when` unless it is `success`.

Pure: it reads the `jobs` map of a task view (name -> job view) and returns markup, built in one
pass over jobs and needs. Every text is escaped here, because the result is inserted unescaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from asphalt.model.graph import ROLES, Node, When, roles_as_graph

BOX_W = 156
BOX_H = 40
GAP_X = 64  # room between columns for the arrows and their `when` labels
GAP_Y = 14
PAD = 12
NAME_CHARS = 19  # what fits in a box at the name's font size; the box's title has the rest
# Columns are centred on the tallest one while that stays on a screen or two; beyond, a lone
# job would sit thousands of pixels down, out of sight, so columns start at the top.
CENTRE_UP_TO = 24
# The drawing stays a bounded size whatever a task holds: 1,000 jobs could need each other in
# half a million pairs. Past this many arrows the rest are left out, and the figure says so.
MAX_EDGES = 4000
TITLE_NEEDS = 12  # needs named in a box's title; the job's section lists them all
# Dashed arrows (how `failure` and `always` show without colour) cost a browser per dash: a
# thousand arrows fanning into one job took Chromium seconds to paint. Past this many pixels of
# arrows in all, they are solid, and colour and labels alone tell the `when`.
DASHED_UP_TO = 200_000

JobViews = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    """One job's place in the drawing (x, y: its top left corner)."""

    name: str
    job_id: str
    state: str
    node: Node
    column: int
    x: float
    y: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Every job's box, in reading order (column by column, top to bottom), and the size."""

    boxes: dict[str, Box]
    columns: int
    width: float
    height: float
    edges: int  # the arrows drawn
    omitted: int  # the arrows left out past MAX_EDGES


def nodes(jobs: JobViews) -> dict[str, Node]:
    """Each job's needs and `when` as its view gives them; a view without them (an old-style
    task seen by a master that does not say) gets what its role stands for. Needs naming no job
    of the map are dropped: a drawing shows what is there."""
    shorthand = roles_as_graph(jobs)
    found: dict[str, Node] = {}
    for name, view in jobs.items():
        implied = shorthand.get(name, Node())
        needs = view.get("needs")
        given = implied.needs if needs is None else tuple(str(n) for n in needs)
        found[name] = Node(
            needs=tuple(dict.fromkeys(n for n in given if n in jobs and n != name)),
            when=_when(view.get("when"), implied.when),
        )
    return found


def _when(value: object, default: When) -> When:
    try:
        return When(str(value)) if value is not None else default
    except ValueError:
        return default


def is_graph(jobs: JobViews) -> bool:
    """Whether the page draws the graph: only when the task is more than the four roles (a job
    with another name, or a role whose needs or `when` are not what the role stands for). A task
    written the old way keeps the page it always had."""
    if any(name not in ROLES for name in jobs):
        return True
    shorthand = roles_as_graph(jobs)
    for name, node in nodes(jobs).items():
        implied = shorthand.get(name, Node())
        if set(node.needs) != set(implied.needs) or node.when is not implied.when:
            return True
    return False


def layout(jobs: JobViews) -> Layout:
    """Columns by depth (0: needs nothing); within a column, jobs sit near the mean height of
    what they need (fewer crossings), then the roles in their old order, then the map's order."""
    graph = nodes(jobs)
    column_of = columns_by_depth(graph)
    rank = {
        name: (ROLES.index(name) if name in ROLES else len(ROLES), i) for i, name in enumerate(jobs)
    }
    columns: list[list[str]] = [[] for _ in range(max(column_of.values(), default=-1) + 1)]
    for name in graph:
        columns[column_of[name]].append(name)
    tallest = max((len(c) for c in columns), default=0)
    pitch = BOX_H + GAP_Y
    middle: dict[str, float] = {}  # each placed job's vertical centre
    boxes: dict[str, Box] = {}

    def key(name: str) -> tuple[float, tuple[int, int]]:
        above = [middle[n] for n in graph[name].needs if n in middle]
        return (sum(above) / len(above) if above else 0.0, rank[name])

    for index, column in enumerate(columns):
        top = PAD + ((tallest - len(column)) * pitch / 2 if tallest <= CENTRE_UP_TO else 0)
        for row, name in enumerate(sorted(column, key=key)):
            view = jobs[name]
            y = top + row * pitch
            middle[name] = y + BOX_H / 2
            boxes[name] = Box(
                name=name,
                job_id=str(view.get("id", "")),
                state=str(view.get("state", "queued")),
                node=graph[name],
                column=index,
                x=PAD + index * (BOX_W + GAP_X),
                y=y,
            )
    total = sum(len(node.needs) for node in graph.values())
    drawn = min(total, MAX_EDGES)
    return Layout(
        boxes=boxes,
        columns=len(columns),
        width=2 * PAD + len(columns) * BOX_W + max(len(columns) - 1, 0) * GAP_X,
        height=2 * PAD + tallest * BOX_H + max(tallest - 1, 0) * GAP_Y,
        edges=drawn,
        omitted=total - drawn,
    )


def columns_by_depth(graph: Mapping[str, Node]) -> dict[str, int]:
    """Each job's column: 0 if it needs nothing, else one past its deepest need (the rule of
    `asphalt.model.graph.depths`), found without recursion and in one pass over the needs, so a
    chain or a mesh of a thousand jobs costs what it holds. The master refuses cycles; should one
    reach a page anyway, its jobs go in column 0 rather than fail the page."""
    waiting = {name: len(node.needs) for name, node in graph.items()}
    needed_by: dict[str, list[str]] = {name: [] for name in graph}
    for name, node in graph.items():
        for need in node.needs:
            needed_by[need].append(name)
    found = dict.fromkeys(graph, 0)
    ready = [name for name, count in waiting.items() if count == 0]
    while ready:
        name = ready.pop()
        for later in needed_by[name]:
            found[later] = max(found[later], found[name] + 1)
            waiting[later] -= 1
            if waiting[later] == 0:
                ready.append(later)
    for name, count in waiting.items():
        if count:
            found[name] = 0
    return found


def order(jobs: JobViews) -> list[str]:
    """The job names in the drawing's reading order; for the four roles: main, success,
    failure, after, as their page always showed them."""
    return list(layout(jobs).boxes)


def svg(drawn: Layout, *, label: str = "Graph of the task's jobs") -> Markup:
    """The drawing as one <svg> element, escaped throughout, to place in a page as it is."""
    summary = (
        f"{label}: {len(drawn.boxes)} jobs in {drawn.columns} columns by depth, "
        "each job drawn after what it needs"
    )
    if drawn.omitted:
        summary += f"; {drawn.omitted} of {drawn.edges + drawn.omitted} arrows are not drawn"
    width, height = _n(drawn.width), _n(drawn.height)
    edges, ink = _edges(drawn)
    plain = " plain" if ink > DASHED_UP_TO else ""
    parts = [
        f'<svg class="graph{plain}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="{escape(summary)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-columns="{drawn.columns}">',
        f"<title>{escape(summary)}</title>",
        _MARKERS,
    ]
    parts.extend(edges)
    parts.extend(_box(box) for box in drawn.boxes.values())
    parts.append("</svg>")
    return Markup("".join(parts))


_MARKERS = (
    "<defs>"
    + "".join(
        f'<marker id="graph-arrow-{w}" class="w-{w}" viewBox="0 0 8 8" refX="7" refY="4" '
        'markerWidth="6" markerHeight="6" orient="auto"><path d="M0 0L8 4L0 8z"/></marker>'
        for w in When
    )
    + "</defs>"
)


def _edges(drawn: Layout) -> tuple[list[str], float]:
    """Each job's incoming arrows as one group, labelled once with its `when` where they meet
    (a job has one `when`, so every arrow into it shares it); and about how long they are."""
    parts: list[str] = []
    ink = 0.0
    budget = drawn.edges
    boxes = drawn.boxes
    for box in boxes.values():
        needs = box.node.needs[:budget]
        if not needs:
            continue
        budget -= len(needs)
        when = box.node.when.value
        dim = " dim" if box.state == "skipped" else ""
        x2, y2 = box.x - 1, box.y + BOX_H / 2
        parts.append(f'<g class="in w-{when}{dim}" data-to="{escape(box.name)}">')
        for need in needs:
            start = boxes[need]
            x1, y1 = start.x + BOX_W, start.y + BOX_H / 2
            bend = max((x2 - x1) / 2, GAP_X / 2)
            ink += abs(x2 - x1) + abs(y2 - y1)
            parts.append(
                f'<path class="edge" data-from="{escape(need)}" '
                f'd="M{_n(x1)} {_n(y1)}C{_n(x1 + bend)} {_n(y1)} {_n(x2 - bend)} {_n(y2)} '
                f'{_n(x2)} {_n(y2)}" marker-end="url(#graph-arrow-{when})"/>'
            )
        if when != When.SUCCESS:
            parts.append(
                f'<text class="when" x="{_n(x2 - 8)}" y="{_n(y2 - 6)}" text-anchor="end">'
                f"{when}</text>"
            )
        parts.append("</g>")
    return parts, ink


def _box(box: Box) -> str:
    """A job's box: a link to its page, its name (shortened to fit) and state, and a title
    with the whole of both."""
    shown = box.name if len(box.name) <= NAME_CHARS else box.name[: NAME_CHARS - 1] + "…"
    state = box.state.replace("_", " ")
    title = f"{box.name}: {state}"
    if box.node.needs:
        named = ", ".join(box.node.needs[:TITLE_NEEDS])
        more = len(box.node.needs) - TITLE_NEEDS
        title += f" · needs {named}" + (f" and {more} more" if more > 0 else "")
        if box.node.when is not When.SUCCESS:
            title += f" · when {box.node.when.value}"
    x, y = _n(box.x), _n(box.y)
    return (
        f'<a class="box s-{escape(box.state)}" href="/jobs/{escape(box.job_id)}" '
        f'data-name="{escape(box.name)}" tabindex="-1">'
        f"<title>{escape(title)}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
        f'<text class="name" x="{_n(box.x + 10)}" y="{_n(box.y + 17)}">{escape(shown)}</text>'
        f'<text class="state" x="{_n(box.x + 10)}" y="{_n(box.y + 32)}">{escape(state)}</text>'
        "</a>"
    )


def _n(value: float) -> str:
    """A coordinate without a trailing `.0` (the markup stays short for a thousand jobs)."""
    return f"{value:.1f}".removesuffix(".0")
