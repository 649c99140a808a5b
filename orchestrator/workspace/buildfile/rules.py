"""The functions BUILD files call: ``image()``, ``rootfs_image()``, ``glob()``, ``package_name()``.

Each rule checks its attributes against a schema (unknown names get a suggestion, wrong types name
the expected type), resolves paths against the package, rejects paths leaving the workspace, and
records a frozen target. Nothing here knows about Starlark: the loader binds these to a module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.cache.witness import Witness
from orchestrator.core.imageref import repository_problem, valid_repository, valid_tag
from orchestrator.core.label import Label, valid_name
from orchestrator.core.model import ImageTarget, ImageTestTarget, Pairs, RootfsTarget, Target
from orchestrator.core.paths import check_inside
from orchestrator.core.platforms import canonical_all
from orchestrator.errors import BuildFileError, UsageError, WorkspaceError, did_you_mean
from orchestrator.workspace.buildfile.globbing import glob

# Attribute kinds: how a value is checked and normalised.
STR, OPT_STR, STR_LIST, OPT_STR_LIST, STR_DICT, OPT_BOOL, OPT_LABEL_LIST, ANY_LIST, ANY_DICT, OPT_NUMBER = (
    "string",
    "string or None",
    "list of strings",
    "list of strings or None",
    "dict of string to string",
    "bool or None",
    "list of labels or None",
    "list",
    "dict or None",
    "number or None",
)

IMAGE_ATTRS: Mapping[str, str] = {
    "name": STR,
    "dockerfile": STR,
    "context": STR,
    "srcs": OPT_STR_LIST,
    "repository": OPT_STR,
    "tags": STR_LIST,
    "build_args": STR_DICT,
    "target": OPT_STR,
    "platforms": OPT_STR_LIST,
    "labels": STR_DICT,
    "base": OPT_LABEL_LIST,
    "hermetic": OPT_BOOL,
    "lint_ignore": STR_DICT,  # lint rule -> the reason it does not apply
    "secrets": STR_DICT,  # secret id -> "env:NAME" or "file:path" (BuildKit only)
    "ssh": STR_LIST,  # ssh agent ids to forward ("default": $SSH_AUTH_SOCK; BuildKit only)
    "visibility": OPT_STR_LIST,  # accepted for Bazel familiarity; no effect
}
IMAGE_TEST_ATTRS: Mapping[str, str] = {
    "name": STR,
    "image": STR,
    "commands": ANY_LIST,
    "files": ANY_LIST,
    "metadata": ANY_DICT,
    "platforms": OPT_STR_LIST,
    "visibility": OPT_STR_LIST,
}
ROOTFS_ATTRS: Mapping[str, str] = {
    "name": STR,
    "tarball": OPT_STR,
    "script": OPT_STR,
    "srcs": STR_LIST,
    "repository": OPT_STR,
    "tags": STR_LIST,
    "platforms": OPT_STR_LIST,
    "labels": STR_DICT,
    "visibility": OPT_STR_LIST,
}


@dataclass(slots=True)
class PackageContext:
    """The package whose BUILD file is being evaluated, and the targets it has declared so far."""

    root: Path
    package: str
    build_file: str  # workspace-relative
    witness: Witness | None = None  # records every path looked at
    targets: dict[str, Target] = field(default_factory=dict)
    tests: dict[str, ImageTestTarget] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.root / self.package


def _type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return "None" in kind
    if kind in (STR, OPT_STR):
        return isinstance(value, str)
    if kind in (STR_LIST, OPT_STR_LIST, OPT_LABEL_LIST):
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    if kind == STR_DICT:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if kind == OPT_BOOL:
        return isinstance(value, bool)
    if kind == ANY_LIST:
        return isinstance(value, list | tuple)
    if kind == ANY_DICT:
        return isinstance(value, dict)
    if kind == OPT_NUMBER:
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    raise AssertionError(kind)


def check_attrs(rule: str, schema: Mapping[str, str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    name = kwargs.get("name", "?")
    if args:
        raise BuildFileError(f"{rule}() takes keyword arguments only (got {len(args)} positional)")
    if "name" not in kwargs:
        raise BuildFileError(f"{rule}() needs a name")
    for attr, value in kwargs.items():
        if attr not in schema:
            raise BuildFileError(
                f"{rule}(name={name!r}): unknown attribute {attr!r}{did_you_mean(attr, list(schema))}; "
                f"valid attributes: {', '.join(sorted(schema))}"
            )
        if not _type_ok(schema[attr], value):
            raise BuildFileError(
                f"{rule}(name={name!r}): attribute {attr!r} must be a {schema[attr]}, "
                f"got {type(value).__name__} {value!r}"
            )
    if not valid_name(kwargs["name"]):
        raise BuildFileError(f"{rule}(): invalid target name {kwargs['name']!r}")


def _pairs(value: Mapping[str, str] | None) -> Pairs:
    return tuple(sorted((value or {}).items()))


def _workspace_path(ctx: PackageContext, value: str, *, what: str, must_exist: str | None) -> str:
    """``value`` (package-relative) as a workspace-relative POSIX path, checked to stay inside."""
    root = str(ctx.root)
    joined = os.path.normpath(os.path.join(root, ctx.package, value))
    real = str(check_inside(Path(joined), ctx.root, what=f"{what} {value!r}"))
    if ctx.witness is not None:
        ctx.witness.saw(joined)
        ctx.witness.saw(real)
    if must_exist == "file" and not os.path.isfile(real):
        raise BuildFileError(f"{what} {value!r} does not exist (looked for {joined})")
    if must_exist == "dir" and not os.path.isdir(real):
        raise BuildFileError(f"{what} {value!r} is not a directory (looked for {joined})")
    if joined == root:
        return ""
    if not joined.startswith(root + os.sep):
        raise WorkspaceError(f"{what} {value!r} is outside the workspace {root}")
    return joined[len(root) + 1 :].replace(os.sep, "/")


def platforms_attr(value: list[str] | None, caller: str) -> tuple[str, ...] | None:
    """``platforms`` normalized (``amd64`` is ``linux/amd64``), duplicates merged, each one checked."""
    if value is None:
        return None
    try:
        return canonical_all(value)
    except UsageError as error:
        raise BuildFileError(f"{caller}: attribute 'platforms': {error.message}") from None


def _record(ctx: PackageContext, target: Target | ImageTestTarget) -> None:
    name = target.label.name
    if name in ctx.targets or name in ctx.tests:
        raise BuildFileError(f"duplicate target name {name!r} in package //{ctx.package}")
    if isinstance(target, ImageTestTarget):
        ctx.tests[name] = target
    else:
        ctx.targets[name] = target


def _repository(kwargs: dict[str, Any], rule: str) -> str:
    """``repository`` (default: the target's name), checked against Docker's reference grammar."""
    name: str = kwargs["name"]
    repository: str = kwargs.get("repository") or name
    problem = repository_problem(repository)
    if problem is None:
        return repository
    lowered = repository.lower()
    hint = f" (did you mean {lowered!r}?)" if valid_repository(lowered) else ""
    if kwargs.get("repository"):
        what = f"attribute 'repository' = {repository!r} is not an image repository: {problem}{hint}"
    else:  # the name stands in for it
        what = f"the target name {name!r} is not an image repository, so give a 'repository': {problem}{hint}"
    raise BuildFileError(f"{rule}(name={name!r}): {what}; {_REPOSITORY_FORM}")


_REPOSITORY_FORM = (
    "a repository is [host[:port]/]path/to/name: lowercase letters and digits, joined by '.', '_', '__' or '-', "
    "path components separated by '/'"
)


def _tags(kwargs: dict[str, Any], rule: str) -> tuple[str, ...]:
    tags = tuple(kwargs.get("tags", ["latest"]))
    if not tags:
        raise BuildFileError(f"{rule}(name={kwargs['name']!r}): tags must not be empty")
    for tag in tags:
        if not valid_tag(tag):
            raise BuildFileError(
                f"{rule}(name={kwargs['name']!r}): attribute 'tags' has {tag!r}, which is not an image tag: "
                "up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )
    return tags


def image(ctx: PackageContext, *args: Any, **kwargs: Any) -> None:
    check_attrs("image", IMAGE_ATTRS, args, kwargs)
    name: str = kwargs["name"]
    context = _workspace_path(ctx, kwargs.get("context", "."), what="context", must_exist="dir")
    dockerfile = _workspace_path(ctx, kwargs.get("dockerfile", "Dockerfile"), what="dockerfile", must_exist="file")
    srcs: tuple[str, ...] | None = None
    if kwargs.get("srcs") is not None:
        context_dir = ctx.root / context
        rels = []
        for src in kwargs["srcs"]:
            path = _workspace_path(ctx, src, what="srcs entry", must_exist=None)
            rel = os.path.relpath(ctx.root / path, context_dir)
            if rel.startswith(".."):
                raise BuildFileError(f"image(name={name!r}): srcs entry {src!r} is outside the context")
            rels.append(PurePosixPath(Path(rel)).as_posix())
        srcs = tuple(sorted(set(rels)))
    base = kwargs.get("base")
    _record(
        ctx,
        ImageTarget(
            label=Label(ctx.package, name),
            dockerfile=dockerfile,
            context=context,
            srcs=srcs,
            repository=_repository(kwargs, "image"),
            tags=_tags(kwargs, "image"),
            build_args=_pairs(kwargs.get("build_args")),
            target=kwargs.get("target"),
            platforms=platforms_attr(kwargs.get("platforms"), f"image(name={name!r})"),
            labels=_pairs(kwargs.get("labels")),
            base=None if base is None else tuple(Label.parse(b, current_package=ctx.package) for b in base),
            hermetic=kwargs.get("hermetic"),
            lint_ignore=_lint_ignore(kwargs.get("lint_ignore"), name),
            secrets=_secrets(ctx, kwargs.get("secrets"), name),
            ssh=_ssh(kwargs.get("ssh"), name),
            build_file=ctx.build_file,
        ),
    )


def _lint_ignore(value: Mapping[str, str] | None, name: str) -> Pairs:
    for rule, reason in (value or {}).items():
        if not reason.strip():
            raise BuildFileError(f"image(name={name!r}): lint_ignore[{rule!r}] needs a reason")
    return _pairs(value)


_BUILDKIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_FORM = 'a secret is "env:NAME" (an environment variable) or "file:path" (relative to the package)'


def _secrets(ctx: PackageContext, value: Mapping[str, str] | None, name: str) -> Pairs:
    """``secrets``: id -> ``env:NAME`` | ``file:path`` (the path made workspace-relative, checked inside).

    Only where each value is; whether the variable is set or the file exists is checked when a build
    needs it (a cached build needs no secret).
    """
    found = []
    for secret_id, source in (value or {}).items():
        where = f"image(name={name!r}): secrets[{secret_id!r}]"
        if not _BUILDKIT_ID.fullmatch(secret_id):
            raise BuildFileError(
                f"{where}: a secret id is letters, digits, '_', '.' and '-', not starting with '_', '.' or '-'"
            )
        kind, sep, rest = source.partition(":")
        if not sep or kind not in ("env", "file") or not rest:
            raise BuildFileError(f"{where} = {source!r}: {_SECRET_FORM}")
        if kind == "env":
            if not _ENV_NAME.fullmatch(rest):
                raise BuildFileError(f"{where} = {source!r}: {rest!r} is not an environment variable name")
            found.append((secret_id, f"env:{rest}"))
        else:
            path = _workspace_path(ctx, rest, what=f"{where}: file", must_exist=None)
            found.append((secret_id, f"file:{path}"))
    return tuple(sorted(found))


def _ssh(value: list[str] | None, name: str) -> tuple[str, ...]:
    for agent in value or ():
        if not _BUILDKIT_ID.fullmatch(agent):
            raise BuildFileError(
                f"image(name={name!r}): ssh has {agent!r}, which is not an ssh id: letters, digits, '_', '.' "
                "and '-' (\"default\" forwards $SSH_AUTH_SOCK)"
            )
    return tuple(sorted(set(value or ())))


def image_test(ctx: PackageContext, *args: Any, **kwargs: Any) -> None:
    check_attrs("image_test", IMAGE_TEST_ATTRS, args, kwargs)
    name: str = kwargs["name"]
    from orchestrator.core.testspec import canonical_spec  # only BUILD files with tests pay for it

    image = kwargs.get("image")
    if not image:
        raise BuildFileError(f"image_test(name={name!r}): image is required (a label or an image reference)")
    if image.startswith(":"):
        image = f"//{ctx.package}{image}"
    spec = canonical_spec(
        f"image_test(name={name!r})", kwargs.get("commands", []), kwargs.get("files", []), kwargs.get("metadata")
    )
    _record(
        ctx,
        ImageTestTarget(
            label=Label(ctx.package, name),
            image=image,
            spec=spec,
            platforms=platforms_attr(kwargs.get("platforms"), f"image_test(name={name!r})"),
            build_file=ctx.build_file,
        ),
    )


def rootfs_image(ctx: PackageContext, *args: Any, **kwargs: Any) -> None:
    check_attrs("rootfs_image", ROOTFS_ATTRS, args, kwargs)
    name: str = kwargs["name"]
    tarball, script = kwargs.get("tarball"), kwargs.get("script")
    if (tarball is None) == (script is None):
        raise BuildFileError(f"rootfs_image(name={name!r}): give exactly one of tarball= or script=")
    _record(
        ctx,
        RootfsTarget(
            label=Label(ctx.package, name),
            tarball=None if tarball is None else _workspace_path(ctx, tarball, what="tarball", must_exist="file"),
            script=None if script is None else _workspace_path(ctx, script, what="script", must_exist="file"),
            srcs=tuple(
                sorted(_workspace_path(ctx, s, what="srcs entry", must_exist="file") for s in kwargs.get("srcs", []))
            ),
            repository=_repository(kwargs, "rootfs_image"),
            tags=_tags(kwargs, "rootfs_image"),
            platforms=platforms_attr(kwargs.get("platforms"), f"rootfs_image(name={name!r})"),
            labels=_pairs(kwargs.get("labels")),
            build_file=ctx.build_file,
        ),
    )


def glob_rule(ctx: PackageContext, include: list[str], exclude: list[str] | None = None) -> list[str]:
    for pattern in (*include, *(exclude or ())):
        if pattern.startswith("/") or ".." in pattern.split("/"):
            raise BuildFileError(f"glob pattern {pattern!r} must stay inside the package")
    return glob(str(ctx.directory), include, exclude or (), ctx.witness)


def rule_functions(current: Callable[[], PackageContext]) -> dict[str, Callable[..., Any]]:
    """The names BUILD files see, bound to whichever package is being evaluated now."""
    return {
        "image": lambda *a, **k: image(current(), *a, **k),
        "rootfs_image": lambda *a, **k: rootfs_image(current(), *a, **k),
        "image_test": lambda *a, **k: image_test(current(), *a, **k),
        "glob": lambda include, exclude=None: glob_rule(current(), list(include), list(exclude or [])),
        "package_name": lambda: current().package,
    }
