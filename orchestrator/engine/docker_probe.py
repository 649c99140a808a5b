"""The ContainerProbe on a Docker Engine: commands in throwaway containers, files read from archives.

The client comes from an ``EngineConnection`` (``engine.py``, where the executor package imports
``docker``), as for ``docker.py``; SDK and HTTP exceptions are translated by the connection's
``errors``, and an archive that cannot be read, here:

    connection refused, no socket, timeouts    -> DaemonUnavailable (exit 2)
    an API error, a broken archive             -> EngineError (exit 2)

except where the engine's refusal is the answer: a command that cannot start (no such file, not
executable, unknown user) ends with the exit code ``docker run`` gives it (127, 126, 128) and the
engine's message as its stderr, and a path the image lacks is None.

Every container made here carries the label ``org.orchestrator.test-run=1`` and is removed with its
anonymous volumes when the question is answered (also on a timeout or an error), so leftovers of a
killed run are found with ``docker ps -a --filter label=org.orchestrator.test-run``. Commands run
without a network: a result that depended on the network could not be cached. Files are read
without starting a container: one is created, never started, and ``GET /containers/{id}/archive``
gives the entry's tar header (the entry itself: a symlink is not followed).
"""

from __future__ import annotations

import socket
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

from orchestrator.core.platforms import normalize
from orchestrator.engine.connection import DEFAULT_TIMEOUT_S, EngineConnection, EngineError, sdk
from orchestrator.engine.probe import CONTENT_LIMIT, CommandRun, ContainerProbe, FileFacts, FileType, ImageConfig

TEST_RUN_LABEL = "org.orchestrator.test-run"
PROBE_ENTRYPOINT = "/.orchestrator-probe"  # the command of containers never started (scratch images have none)
START_FAILED_EXIT = 127  # docker run's code for a command that could not start, when the engine gives none


