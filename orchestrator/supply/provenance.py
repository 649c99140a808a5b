"""The provenance of one image built by the orchestrator: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

Pure: facts in, a JSON document out, the same bytes for the same facts (sorted keys, sorted lists, no
clock: times appear only when the caller passes them).

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "127.0.0.1:5000/company/base", "digest": {"sha256": "<hex>"}}, ...],
     "predicateType": "https://slsa.dev/provenance/v1",
     "predicate": {"buildDefinition": {...}, "runDetails": {...}}}

``subject``: one entry a manifest digest, named by the image's repository (no tag, no digest): each
platform's manifest, and the index's when the caller passes it too. Sorted by name, then digest.

``buildDefinition.buildType`` is ``BUILD_TYPE`` (``urn:orchestrator:buildtype:image:v1``), under which:

``externalParameters`` (what the user chose, in BUILD files and on the command line):

    target       the target's label, ``//company:base``
    platform     the platform built, ``linux/amd64``
    dockerfile   the Dockerfile's path, relative to the workspace root
    buildArgs    the build arguments, ``{"NAME": "value"}`` (the last of a repeated name wins)

``internalParameters`` (what the orchestrator derived or was configured with):

    key            the image's content key (its tag in the store)
    keyAlgorithm   the digest of keys and input manifests: ``xxh3`` (xxh3-128) or ``sha256``
    keySchema      the version of the key's recipe (``orchestrator.keys.keys.KEY_SCHEMA``)
    builder        the builder that ran: ``buildkit`` or ``classic``
    engine         the Docker Engine's URL (``unix:///var/run/docker.sock``, ``ssh://...``)

``resolvedDependencies`` (in-toto ResourceDescriptors), in this order:

    the source, when the workspace is a git checkout:
        {"uri": "git+<remote URL>" or "git+file://<path>", "digest": {"gitCommit": "<sha>"}}
    the target's input manifest (the files and settings its key hashes):
        {"name": "orchestrator:inputs", "digest": {"orchestrator-<keyAlgorithm>": "<digest>"}}
    each pinned external base (as in images.lock), sorted by reference:
        {"uri": "docker-image://<reference as written>", "digest": {"sha256": "<hex>"},
         "annotations": {"orchestrator:source": "registry" | "engine"}}
        (from the engine, the digest is the local image ID, not a registry manifest digest)
    each parent image built by the orchestrator, sorted by label:
        {"name": "<label>", "digest": {"orchestrator-<keyAlgorithm>": "<its key>", "sha256": "<hex>"}}
        (``sha256``, the parent's image digest, only when it is known)

The ``orchestrator-xxh3`` / ``orchestrator-sha256`` digest names say that the value is the
orchestrator's digest of its own canonical manifest (``orchestrator explain`` lists it), not a digest
of file bytes anyone could download; the algorithm is the key's.

``runDetails.builder.id`` is ``BUILDER_ID`` (``urn:orchestrator:builder``) and ``builder.version``
``{"orchestrator-images": "<version>"}``. ``runDetails.metadata`` holds ``invocationId``,
``startedOn`` and ``finishedOn`` (RFC 3339 strings) when given, and is left out when none is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from orchestrator import __version__

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:orchestrator:buildtype:image:v1"
BUILDER_ID = "urn:orchestrator:builder"
DISTRIBUTION = "orchestrator-images"  # the project's name on PyPI: builder.version's key
INPUTS_NAME = "orchestrator:inputs"
KEY_ALGORITHMS = ("xxh3", "sha256")
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")
_SCP_LIKE = re.compile(r"(?:[^@/:]+@)?([^@/:]+):(?!//)(.+)")  # git's [user@]host:path


def sha256_hex(digest: str) -> str:
    """The hex of ``sha256:<64 hex>``; ValueError for anything else."""
    match = _SHA256.fullmatch(digest)
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r} (expected sha256:<64 lowercase hex digits>)")
    return match.group(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """An image manifest the statement is about: its repository (no tag, no digest) and ``sha256:...``."""

    name: str
    digest: str

    def __post_init__(self) -> None:
        sha256_hex(self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class BasePin:
    """An external base as images.lock pins it: the reference as written and the digest it stands for."""

    reference: str
    digest: str
    source: str = "registry"  # registry | engine (then the digest is the local image ID)

    def __post_init__(self) -> None:
        sha256_hex(self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentImage:
    """An image of the same family this one is built from: its label, key and, if known, digest."""

    label: str
    key: str
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.digest is not None:
            sha256_hex(self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class GitSource:
    """The workspace's revision: ``git+<remote URL>`` (or ``git+file://<path>``) and the commit's sha."""

    uri: str
    commit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildFacts:
    """What the orchestrator knows of one image's build on one platform (see the module docstring)."""

    label: str
    platform: str
    key: str
    key_algorithm: str
    key_schema: str
    dockerfile: str
    inputs_digest: str
    builder: str  # buildkit | classic
    engine: str
    build_args: Sequence[tuple[str, str]] = ()
    bases: Sequence[BasePin] = ()
    parents: Sequence[ParentImage] = ()
    source: GitSource | None = None
    invocation_id: str | None = None
    started_on: str | None = field(default=None, compare=False)
    finished_on: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.key_algorithm not in KEY_ALGORITHMS:
            raise ValueError(f"key_algorithm {self.key_algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}")
        object.__setattr__(self, "build_args", tuple(self.build_args))
        object.__setattr__(self, "bases", tuple(sorted(self.bases, key=lambda b: (b.reference, b.digest))))
        object.__setattr__(self, "parents", tuple(sorted(self.parents, key=lambda p: p.label)))


