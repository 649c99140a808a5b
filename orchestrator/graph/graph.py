"""The image family as a graph: targets, (target, platform) nodes, and the edges between them.

Edges come from each Dockerfile (FROM, COPY --from, RUN --mount from=) after ARG substitution,
for the stages the built stage needs. A reference to an image some target produces is an edge to
that target for the same platform (or the FROM's ``--platform``); anything else is an external base.
A reference to another tag of a repository some target produces is an error (a typo, most often),
unless ``workspace(external_images = [...])`` matches it (fnmatch over ``repository:tag``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from orchestrator.cache.witness import Witness
from orchestrator.core.dag import Dag
from orchestrator.core.imageref import ImageReference
from orchestrator.core.label import Label, Pattern, looks_like_label
from orchestrator.core.model import ImageTarget, Node, Target, WorkspaceSettings
from orchestrator.core.platforms import host_platform, normalize
from orchestrator.errors import (
    CycleError,
    GraphError,
    Location,
    NothingMatchedError,
    UnknownTargetError,
    did_you_mean,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentRef:
    """An internal reference in a Dockerfile and the node it is rebound to."""

    reference: str  # as written after ARG substitution
    line: int
    kind: str
    node: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDeps:
    parents: tuple[ParentRef, ...]
    externals: tuple[str, ...]  # external base references, sorted, deduplicated


class TargetGraph:
    """Targets, nodes and edges; validated at construction. Read-only afterwards."""

    def __init__(
        self,
        targets: Mapping[Label, Target],
        node_deps: Mapping[Node, NodeDeps],
        owners: Mapping[str, Label],
    ) -> None:
        self.targets = dict(sorted(targets.items()))
        self.node_deps = dict(node_deps)
        self.owners = dict(owners)  # "repo:tag" -> label
        self._nodes_by_label: dict[Label, list[Node]] = {}
        for node in sorted(self.node_deps):
            self._nodes_by_label.setdefault(node.label, []).append(node)
        self.nodes: Dag[Node] = Dag()
        self.labels: Dag[Label] = Dag()
        for label in self.targets:
            self.labels.add_node(label)
        for node, deps in self.node_deps.items():
            self.nodes.add_node(node)
            for parent in deps.parents:
                self.nodes.add_edge(parent.node, node)
                self.labels.add_edge(parent.node.label, node.label)
        _check_acyclic(self.labels)

    def platforms_of(self, label: Label) -> tuple[str, ...]:
        return tuple(sorted(n.platform for n in self.nodes_of(label)))

    def nodes_of(self, label: Label) -> list[Node]:
        return list(self._nodes_by_label.get(label, ()))

    def resolve(self, text: str) -> Label:
        """A label or an image reference a target produces, else UnknownTargetError."""
        if looks_like_label(text):
            label = Label.parse(text)
            if label not in self.targets:
                names = [str(lab) for lab in self.targets]
                raise UnknownTargetError(f"no target {label}{did_you_mean(str(label), names)}")
            return label
        ref = ImageReference.parse(text)
        key = f"{ref.repository}:{ref.tag}"
        if key in self.owners:
            return self.owners[key]
        hint = self._as_label(text) or did_you_mean(key, sorted(self.owners))
        raise UnknownTargetError(f"no target {text!r} and no target produces the image {key}{hint}")

    def _as_label(self, text: str) -> str:
        """`` (did you mean //base:company-base?)`` when ``text`` with ``//`` selects a target, else ''."""
        candidate = "//" + text
        try:
            pattern = Pattern.parse(candidate)
        except UnknownTargetError:
            return ""
        if not any(pattern.matches(label) for label in self.targets):
            return ""
        return f" (did you mean {candidate}? labels start with //; text without it is an image reference)"

    def select(self, patterns: Sequence[str]) -> list[Label]:
        """Labels matching any pattern (default ``//...``), sorted. Each pattern must match."""
        chosen: set[Label] = set()
        for text in patterns or ["//..."]:
            if not looks_like_label(text) or not _is_pattern(text):
                chosen.add(self.resolve(text))
                continue
            pattern = Pattern.parse(text)
            matched = [label for label in self.targets if pattern.matches(label)]
            if not matched:
                raise NothingMatchedError(f"pattern {text} matches no target")
            chosen.update(matched)
        return sorted(chosen)

    def nodes_with_ancestors(self, nodes: Iterable[Node]) -> set[Node]:
        """``nodes`` and every node they are built on."""
        start = set(nodes)
        return start | self.nodes.reachable(start, upward=True)

    def with_dependencies(self, labels: Iterable[Label]) -> set[Label]:
        """``labels`` and every target they are built on."""
        start = set(labels)
        return start | self.labels.reachable(start, upward=True)

    def topological_labels(self, labels: Iterable[Label] | None = None) -> list[Label]:
        """A stable topological order (ties broken by label) of ``labels`` (default: all)."""
        return self.labels.topological(str, labels)

    def topological_nodes(self, nodes: Iterable[Node] | None = None) -> list[Node]:
        return self.nodes.topological(str, nodes)


def _is_pattern(text: str) -> bool:
    return text in ("//...", "...") or text.endswith(("/...", ":all", ":*"))


def _check_acyclic(graph: Dag[Label]) -> None:
    try:
        graph.topological(str)
    except ValueError:
        cycle = graph.find_cycle()
        assert cycle is not None
        raise CycleError([str(label) for label in cycle]) from None


def node_platforms(target: Target, settings: WorkspaceSettings) -> tuple[str, ...]:
    chosen = target.platforms or settings.platforms or (host_platform(),)
    return tuple(sorted({normalize(p) for p in chosen}))


def image_owners(targets: Iterable[Target]) -> dict[str, Label]:
    """``repo:tag`` -> the target producing it; two producers of one reference is an error."""
    owners: dict[str, Label] = {}
    for target in targets:
        for reference in target.references:
            if reference in owners and owners[reference] != target.label:
                raise GraphError(f"two targets produce the image {reference}: {owners[reference]} and {target.label}")
            owners[reference] = target.label
    return owners


def build_graph(
    root: Path, targets: Sequence[Target], settings: WorkspaceSettings, witness: Witness | None = None
) -> TargetGraph:
    by_label: dict[Label, Target] = {}
    for target in targets:
        if target.label in by_label:
            raise GraphError(f"duplicate target {target.label}")
        by_label[target.label] = target
    owners = image_owners(by_label.values())
    _check_external_images(settings.external_images, owners)
    repo_tags: dict[str, list[str]] = {}
    for reference in owners:
        repo, _, tag = reference.rpartition(":")
        repo_tags.setdefault(repo, []).append(tag)
    platforms = {label: node_platforms(t, settings) for label, t in by_label.items()}
    texts: dict[str, str] = {}
    deps: dict[Node, NodeDeps] = {}
    for label, target in by_label.items():
        for platform in platforms[label]:
            node = Node(label, platform)
            if not isinstance(target, ImageTarget):
                deps[node] = NodeDeps(parents=(), externals=())
                continue
            if target.dockerfile not in texts:
                texts[target.dockerfile] = _read_dockerfile(root, target.dockerfile)
                if witness is not None:
                    witness.saw(target.dockerfile)
            deps[node] = _image_deps(
                node, target, texts[target.dockerfile], owners, repo_tags, platforms, settings.external_images
            )
        if isinstance(target, ImageTarget) and target.base is not None:
            _check_base(target, deps[Node(label, platforms[label][0])])
    return TargetGraph(by_label, deps, owners)


def _read_dockerfile(root: Path, dockerfile: str) -> str:
    import orchestrator.dockerfile as df  # here, not at the top: a restored load never parses a Dockerfile

    return df.read(root / dockerfile, path=dockerfile)


def _image_deps(
    node: Node,
    target: ImageTarget,
    text: str,
    owners: Mapping[str, Label],
    repo_tags: Mapping[str, list[str]],
    platforms: Mapping[Label, tuple[str, ...]],
    external_images: Sequence[str] = (),
) -> NodeDeps:
    import orchestrator.dockerfile as df  # here, not at the top: a restored load never parses a Dockerfile

    info = df.analyze_image(target, text, node.platform)
    parents: list[ParentRef] = []
    externals: set[str] = set()
    for ref in info.image_refs:
        parsed = ImageReference.parse(ref.reference)
        owner_key = f"{parsed.repository}:{parsed.tag}"
        if parsed.digest is None and owner_key in owners:
            parent_label = owners[owner_key]
            parent_platform = normalize(ref.platform) if ref.platform else node.platform
            if parent_platform not in platforms[parent_label]:
                raise GraphError(
                    f"{target.label} is built for {parent_platform} but its parent {parent_label} "
                    f"is built only for {', '.join(platforms[parent_label])}; add {parent_platform} "
                    f"to the parent's platforms or remove it from the child's",
                    location=Location(target.dockerfile, ref.line),
                )
            parents.append(
                ParentRef(
                    reference=ref.reference,
                    line=ref.line,
                    kind=ref.kind,
                    node=Node(parent_label, parent_platform),
                )
            )
        elif (
            parsed.digest is None
            and parsed.repository in repo_tags
            and not any(fnmatchcase(owner_key, pattern) for pattern in external_images)
        ):
            tags = ", ".join(sorted(repo_tags[parsed.repository]))
            raise GraphError(
                f"{ref.reference} names the repository {parsed.repository} built by this workspace, "
                f"but no target produces the tag {parsed.tag!r}; tags that exist: {tags} (if {owner_key} is "
                f"an external image, list it in workspace(external_images = [...]) in WORKSPACE)",
                location=Location(target.dockerfile, ref.line),
            )
        else:
            externals.add(ref.reference)
    return NodeDeps(parents=tuple(parents), externals=tuple(sorted(externals)))


def _check_external_images(patterns: Sequence[str], owners: Mapping[str, Label]) -> None:
    """A pattern without wildcards must not name an image a target produces (it would stay internal)."""
    for pattern in patterns:
        if pattern in owners:
            raise GraphError(
                f"workspace(external_images) lists {pattern}, but {owners[pattern]} produces it; "
                "an image a target produces is never external: remove it from external_images"
            )


def _check_base(target: ImageTarget, deps: NodeDeps) -> None:
    """``base=`` must name exactly the targets the Dockerfile's FROM lines use."""
    stated = set(target.base or ())
    inferred = {p.node.label for p in deps.parents if p.kind == "from"}
    if stated != inferred:
        raise GraphError(
            f"{target.label}: base= says {_show(stated)} but the Dockerfile {target.dockerfile} "
            f"builds FROM {_show(inferred)}",
            location=Location(target.build_file),
        )


def _show(labels: Iterable[Label]) -> str:
    return ", ".join(sorted(map(str, labels))) or "no target"
