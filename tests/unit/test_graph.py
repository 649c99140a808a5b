"""TargetGraph on hand-made nodes: topological order, selection, cycles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, Node
from orchestrator.errors import CycleError, NothingMatchedError, UnknownTargetError
from orchestrator.graph import query
from orchestrator.graph.graph import NodeDeps, ParentRef, TargetGraph
from tests.workspaces import ScratchWorkspace

PLATFORM = "linux/amd64"


def target(label: Label) -> ImageTarget:
    return ImageTarget(
        label=label,
        dockerfile=f"{label.package}/Dockerfile",
        context=label.package,
        srcs=None,
        repository=label.name,
        tags=("latest",),
        build_args=(),
        target=None,
        platforms=None,
        labels=(),
        base=None,
        hermetic=None,
        build_file=f"{label.package}/BUILD",
    )


def make_graph(edges: list[tuple[int, int]], count: int) -> TargetGraph:
    labels = [Label(f"p{i % 3}", f"t{i}") for i in range(count)]
    parents: dict[int, list[int]] = {i: [] for i in range(count)}
    for parent, child in edges:
        parents[child].append(parent)
    deps = {
        Node(labels[i], PLATFORM): NodeDeps(
            parents=tuple(
                ParentRef(reference=f"t{p}", line=1, kind="from", node=Node(labels[p], PLATFORM)) for p in parents[i]
            ),
            externals=(),
        )
        for i in range(count)
    }
    return TargetGraph({lab: target(lab) for lab in labels}, deps, {f"t{i}:latest": labels[i] for i in range(count)})


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    count = draw(st.integers(min_value=1, max_value=25))
    edges = draw(
        st.lists(
            st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)).filter(lambda e: e[0] < e[1]),
            max_size=60,
            unique=True,
        )
    )
    return count, edges


@settings(max_examples=200, deadline=None)
@given(dags())
def test_buildorder_is_valid_on_random_dags(dag: tuple[int, list[tuple[int, int]]]) -> None:
    count, edges = dag
    graph = make_graph(edges, count)
    order = query.buildorder(graph, graph.select(["//..."]))
    assert len(order) == count
    position = {label: i for i, label in enumerate(order)}
    for parent, child in graph.labels.edges:
        assert position[parent] < position[child]
    assert order == query.buildorder(graph, graph.select(["//..."]))  # stable


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_rdeps_is_the_set_of_nodes_reachable_downstream(
    dag: tuple[int, list[tuple[int, int]]], data: st.DataObject
) -> None:
    count, edges = dag
    graph = make_graph(edges, count)
    start = data.draw(st.sampled_from(sorted(graph.targets)))
    found = query.rdeps(graph, start)
    for label in graph.targets:
        reachable = label != start and start in query.deps(graph, label)
        assert (label in found) == reachable


def test_cycle_error_holds_the_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        make_graph([(0, 1), (1, 2), (2, 0)], 3)
    assert sorted(caught.value.cycle) == ["//p0:t0", "//p1:t1", "//p2:t2"]
    assert caught.value.exit_code == 2


def test_select_patterns() -> None:
    graph = make_graph([], 6)
    assert graph.select(["//p1/..."]) == [Label("p1", "t1"), Label("p1", "t4")]
    assert graph.select(["//p0:all", "//p2:t2"]) == [Label("p0", "t0"), Label("p0", "t3"), Label("p2", "t2")]
    assert graph.select(["t5"]) == [Label("p2", "t5")]  # an image reference
    with pytest.raises(NothingMatchedError):
        graph.select(["//p9/..."])
    with pytest.raises(UnknownTargetError, match="did you mean"):
        graph.select(["//p0:t30"])


@pytest.mark.parametrize(("written", "meant"), [("p1:t1", "//p1:t1"), ("p0/...", "//p0/..."), ("p2:all", "//p2:all")])
def test_a_label_written_without_slashes_suggests_the_label(written: str, meant: str) -> None:
    graph = make_graph([], 3)
    with pytest.raises(UnknownTargetError, match=rf"no target '{written}' .*\(did you mean {meant}\? labels start"):
        graph.select([written])


def test_an_image_reference_matching_no_label_gets_no_label_hint() -> None:
    graph = make_graph([], 3)
    with pytest.raises(UnknownTargetError) as caught:
        graph.select(["p1:t9"])
    assert "did you mean //" not in str(caught.value)


def test_the_cli_suggests_the_label_for_package_colon_name(family: ScratchWorkspace) -> None:
    result = family.run("query", "deps", "base:company-base")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "ERROR no target 'base:company-base' and no target produces the image base:company-base "
        "(did you mean //base:company-base? labels start with //; text without it is an image reference)\n"
    )
    assert "Traceback" not in result.output


# --- workspace(external_images) ----------------------------------------------------------------


def _slim_user(family: ScratchWorkspace, external_images: str | None) -> None:
    setting = "" if external_images is None else f", external_images = {external_images}"
    family.write(
        {
            "WORKSPACE": f'workspace(name = "family", platforms = ["linux/amd64"]{setting})\n',
            "tools/BUILD": 'image(name = "tools")\n',
            "tools/Dockerfile": (
                "FROM debian:bookworm-slim AS slim\nFROM debian:bookworm\nCOPY --from=slim /etc/os-release /slim\n"
            ),
        }
    )


def test_another_tag_of_an_owned_repository_is_an_error_listing_the_tags(family: ScratchWorkspace) -> None:
    _slim_user(family, None)
    result = family.run("query", "deps", "//tools")
    assert result.exit_code == 2
    assert "no target produces the tag 'bookworm-slim'; tags that exist: bookworm" in result.output
    assert "external_images" in result.output


@pytest.mark.parametrize("patterns", ['["debian:bookworm-slim"]', '["debian:*-slim"]', '["other:1", "deb*:*slim"]'])
def test_external_images_keeps_a_tag_of_an_owned_repository_external(family: ScratchWorkspace, patterns: str) -> None:
    _slim_user(family, patterns)
    assert family.lines("query", "deps", "//tools") == ["//rootfs:debian"]
    graph = family.run("graph", "-o", "json", "//tools")
    assert graph.exit_code == 0, graph.output
    assert "debian:bookworm-slim" in graph.stdout


def test_external_images_that_match_nothing_keep_the_typo_error(family: ScratchWorkspace) -> None:
    _slim_user(family, '["debian:*-slim"]')
    family.write({"tools/Dockerfile": "FROM debian:bookwrom\n"})
    result = family.run("query", "deps", "//tools")
    assert result.exit_code == 2
    assert "tools/Dockerfile:1" in result.output and "tags that exist: bookworm" in result.output


def test_an_owned_image_is_never_external(family: ScratchWorkspace) -> None:
    _slim_user(family, '["debian:bookworm"]')
    result = family.run("query", "deps", "//tools")
    assert result.exit_code == 2
    assert "workspace(external_images) lists debian:bookworm, but //rootfs:debian produces it" in result.output


def test_an_external_images_entry_needs_a_tag(family: ScratchWorkspace) -> None:
    _slim_user(family, '["debian"]')
    result = family.run("query", "deps", "//tools")
    assert result.exit_code == 2
    assert "external_images entries are repository:tag patterns" in result.output
