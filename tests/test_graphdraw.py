"""The task page's drawing of a task's graph (asphalt/web/graphdraw.py), from plain job views."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from asphalt.web import graphdraw

SVG = "{http://www.w3.org/2000/svg}"


def job(
    state: str = "succeeded", needs: list[str] | None = None, when: str = "success"
) -> dict[str, Any]:
    view: dict[str, Any] = {"state": state, "when": when, "needs": needs or []}
    return view


def views(**jobs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Job views as a task view holds them: name -> view, each with its name and an id."""
    return {name: {"id": f"id-{name}", "name": name, **view} for name, view in jobs.items()}


def diamond() -> dict[str, dict[str, Any]]:
    return views(
        a=job(),
        b=job(needs=["a"]),
        c=job("failed", needs=["a"]),
        d=job(needs=["b", "c"], when="always"),
    )


def parsed(jobs: dict[str, dict[str, Any]]) -> ET.Element:
    return ET.fromstring(str(graphdraw.svg(graphdraw.layout(jobs))))


def test_a_diamond_draws_in_three_columns_by_depth() -> None:
    drawn = graphdraw.layout(diamond())
    assert {name: box.column for name, box in drawn.boxes.items()} == {
        "a": 0,
        "b": 1,
        "c": 1,
        "d": 2,
    }
    a, b, c, d = (drawn.boxes[n] for n in "abcd")
    assert a.x < b.x == c.x < d.x
    assert b.y < c.y  # the map's order within a column
    assert a.y == d.y == (b.y + c.y) / 2  # a small graph's columns are centred on each other
    assert drawn.columns == 3 and drawn.edges == 4 and drawn.omitted == 0


def test_each_need_is_an_arrow_and_a_job_that_is_not_success_says_its_when() -> None:
    root = parsed(diamond())
    groups = {g.get("data-to"): g for g in root.iter(f"{SVG}g") if g.get("data-to")}
    assert set(groups) == {"b", "c", "d"}
    into_d = [p.get("data-from") for p in groups["d"].iter(f"{SVG}path")]
    assert into_d == ["b", "c"]
    assert [t.text for t in groups["d"].iter(f"{SVG}text")] == ["always"]
    assert "w-always" in (groups["d"].get("class") or "")
    assert not list(groups["b"].iter(f"{SVG}text"))  # success is what an arrow means unlabelled
    for path in root.iter(f"{SVG}path"):
        if path.get("class") == "edge":
            assert path.get("marker-end", "").startswith("url(#graph-arrow-")


def test_a_failure_job_is_labelled_and_a_skipped_ones_arrows_are_dimmed() -> None:
    jobs = views(build=job(), alert=job("skipped", needs=["build"], when="failure"))
    group = next(g for g in parsed(jobs).iter(f"{SVG}g") if g.get("data-to") == "alert")
    assert group.get("class") == "in w-failure dim"
    assert [t.text for t in group.iter(f"{SVG}text")] == ["failure"]


def test_boxes_link_to_their_job_are_coloured_by_state_and_titled() -> None:
    root = parsed(diamond())
    boxes = {a.get("data-name"): a for a in root.iter(f"{SVG}a")}
    assert boxes["c"].get("href") == "/jobs/id-c"
    assert boxes["c"].get("class") == "box s-failed"
    title = boxes["d"].find(f"{SVG}title")
    assert title is not None and title.text == "d: succeeded · needs b, c · when always"
    assert root.get("role") == "img" and "4 jobs in 3 columns" in (root.get("aria-label") or "")
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"


def test_every_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    jobs = {evil: {"id": '"><img src=x>', "state": "failed&<", "needs": [], "when": "success"}}
    markup = str(graphdraw.svg(graphdraw.layout(jobs)))
    assert "<script>" not in markup and "<img" not in markup
    root = ET.fromstring(markup)  # still one well-formed element
    link = next(root.iter(f"{SVG}a"))
    assert link.get("data-name") == evil and link.get("href") == '/jobs/"><img src=x>'
    assert link.get("class") == "box s-failed&<"


def test_a_long_name_is_shortened_in_its_box_and_whole_in_its_title() -> None:
    name = "x" * 64
    root = parsed(views(**{name: job()}))
    texts = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "name"]
    assert texts == ["x" * (graphdraw.NAME_CHARS - 1) + "…"]
    title = next(root.iter(f"{SVG}a")).find(f"{SVG}title")
    assert title is not None and (title.text or "").startswith(name + ":")


def test_the_four_roles_are_not_drawn_and_keep_their_old_order() -> None:
    old = views(
        after=job(needs=["main", "success", "failure"], when="always"),
        failure=job("skipped", needs=["main"], when="failure"),
        success=job(needs=["main"]),
        main=job(),
    )
    assert not graphdraw.is_graph(old)
    assert graphdraw.order(old) == ["main", "success", "failure", "after"]
    # A master that does not yet say needs and when: the roles stand for the graph they were.
    bare = {name: {"id": name, "state": "queued"} for name in ("failure", "main", "after")}
    assert not graphdraw.is_graph(bare)
    assert graphdraw.order(bare) == ["main", "failure", "after"]
    assert graphdraw.layout(bare).boxes["after"].column == 2


def test_a_task_is_drawn_when_it_is_more_than_the_roles() -> None:
    assert graphdraw.is_graph(diamond())
    assert graphdraw.is_graph(views(main=job(), lint=job()))
    assert graphdraw.is_graph(views(main=job(), success=job(needs=["main"], when="always")))
    assert graphdraw.is_graph(views(main=job(), success=job()))  # a success that needs nothing


def test_needs_that_name_no_job_and_cycles_still_draw() -> None:
    lonely = graphdraw.layout(views(a=job(needs=["gone"])))
    assert lonely.boxes["a"].column == 0 and lonely.edges == 0
    looped = graphdraw.layout(views(a=job(needs=["b"]), b=job(needs=["a"])))
    assert {box.column for box in looped.boxes.values()} == {0}
    ET.fromstring(str(graphdraw.svg(looped)))


def test_a_thousand_jobs_in_a_chain_a_fan_and_a_mesh_draw_in_bounded_markup() -> None:
    chain = views(**{f"j{i}": job(needs=[f"j{i - 1}"] if i else []) for i in range(1000)})
    drawn = graphdraw.layout(chain)
    assert drawn.columns == 1000 and drawn.boxes["j999"].column == 999
    assert len(str(graphdraw.svg(drawn))) < 1_000_000

    fan = views(root=job(), **{f"leaf{i}": job(needs=["root"]) for i in range(999)})
    drawn = graphdraw.layout(fan)
    assert drawn.columns == 2 and drawn.boxes["root"].y == graphdraw.PAD  # not centred so far down
    assert len(list(parsed(fan).iter(f"{SVG}a"))) == 1000
    assert parsed(fan).get("class") == "graph plain"  # solid arrows: dashes cost per dash
    assert parsed(diamond()).get("class") == "graph"

    # Each job needs every one before it: half a million needs, a bounded number of arrows.
    mesh = views(**{f"m{i}": job(needs=[f"m{k}" for k in range(i)]) for i in range(1000)})
    drawn = graphdraw.layout(mesh)
    assert drawn.edges == graphdraw.MAX_EDGES and drawn.omitted == 1000 * 999 // 2 - drawn.edges
    root = ET.fromstring(str(graphdraw.svg(drawn)))
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(edges) == graphdraw.MAX_EDGES
    assert "arrows are not drawn" in (root.get("aria-label") or "")
