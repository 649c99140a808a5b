"""BuildKit or the classic builder: choosing once, and what the nodes to build need of the choice.

The pipeline asks the executor for a builder (``Executor.select_builder``) once, after planning, and
only when something is to be built: a fully cached run never probes. Then, before anything is built
(or pulled), :func:`check_builds` fails the run (exit 2) naming each target and the fix when:

- a target declares ``secrets`` or ``ssh`` and the builder is the classic one (``--executor
  classic``, or ``auto`` fell back): only BuildKit mounts secrets and ssh agents;
- a secret's environment variable is unset, or its file is missing;
- a target forwards an ssh agent and ``$SSH_AUTH_SOCK`` is unset;
- with BuildKit, a Dockerfile's ``# syntax=<image>`` directive names a frontend image the engine
  lacks (BuildKit would pull it from a registry; the classic builder ignores the line).

Secret values are never read here: only whether they exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import orchestrator.dockerfile as df
from orchestrator.core.model import ImageTarget, Node
from orchestrator.core.paths import check_inside
from orchestrator.engine.api import BuilderChoice, Executor, Secret
from orchestrator.errors import OrchestratorError, WorkspaceError
from orchestrator.graph.graph import TargetGraph

SSH_AUTH_SOCK = "SSH_AUTH_SOCK"


class BuilderError(OrchestratorError):
    """The nodes to build need what the selected builder or this machine cannot give (exit 2)."""


def build_secrets(target: ImageTarget, root: Path) -> tuple[Secret, ...]:
    """The target's secrets as a BuildRequest carries them: an environment variable's name, or an absolute path."""
    secrets = []
    for secret_id, source in target.secrets:
        kind, _, rest = source.partition(":")
        if kind == "env":
            secrets.append(Secret(id=secret_id, env=rest))
        else:
            secrets.append(Secret(id=secret_id, file=os.path.join(root, rest)))
    return tuple(secrets)


def check_builds(
    graph: TargetGraph,
    root: Path,
    nodes: Iterable[Node],
    builder: BuilderChoice,
    requested: str,
    executor: Executor,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Raise BuilderError listing what the nodes to build need and lack (see the module docstring)."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    frontends: dict[str, bool] = {}  # frontend image -> the engine has it
    for label in sorted({node.label for node in nodes}):
        target = graph.targets[label]
        if not isinstance(target, ImageTarget):
            continue
        if builder.name != "buildkit" and (target.secrets or target.ssh):
            used = []
            if target.secrets:
                used.append("secrets " + ", ".join(secret_id for secret_id, _ in target.secrets))
            if target.ssh:
                used.append("ssh " + ", ".join(target.ssh))
            if requested == "classic":
                why = "the executor asked is classic, by --executor or WORKSPACE's executor"
            else:
                why = f"{requested} fell back to it: {builder.warning or builder.detail}"
            problems.append(
                f"{label} uses {' and '.join(used)}, which only BuildKit can mount, and the classic builder "
                f"builds ({why}); build with --executor buildkit on an engine with BuildKit, "
                "or remove them from the target"
            )
            continue
        problems += _secret_problems(target, root, environ)
        if target.ssh and not environ.get(SSH_AUTH_SOCK):
            problems.append(
                f"{label} forwards the ssh agent ({', '.join(target.ssh)}) and ${SSH_AUTH_SOCK} is not set: "
                "start an agent and add a key (eval $(ssh-agent); ssh-add), or remove ssh from the target"
            )
        if builder.name == "buildkit":
            problems += _frontend_problems(target, root, executor, frontends)
    if problems:
        raise BuilderError("cannot build: " + "; ".join(problems) + ". Nothing was built")


def _secret_problems(target: ImageTarget, root: Path, environ: Mapping[str, str]) -> list[str]:
    problems = []
    for secret_id, source in target.secrets:
        kind, _, rest = source.partition(":")
        if kind == "env":
            if rest not in environ:
                problems.append(
                    f"{target.label}: secret {secret_id!r} is read from the environment variable {rest}, which is "
                    f"not set: set it before building (export {rest}=...)"
                )
            continue
        path = root / rest
        try:
            inside = check_inside(path, root, what=f"{target.label}: secret {secret_id!r} file")
        except WorkspaceError as error:
            problems.append(f"{error.message}: keep the file inside the workspace")
            continue
        if not inside.is_file():
            problems.append(
                f"{target.label}: secret {secret_id!r} is read from the file {rest}, which does not exist: "
                f"create it, or change secrets[{secret_id!r}] in {target.build_file}"
            )
    return problems


def _frontend_problems(target: ImageTarget, root: Path, executor: Executor, known: dict[str, bool]) -> list[str]:
    try:
        text = df.read(root / target.dockerfile, path=target.dockerfile)
    except OSError:
        return []  # the build says it cannot read the Dockerfile
    frontend = df.syntax_directive(text)
    if frontend is None:
        return []
    if frontend not in known:
        known[frontend] = executor.inspect(frontend) is not None
    if known[frontend]:
        return []
    return [
        f"{target.label}: {target.dockerfile} starts with # syntax={frontend}, a BuildKit frontend the engine "
        f"does not have: pull or import the frontend image {frontend} into the engine (docker pull/docker load), "
        "or remove the # syntax line"
    ]
