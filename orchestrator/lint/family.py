"""The checks hadolint cannot make: they need to know which images the family builds.

Rules (IDs are stable; silence one per target with ``lint_ignore = {"ORC002": "why"}``):

- ``ORC001`` error: an external base (FROM, COPY --from, RUN --mount from=) with a floating tag,
  ``:latest`` or none, and no digest. References to images of the family are not external: the
  orchestrator rebinds them to the exact image it builds.
- ``ORC002`` warning: the built image runs as root. The last USER of the built stage chain (the
  target stage and the stages it is FROM) decides; without one, the user comes from where the
  chain starts: ``scratch`` and rootfs images run as root, an image of the family runs as that
  image's user (followed through its own Dockerfile), and an external base counts as root, since
  what it sets cannot be seen without pulling it.
- ``ORC003`` warning: ``org.opencontainers.image.source`` or ``.description`` set neither in the
  target's ``labels=`` nor by a LABEL of the built stage chain. The orchestrator adds created,
  revision and base.* itself; labels of a parent image are not counted (they describe the parent).
- ``ORC004`` warning: a target without ``srcs`` whose context has no ignore file and more than
  100 files or 10 MB; every file is then sent to the builder and hashed. Found with lstat only,
  stopping as soon as a limit is passed.
- ``ORC005`` warning: an external base that images.lock does not pin, the engine does not hold
  (for any platform) and the registry its reference names answered it does not have: a typo
  (``debian:bookwrom``), or a base to pull first, since builds never pull unpinned bases. When
  that registry cannot be reached (or no engine answers), an ``info`` finding says it could not
  be checked. Checked only when lint is given a resolver (the CLI always gives one).
- ``ORC006`` warning: a FROM of an external base that images.lock does not pin, whose image in the
  engine has ONBUILD triggers. The triggers run in the child's build and may read any of its
  context, which the key cannot see; pinned (``orchestrator lock``), the base is recorded with its
  triggers and the child's whole context becomes an input. Unpinned bases the engine does not hold
  are taken to have none. Checked only when lint is given a resolver.

The Dockerfile is read with :mod:`orchestrator.dockerfile`, the parser the graph uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orchestrator.dockerfile as df
from orchestrator.core.imageref import ImageReference
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, Node
from orchestrator.graph.graph import TargetGraph
from orchestrator.keys.context import dockerignore_path
from orchestrator.lint import Finding, Level
from orchestrator.registry.pins import Presence, Resolver
from orchestrator.workspace.lockfile import LOCK_FILE, Lock

FLOATING_BASE = "ORC001"
ROOT_USER = "ORC002"
OCI_LABELS = "ORC003"
NO_DOCKERIGNORE = "ORC004"
UNKNOWN_BASE = "ORC005"
TRIGGERED_BASE = "ORC006"
UNUSED_IGNORE = "ORC900"

RULES: dict[str, tuple[Level, str]] = {
    FLOATING_BASE: (Level.error, "external base with a floating tag"),
    ROOT_USER: (Level.warning, "the built image runs as root"),
    OCI_LABELS: (Level.warning, "missing OCI labels"),
    NO_DOCKERIGNORE: (Level.warning, "large build context without .dockerignore"),
    UNKNOWN_BASE: (Level.warning, "external base found nowhere (info: could not be checked)"),
    TRIGGERED_BASE: (Level.warning, "unpinned external base with ONBUILD triggers"),
    UNUSED_IGNORE: (Level.info, "unused lint_ignore entry"),
}

REQUIRED_LABELS = ("org.opencontainers.image.source", "org.opencontainers.image.description")
# hadolint's tag rules ("always tag", "do not use latest") read a FROM of the family as a floating
# tag; the orchestrator rebinds such a FROM to the exact image, so they do not apply there.
TAG_RULES = frozenset({"DL3006", "DL3007"})
MAX_CONTEXT_FILES = 100
MAX_CONTEXT_BYTES = 10 * 1024 * 1024
_ROOT_USERS = frozenset({"root", "0"})
_SCRATCH = "scratch"
_KINDS = {"from": "FROM", "copy-from": "COPY --from", "mount-from": "RUN --mount from"}


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A Dockerfile as analysed for one node, with the LABELs and USER of each stage."""

    info: df.DockerfileInfo
    configs: tuple[df.StageConfig, ...]  # configs[i] belongs to info.stages[i]


@dataclass(frozen=True, slots=True)
class _User:
    """Who the image of a node runs as, and where that is decided."""

    root: bool
    user: str | None  # the last USER's value; None when no USER decides it
    line: int | None  # that USER's line, in the node's own Dockerfile
    origin: str  # how the user was found, for messages