class DockerProbe:
    """Answers the checks' questions on one Docker Engine; safe to share between threads.

    ``base_url`` defaults to ``DOCKER_HOST`` (with its TLS settings), else the local socket;
    ``tls_dir`` and ``platforms`` as ``EngineConnection`` takes them. The client is made on first use.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        tls_dir: str | None = None,
        platforms: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._engine = EngineConnection(base_url, tls_dir=tls_dir, platforms=platforms, timeout=timeout)

    @property
    def url(self) -> str:
        return self._engine.url

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
        api = self._engine.client()
        started = time.monotonic()
        container = self._create(
            api, image, entrypoint=command[0], args=command[1:], env=env, user=user, platform=platform
        )
        try:
            failed_start = self._start(api, container)
            if failed_start is not None:
                return CommandRun(
                    exit_code=failed_start[0],
                    stdout="",
                    stderr=failed_start[1],
                    duration_s=time.monotonic() - started,
                )
            exit_code, timed_out = self._wait(api, container, timeout_s)
            with self._engine.errors(f"reading the output of a command in {image}"):
                stdout = api.logs(container, stdout=True, stderr=False)
                stderr = api.logs(container, stdout=False, stderr=True)
            return CommandRun(
                exit_code=-1 if timed_out else exit_code,
                stdout=stdout.decode("utf-8", "replace"),
                stderr=stderr.decode("utf-8", "replace"),
                duration_s=time.monotonic() - started,
                timed_out=timed_out,
            )
        finally:
            self._remove(api, container)

    def file(self, image: str, path: str, *, read_content: bool) -> FileFacts | None:
        api = self._engine.client()
        container = self._create(api, image, entrypoint=PROBE_ENTRYPOINT, args=(), env={}, user=None, platform=None)
        try:
            return self._read_entry(api, container, image, _entry_path(path), read_content)
        finally:
            self._remove(api, container)

    def config(self, image: str) -> ImageConfig:
        api = self._engine.client()
        with self._engine.errors(f"inspecting image {image}"):
            try:
                data = api.inspect_image(image)
            except sdk().errors.NotFound:
                raise EngineError(f"the Docker Engine at {self.url} has no image {image}") from None
        return image_config(data.get("Config") or {})

    def close(self) -> None:
        self._engine.close()

    # --- containers --------------------------------------------------------------------------

    def _create(
        self,
        api: Any,
        image: str,
        *,
        entrypoint: str,
        args: Sequence[str],
        env: Mapping[str, str],
        user: str | None,
        platform: str | None,
    ) -> str:
        # The platform parameter only for a foreign platform (as for builds): the engine then checks
        # that the image is for it.
        foreign = platform if platform and normalize(platform) != self._engine.native_platform() else None
        with self._engine.errors(f"creating a container of {image}"):
            created = api.create_container(
                image,
                entrypoint=[entrypoint],
                command=list(args),  # with an entrypoint given, the image's CMD is not appended
                environment=dict(env),
                user=user or None,
                labels={TEST_RUN_LABEL: "1"},
                host_config=api.create_host_config(network_mode="none"),
                platform=foreign,
            )
        return str(created["Id"])

    def _start(self, api: Any, container: str) -> tuple[int, str] | None:
        """Start the container; (exit code, the engine's message) when the command cannot start."""
        errors = sdk().errors
        with self._engine.errors("starting a container"):
            try:
                api.start(container)
            except errors.APIError as exc:
                state = api.inspect_container(container).get("State") or {}
                return int(state.get("ExitCode") or START_FAILED_EXIT), str(exc.explanation or exc)
        return None

    def _wait(self, api: Any, container: str, timeout_s: float) -> tuple[int, bool]:
        """The exit code, and whether the command outlived ``timeout_s`` (it is killed on removal)."""
        import requests

        with self._engine.errors("waiting for a command"):
            try:
                status = api.wait(container, timeout=timeout_s)
            except requests.RequestException as exc:
                if not _is_read_timeout(exc):
                    raise
                return -1, True
        return int(status.get("StatusCode", -1)), False

    def _read_entry(self, api: Any, container: str, image: str, path: str, read_content: bool) -> FileFacts | None:
        action = f"reading {path} in {image}"
        with self._engine.errors(action), self._archive_errors(action):
            response = api.get(api._url("/containers/{0}/archive", container), params={"path": path}, stream=True)
            with closing(response):
                if response.status_code == 404:
                    return None
                if response.status_code >= 400:
                    raise EngineError(
                        f"the Docker Engine at {self.url} failed reading {path} in {image}: {response.text}"
                    )
                response.raw.decode_content = True  # the engine may gzip the archive
                # Only the first entry is read (for a directory, the rest of the tree is never
                # fetched: closing the response stops the engine's archiving).
                with tarfile.open(fileobj=response.raw, mode="r|") as tar:
                    member = tar.next()
                    if member is None:
                        raise EngineError(f"the Docker Engine at {self.url} sent an empty archive of {path}")
                    return _facts(tar, member, read_content)

    def _remove(self, api: Any, container: str) -> None:
        with self._engine.errors("removing a container"):
            api.remove_container(container, force=True, v=True)  # v: the image's anonymous volumes too

    @contextmanager
    def _archive_errors(self, action: str) -> Iterator[None]:
        """An archive from the engine that tarfile cannot read, as an EngineError."""
        try:
            yield
        except tarfile.TarError as exc:
            raise EngineError(f"the Docker Engine at {self.url} sent a broken archive {action}: {exc}") from exc


def image_config(config: Mapping[str, Any]) -> ImageConfig:
    """``docker inspect``'s ``Config`` as an ImageConfig."""
    env = {}
    for item in config.get("Env") or ():
        name, _, value = str(item).partition("=")
        env[name] = value
    return ImageConfig(
        user=str(config.get("User") or ""),
        workdir=str(config.get("WorkingDir") or ""),
        env=env,
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        exposed_ports=tuple(sorted(config.get("ExposedPorts") or {})),
        labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        volumes=tuple(sorted(config.get("Volumes") or {})),
    )


def _entry_path(path: str) -> str:
    """The path without a trailing slash (which would make the engine follow a symlink)."""
    return path.rstrip("/") or "/"


def _facts(tar: tarfile.TarFile, member: tarfile.TarInfo, read_content: bool) -> FileFacts:
    if member.isreg():
        kind = FileType.FILE
    elif member.isdir():
        kind = FileType.DIR
    elif member.issym():
        kind = FileType.SYMLINK
    else:
        kind = FileType.OTHER
    content = None
    truncated = False
    if read_content and kind is FileType.FILE:
        extracted = tar.extractfile(member)
        assert extracted is not None  # a regular file always has data
        with extracted:
            content = extracted.read(CONTENT_LIMIT + 1)
        truncated = len(content) > CONTENT_LIMIT
        content = content[:CONTENT_LIMIT]
    return FileFacts(
        type=kind,
        mode=member.mode & 0o7777,  # the engine's headers carry the type bits too (0o120777 for a link)
        uid=member.uid,
        gid=member.gid,
        size=member.size,
        link_target=member.linkname if kind is FileType.SYMLINK else None,
        content=content,
        truncated=truncated,
    )


def _is_read_timeout(exc: BaseException) -> bool:
    """Whether a requests exception is a read that timed out (requests wraps it in ConnectionError)."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.ReadTimeout):
        return True
    current: BaseException | None = exc
    while current is not None:
        if any(isinstance(a, urllib3.exceptions.ReadTimeoutError | socket.timeout) for a in (current, *current.args)):
            return True
        current = current.__cause__ or current.__context__
    return False


if TYPE_CHECKING:
    _conforms: ContainerProbe = DockerProbe()
