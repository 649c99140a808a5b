"""An in-memory ContainerProbe for unit tests: the test says what each image holds and what each
command prints; the fake records what it was asked (``runs``, ``reads``) so tests can assert that
nothing ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from orchestrator.engine.probe import CONTENT_LIMIT, CommandRun, ContainerProbe, FileFacts, ImageConfig
from orchestrator.errors import OrchestratorError


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCall:
    """One ``run`` as the fake received it."""

    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    user: str | None
    platform: str
    timeout_s: float


@dataclass(slots=True)
class FakeImage:
    """What one image holds: its files by absolute path, its configuration, and its commands' results
    (by argv; a command not listed cannot start: exit 127, like ``docker run``)."""

    files: dict[str, FileFacts] = field(default_factory=dict)
    config: ImageConfig = field(default_factory=ImageConfig)
    commands: dict[tuple[str, ...], CommandRun] = field(default_factory=dict)


class FakeProbe:
    def __init__(self, images: Mapping[str, FakeImage] | None = None) -> None:
        self.images: dict[str, FakeImage] = dict(images or {})
        self.runs: list[RunCall] = []
        self.reads: list[str] = []  # "image path" per ``file`` call

    def add(self, image: str, fake: FakeImage | None = None) -> FakeImage:
        self.images[image] = fake if fake is not None else FakeImage()
        return self.images[image]

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        user: str | None,
        platform: str,
        timeout_s: float,
    ) -> CommandRun:
        argv = tuple(command)
        self.runs.append(
            RunCall(image=image, command=argv, env=dict(env), user=user, platform=platform, timeout_s=timeout_s)
        )
        result = self._image(image).commands.get(argv)
        if result is None:
            return CommandRun(
                exit_code=127,
                stdout="",
                stderr=f'exec: "{argv[0]}": stat {argv[0]}: no such file or directory',
                duration_s=0.0,
            )
        return result

    def file(self, image: str, path: str, *, read_content: bool) -> FileFacts | None:
        self.reads.append(f"{image} {path}")
        facts = self._image(image).files.get(path.rstrip("/") or "/")
        if facts is None:
            return None
        if not read_content:
            return replace(facts, content=None, truncated=False)
        if facts.content is not None and len(facts.content) > CONTENT_LIMIT:
            return replace(facts, content=facts.content[:CONTENT_LIMIT], truncated=True)
        return facts

    def config(self, image: str) -> ImageConfig:
        return self._image(image).config

    def _image(self, image: str) -> FakeImage:
        if image not in self.images:
            raise OrchestratorError(f"the fake engine has no image {image}")
        return self.images[image]


if TYPE_CHECKING:
    _conforms: ContainerProbe = FakeProbe()