class FamilyChecks:
    """ORC001-ORC006 for the targets of one graph; Dockerfiles are read and analysed once.

    ORC005 and ORC006 need ``bases`` (the engine and registries to look in); without it, they are
    not checked.
    """

    def __init__(
        self, root: Path, graph: TargetGraph, *, lock: Lock | None = None, bases: Resolver | None = None
    ) -> None:
        self.root = root
        self.graph = graph
        self.lock = lock
        self.bases = bases
        self._texts: dict[str, str] = {}
        self._parsed: dict[Node, _Parsed] = {}
        self._users: dict[Node, _User] = {}

    def check(self, label: Label) -> list[Finding]:
        """The family findings of one image target (each once, whatever its platforms)."""
        target = self._image(label)
        found: dict[tuple[str, int | None, str], Finding] = {}
        for node in self.graph.nodes_of(label):
            for finding in (
                *self._floating_bases(node, target),
                *self._root_user(node, target),
                *self._labels(node),
                *self._unknown_bases(node, target),
                *self._triggered_bases(node, target),
            ):
                found.setdefault((finding.rule, finding.line, finding.message), finding)
        if (large := self._large_context(target)) is not None:
            found[(large.rule, None, large.message)] = large
        return sorted(found.values(), key=Finding.sort_key)

    def internal_from_lines(self, label: Label) -> dict[int, str]:
        """Lines of FROMs (in any stage) naming an image the family builds, and that image."""
        lines: dict[int, str] = {}
        for node in self.graph.nodes_of(label):
            for stage in self._parse(node).info.stages:
                if stage.base_stage is None and stage.base != _SCRATCH and self._is_internal(stage.base):
                    lines[stage.line] = stage.base
        return lines

    # --- ORC001 -----------------------------------------------------------------------------------

    def _floating_bases(self, node: Node, target: ImageTarget) -> Iterable[Finding]:
        externals = set(self.graph.node_deps[node].externals)
        for ref in self._parse(node).info.image_refs:
            parsed = ImageReference.parse(ref.reference)
            if ref.reference not in externals or parsed.digest is not None or parsed.tag != "latest":
                continue
            how = "is :latest" if ref.reference.endswith(":latest") else "has no tag, so it means :latest"
            yield self._finding(
                FLOATING_BASE,
                target,
                ref.line,
                f"external base {_KINDS.get(ref.kind, ref.kind)} {ref.reference} {how}, which moves whenever "
                f"upstream pushes; pin a release tag ({parsed.repository}:<version>) or a digest",
            )

    # --- ORC002 -----------------------------------------------------------------------------------

    def _root_user(self, node: Node, target: ImageTarget) -> Iterable[Finding]:
        user = self._user(node)
        if not user.root:
            return
        parsed = self._parse(node)
        if user.line is not None:
            message = (
                f"the built image runs as root (last USER {user.user}); "
                "switch to a non-root user (USER 10000:10000) after the steps that need root"
            )
            yield self._finding(ROOT_USER, target, user.line, message)
            return
        final = parsed.info.stages[parsed.info.target_stage]
        message = (
            f"the built image runs as root: no USER in the built stage chain and {user.origin}; add USER 10000:10000"
        )
        yield self._finding(ROOT_USER, target, final.line, message)

    def _user(self, node: Node) -> _User:
        if node not in self._users:
            self._users[node] = self._find_user(node)
        return self._users[node]

    def _find_user(self, node: Node) -> _User:
        target = self.graph.targets[node.label]
        if not isinstance(target, ImageTarget):
            return _User(root=True, user=None, line=None, origin=f"{node.label} is a root filesystem image")
        parsed = self._parse(node)
        chain = parsed.info.stage_chain()
        for index in chain:
            config = parsed.configs[index]
            if config.user_line is not None:
                value = config.user
                # A USER from an ARG cannot be told here; it is not reported.
                is_root = value is not None and "$" not in value and value.partition(":")[0] in _ROOT_USERS
                return _User(root=is_root, user=value, line=config.user_line, origin="USER")
        start = parsed.info.stages[chain[-1]]
        if start.base == _SCRATCH:
            return _User(root=True, user=None, line=None, origin="it builds FROM scratch")
        for parent in self.graph.node_deps[node].parents:
            if parent.kind == "from" and parent.line == start.line:
                inherited = self._user(parent.node)
                origin = f"its base {start.base} ({parent.node.label}) runs as " + (
                    "root" if inherited.root else repr(inherited.user)
                )
                return _User(root=inherited.root, user=inherited.user, line=None, origin=origin)
        return _User(
            root=True,
            user=None,
            line=None,
            origin=f"the user of the external base {start.base} cannot be seen without pulling it (counted as root)",
        )

    # --- ORC003 -----------------------------------------------------------------------------------

    def _labels(self, node: Node) -> Iterable[Finding]:
        target = self._image(node.label)
        parsed = self._parse(node)
        present = {key for key, _ in target.labels}
        for index in parsed.info.stage_chain():
            present.update(key for key, _ in parsed.configs[index].labels)
        missing = [key for key in REQUIRED_LABELS if key not in present]
        if missing:
            final = parsed.info.stages[parsed.info.target_stage]
            message = (
                f"missing OCI label{'s' * (len(missing) > 1)} {', '.join(missing)}: "
                f"set {'them' if len(missing) > 1 else 'it'} in the target's labels= or with LABEL in the built stage"
            )
            yield self._finding(OCI_LABELS, target, final.line, message)

    # --- ORC004 -----------------------------------------------------------------------------------

    def _large_context(self, target: ImageTarget) -> Finding | None:
        if target.srcs is not None:
            return None
        context_dir = self.root / target.context
        if not context_dir.is_dir() or dockerignore_path(context_dir, self.root / target.dockerfile) is not None:
            return None
        too_large = _too_large(context_dir)
        if too_large is None:
            return None
        shown = target.context or "."
        ignore = f"{target.context}/.dockerignore" if target.context else ".dockerignore"
        message = (
            f"the build context {shown} has {too_large} and no .dockerignore, so all of it is sent to the "
            f"builder and hashed; add {ignore} or list the inputs with srcs="
        )
        return self._finding(NO_DOCKERIGNORE, target, None, message)

    # --- ORC005 -----------------------------------------------------------------------------------

    def _unknown_bases(self, node: Node, target: ImageTarget) -> Iterable[Finding]:
        if self.bases is None:
            return
        externals = set(self.graph.node_deps[node].externals)
        for ref in self._parse(node).info.image_refs:
            if ref.reference not in externals:
                continue
            if self.lock is not None and self.lock.pin(ref.reference, node.platform) is not None:
                continue
            check = self.bases.exists(ref.reference)
            shown = f"{_KINDS.get(ref.kind, ref.kind)} {ref.reference}"
            if check.presence is Presence.missing:
                message = (
                    f"external base {shown} is not pinned in {LOCK_FILE} and is nowhere to be found: {check.why}; "
                    "a typo? Builds never pull unpinned bases: fix the name, pull or import it, or pin it "
                    "(orchestrator lock)"
                )
                yield self._finding(UNKNOWN_BASE, target, ref.line, message)
            elif check.presence is Presence.unknown:
                message = f"could not check the external base {shown}: {check.why}"
                yield self._finding(UNKNOWN_BASE, target, ref.line, message, level=Level.info)

    # --- ORC006 -----------------------------------------------------------------------------------

    def _triggered_bases(self, node: Node, target: ImageTarget) -> Iterable[Finding]:
        if self.bases is None:
            return
        externals = set(self.graph.node_deps[node].externals)
        for ref in self._parse(node).info.image_refs:
            if ref.kind != "from" or ref.reference not in externals:
                continue  # triggers run only in a build FROM the image
            if self.lock is not None and self.lock.pin(ref.reference, node.platform) is not None:
                continue
            if self.bases.engine_triggers(ref.reference):
                message = (
                    f"external base FROM {ref.reference} is an unpinned base with ONBUILD triggers: the key does "
                    "not see what they read; run `orchestrator lock` to pin it (a pinned base with triggers "
                    "makes the whole context an input)"
                )
                yield self._finding(TRIGGERED_BASE, target, ref.line, message)

    # --- Helpers ----------------------------------------------------------------------------------

    def _image(self, label: Label) -> ImageTarget:
        target = self.graph.targets[label]
        if not isinstance(target, ImageTarget):
            raise TypeError(f"{label} is not an image target")
        return target

    def _is_internal(self, reference: str) -> bool:
        parsed = ImageReference.parse(reference)
        return parsed.digest is None and f"{parsed.repository}:{parsed.tag}" in self.graph.owners

    def _finding(
        self, rule: str, target: ImageTarget, line: int | None, message: str, *, level: Level | None = None
    ) -> Finding:
        return Finding(
            rule=rule,
            level=level or RULES[rule][0],
            path=target.dockerfile,
            line=line,
            column=None if line is None else 1,
            message=message,
            target=target.label,
        )

    def _parse(self, node: Node) -> _Parsed:
        if node not in self._parsed:
            target = self._image(node.label)
            if target.dockerfile not in self._texts:
                self._texts[target.dockerfile] = df.read(self.root / target.dockerfile, path=target.dockerfile)
            text = self._texts[target.dockerfile]
            info = df.analyze_image(target, text, node.platform)
            configs = df.stage_configs(text, path=target.dockerfile)
            assert len(configs) == len(info.stages)  # both count the FROMs of one text
            self._parsed[node] = _Parsed(info=info, configs=configs)
        return self._parsed[node]


def _too_large(directory: Path) -> str | None:
    """'more than 100 files' / 'more than 10 MB' once a limit is passed (lstat only), else None."""
    files, size = 0, 0
    stack = [str(directory)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                listed = list(entries)
        except OSError:
            continue  # an unreadable directory: the build itself will say so
        for entry in listed:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
                continue
            files += 1
            if entry.is_file(follow_symlinks=False):
                size += entry.stat(follow_symlinks=False).st_size
            if files > MAX_CONTEXT_FILES:
                return f"more than {MAX_CONTEXT_FILES} files"
            if size > MAX_CONTEXT_BYTES:
                return f"more than {MAX_CONTEXT_BYTES // (1024 * 1024)} MB"
    return None