def git_uri(remote: str | None, path: str) -> str:
    """A source's ``uri``: ``git+<remote>`` when the checkout has a remote, else ``git+file://<path>``.

    Credentials in the remote's URL (``https://user:token@...``, as CI jobs clone) are dropped, and
    scp-like remotes (``git@host:team/repo.git``) become ``git+ssh://host/team/repo.git``.
    """
    if not remote:
        return "git+file://" + path
    if scp := _SCP_LIKE.fullmatch(remote):
        remote = f"ssh://{scp.group(1)}/{scp.group(2)}"
    parts = urlsplit(remote.removeprefix("git+"))
    if parts.scheme and "@" in parts.netloc:
        remote = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return remote if remote.startswith("git+") else f"git+{remote}"


def _resolved_dependencies(build: BuildFacts) -> list[dict[str, Any]]:
    key_digest = f"orchestrator-{build.key_algorithm}"
    found: list[dict[str, Any]] = []
    if build.source is not None:
        found.append({"uri": build.source.uri, "digest": {"gitCommit": build.source.commit}})
    found.append({"name": INPUTS_NAME, "digest": {key_digest: build.inputs_digest}})
    found += [
        {
            "uri": f"docker-image://{base.reference}",
            "digest": {"sha256": sha256_hex(base.digest)},
            "annotations": {"orchestrator:source": base.source},
        }
        for base in build.bases
    ]
    for parent in build.parents:
        digest = {key_digest: parent.key}
        if parent.digest is not None:
            digest["sha256"] = sha256_hex(parent.digest)
        found.append({"name": parent.label, "digest": digest})
    return found


def provenance_statement(*, subjects: Sequence[Subject], build: BuildFacts) -> dict[str, Any]:
    """The in-toto statement (a JSON-ready dict) that ``build`` made the ``subjects``."""
    if not subjects:
        raise ValueError("a provenance statement needs at least one subject")
    unique = sorted({(s.name, sha256_hex(s.digest)) for s in subjects})
    metadata = {
        name: value
        for name, value in (
            ("invocationId", build.invocation_id),
            ("startedOn", build.started_on),
            ("finishedOn", build.finished_on),
        )
        if value is not None
    }
    run_details: dict[str, Any] = {"builder": {"id": BUILDER_ID, "version": {DISTRIBUTION: __version__}}}
    if metadata:
        run_details["metadata"] = metadata
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": hex_}} for name, hex_ in unique],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "target": build.label,
                    "platform": build.platform,
                    "dockerfile": build.dockerfile,
                    "buildArgs": dict(build.build_args),
                },
                "internalParameters": {
                    "key": build.key,
                    "keyAlgorithm": build.key_algorithm,
                    "keySchema": build.key_schema,
                    "builder": build.builder,
                    "engine": build.engine,
                },
                "resolvedDependencies": _resolved_dependencies(build),
            },
            "runDetails": run_details,
        },
    }


def provenance_json(*, subjects: Sequence[Subject], build: BuildFacts) -> str:
    """The statement as JSON text: sorted keys, two-space indents, a final newline (like the SBOM)."""
    return json.dumps(provenance_statement(subjects=subjects, build=build), indent=2, sort_keys=True) + "\n"
