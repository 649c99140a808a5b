"""The Executor on a Docker Engine, through the docker SDK's low-level ``APIClient``.

The client, the engine's address and its platform come from an ``EngineConnection`` (``connection.py``,
where the engine package imports ``docker``, lazily; ``registry/client.py`` talks HTTP to registries
itself). Every SDK and HTTP exception is translated (``raise ... from exc``), by the connection's
``errors`` and here:

    connection refused, no socket, timeouts    -> DaemonUnavailable (exit 2)
    an API error other than "no such image"    -> EngineError (exit 2)
    a build that ran and failed, or cancelled  -> BuildFailed (exit 1)
    an engine silent past the engine timeout   -> BuildFailed (exit 1), naming the engine and timeout
    a context that no longer has its key       -> InputChanged (exit 1), before anything is sent

A build sends the orchestrator's own context tar (``tarball``), so the engine receives exactly the
hashed files, with the rebound Dockerfile; the tar is written and checked against the key's digest
before a byte is sent. The image is built untagged and verified by its ID (key label, platform);
the pipeline tags it. While the build stream is quiet the engine is pinged; when it has answered
nothing for the request's engine timeout (a frozen dockerd), the build is abandoned with BuildFailed.

The build is posted on the client's HTTP session rather than through ``APIClient.build``, which
hides the response: cancelling needs its socket, because shutting the socket down is the only way
to wake a reader blocked on a silent ``RUN`` step. When the connection closes, the engine cancels
the build, kills the step's container and removes it.

``select_builder`` can switch the executor to BuildKit (``buildkit_probe.py`` finds a docker CLI that
reaches it); its builds then go through ``buildkit.py``, with the same label, the same context
guarantees and the same verification (``_verify``). The log and the watchdog both builders share
are in ``buildlog.py``.
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
import threading
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.core.platforms import normalize
from orchestrator.dockerfile import with_label_instruction
from orchestrator.engine.api import (
    BUILDER_CHOICES,
    KEY_LABEL,
    BuilderChoice,
    BuildFailed,
    BuildKitUnavailable,
    BuildRequest,
    BuildResult,
    DaemonUnavailable,
    Executor,
    ImageInfo,
    ImageSummary,
    Progress,
    StoredImage,
    TransferFailed,
)
from orchestrator.engine.buildkit import build_with_buildkit, pinned_tag
from orchestrator.engine.buildkit_probe import (
    BuildKitProbe,
    BuildKitWay,
    candidate_clis,
    fallback_warning,
    unavailable_message,
)
from orchestrator.engine.buildlog import BuildLog, Watchdog, frozen_message, when_set
from orchestrator.engine.connection import DEFAULT_TIMEOUT_S, EngineConnection, EngineError, sdk
from orchestrator.engine.leftovers import BuildJournal
from orchestrator.engine.tarball import context_tar_stream
from orchestrator.errors import InputChanged, OrchestratorError, failure_reason

CLASSIC_DETAIL = "the engine's classic builder (POST /build)"
SAVE_CHUNK = 1 << 20  # bytes read at a time from ``docker save``

_BuildLog = BuildLog  # the name tests/unit/test_docker_stream.py uses


class DockerExecutor:
    """Builds, inspects and tags images on one Docker Engine; safe to share between threads.

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
        self._journal = BuildJournal(None, self._engine.url)  # nothing kept until journal_builds_in()
        self._sweep_lock = threading.Lock()
        self._swept = False
        self._buildkit: BuildKitWay | None = None  # set by select_builder; None: the classic builder
        self.buildkit_probe = BuildKitProbe(
            lambda: self._engine.url,
            self._remove_probe_image,
            candidate_clis,
            identity=self._identity,
            tls_dir=self._engine.tls_dir,
        )

    @property
    def url(self) -> str:
        """The engine's address, for messages."""
        return self._engine.url

    def ping(self, timeout: float | None = None) -> None:
        self._engine.ping(timeout=timeout)

    def select_builder(self, choice: str) -> BuilderChoice:
        if choice not in BUILDER_CHOICES:
            raise ValueError(f"unknown builder {choice!r}: one of {', '.join(BUILDER_CHOICES)}")
        if choice == "classic":
            self._buildkit = None
            return BuilderChoice(name="classic", detail=CLASSIC_DETAIL)
        self.ping()  # an engine that is down is DaemonUnavailable, not a missing BuildKit
        found = self.buildkit_probe.result()  # probed once per executor, here and not before
        if found.way is None:
            if choice == "buildkit":
                raise BuildKitUnavailable(unavailable_message(found.reasons))
            self._buildkit = None
            return BuilderChoice(name="classic", detail=CLASSIC_DETAIL, warning=fallback_warning(found.reasons))
        self._buildkit = found.way
        return BuilderChoice(name="buildkit", detail=found.way.detail)

    def _identity(self) -> str:
        """The engine's ID and version: what a kept BuildKit probe holds for."""
        info = self._engine.get_json("/info", "asking the engine who it is")
        return f"{info.get('ID')} {info.get('ServerVersion')}"

    def _remove_probe_image(self, image_id: str) -> None:
        with suppress(OrchestratorError):
            self.remove_image(image_id)

    def build(self, request: BuildRequest, cancel: threading.Event, progress: Progress | None = None) -> BuildResult:
        started = time.monotonic()
        with BuildLog(request.log_path) as log, self._journal.entry() as containers:
            log.containers = containers
            log.progress = progress
            log.line(f"# {request.node}: building {request.image}")
            self._sweep_leftovers(log)
            if cancel.is_set():
                raise log.failure(f"{request.node}: cancelled")
            dockerfile_text = with_label_instruction(
                request.dockerfile_text,
                dict(request.labels),
                path=request.dockerfile_path,
                build_args=dict(request.build_args),
                target=request.target,
            )
            way = self._buildkit
            if way is not None:
                info = self._buildkit_attempt(way, request, dockerfile_text, cancel, log)
                return BuildResult(image_id=info.image_id, duration_s=time.monotonic() - started, builder="buildkit")
            if request.secrets or request.ssh:
                raise log.failure(
                    f"{request.node}: build secrets and ssh forwarding need BuildKit, and this build uses the classic "
                    "builder (--executor buildkit)"
                )
            api = self._engine.client()
            try:
                info = self._attempt(api, request, dockerfile_text, cancel, log)
            except _PlatformsMixed:
                if request.no_cache:
                    raise
                log.line(
                    "# the engine's layer cache gave this build a layer of another platform: building again without it"
                )
                info = self._attempt(api, replace(request, no_cache=True), dockerfile_text, cancel, log)
        return BuildResult(image_id=info.image_id, duration_s=time.monotonic() - started)

    def _buildkit_attempt(
        self, way: BuildKitWay, request: BuildRequest, dockerfile_text: str, cancel: threading.Event, log: BuildLog
    ) -> ImageInfo:
        """One build through BuildKit (``buildkit.py``) and the same verification as the classic path's."""
        image_id = build_with_buildkit(
            way,
            request,
            dockerfile_text,
            engine=self._engine,
            engine_timeout=self._engine_timeout(request),
            pin=lambda hex_id: self._pin(hex_id, request, log),
            cancel=cancel,
            log=log,
        )
        try:
            return self._verify(request, image_id, log)
        except _PlatformsMixed as exc:  # no layer-cache mix-up to retry around: BuildKit keys by platform
            raise BuildFailed(str(exc), log_path=exc.log_path, log_tail=exc.log_tail) from None

    def _pin(self, hex_id: str, request: BuildRequest, log: BuildLog) -> None:
        """Tag the image ``sha256:<hex_id>`` ``orchestrator-pinned:<hex_id>`` (BuildKit cannot use an ID in FROM)."""
        image_id = f"sha256:{hex_id}"
        repository, tag = pinned_tag(hex_id).split(":")
        try:
            known = self.inspect(pinned_tag(hex_id))
            if known is not None and known.image_id == image_id:
                return
            if self.inspect(image_id) is None:
                raise log.failure(f"{request.node}: the engine does not have the pinned image {image_id}")
            self.tag(image_id, repository, tag)
        except EngineError as exc:
            raise log.failure(f"{request.node}: cannot tag the pinned image {image_id} for BuildKit: {exc}") from exc

    def _engine_timeout(self, request: BuildRequest) -> float:
        return request.engine_timeout_s or self._engine.timeout

    def _attempt(
        self, api: Any, request: BuildRequest, dockerfile_text: str, cancel: threading.Event, log: BuildLog
    ) -> ImageInfo:
        """One build and its verification.

        The classic builder keys its layer cache by parent image and command only, so the first step
        of a FROM-scratch stage (no parent) matches the same step built for another platform; the
        build then fails, or yields an image of the wrong platform. Either raises _PlatformsMixed.
        """
        try:
            context = context_tar_stream(
                request.context,
                dockerfile_path=request.dockerfile_path,
                dockerfile_text=dockerfile_text,
                extra_files=request.extra_files,
                check=request.context_check,
            )
        except InputChanged as exc:
            log.line(f"ERROR: {exc}")
            raise
        with context:
            image_id = self._run_build(api, request, context, cancel, log)
        return self._verify(request, image_id, log)

    def inspect(self, reference: str) -> ImageInfo | None:
        api = self._engine.client()
        with self._engine.errors(f"inspecting image {reference}"):
            try:
                data = api.inspect_image(reference)
            except sdk().errors.NotFound:
                return None
        return _image_info(data)

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        api = self._engine.client()
        with self._engine.errors(f"tagging {image_id} as {repository}:{tag}"):
            if not api.tag(image_id, repository, tag, force=True):
                raise EngineError(f"the Docker Engine at {self.url} did not tag {image_id} as {repository}:{tag}")

    def pull(self, reference: str, platform: str) -> ImageInfo:
        repository, tag = _split_reference(reference)
        api = self._engine.client()
        with self._transfer_errors("pull", reference), self._engine.errors(f"pulling {reference}"):
            for message in api.pull(repository, tag=tag, platform=platform, stream=True, decode=True):
                _raise_stream_error(message, "pull", reference)
        info = self.inspect(reference)
        if info is None:
            raise TransferFailed(f"pulled {reference}, but the engine does not have it")
        return info

    def push(self, reference: str) -> str:
        repository, tag = _split_reference(reference)
        api = self._engine.client()
        digest = ""
        with self._transfer_errors("push", reference), self._engine.errors(f"pushing {reference}"):
            for message in api.push(repository, tag=tag, stream=True, decode=True):
                _raise_stream_error(message, "push", reference)
                aux = message.get("aux")
                if isinstance(aux, Mapping) and isinstance(aux.get("Digest"), str):
                    digest = str(aux["Digest"])
        if not digest:
            raise TransferFailed(f"the push of {reference} ended without a manifest digest")
        return digest

    def native_platform(self) -> str:
        return self._engine.native_platform()

    def is_local(self) -> bool:
        return self.url.startswith(("unix://", "http+unix://"))

    def remove_image(self, reference: str, *, force: bool = False) -> bool:
        """``docker rmi``: untag ``reference`` (an ID: delete the image); False when it did not exist."""
        api = self._engine.client()
        with self._engine.errors(f"removing image {reference}"):
            try:
                api.remove_image(reference, force=force)
            except sdk().errors.NotFound:
                return False
        return True

    def references(self) -> Mapping[str, ImageSummary]:
        images = self._engine.get_json("/images/json", "listing images")
        found: dict[str, ImageSummary] = {}
        for image in images:
            summary = ImageSummary(image_id=image["Id"], labels=types.MappingProxyType(dict(image.get("Labels") or {})))
            for reference in image.get("RepoTags") or ():
                if reference != "<none>:<none>":
                    found[reference] = summary
        return found

    def image_ids(self, repository: str) -> tuple[str, ...]:
        """The IDs of the images tagged in ``repository``, sorted."""
        api = self._engine.client()
        with self._engine.errors(f"listing images of {repository}"):
            return tuple(sorted(set(api.images(name=repository, quiet=True))))

    def close(self) -> None:
        self._engine.close()

    # --- the build ---------------------------------------------------------------------------

    def _run_build(
        self, api: Any, request: BuildRequest, context: IO[bytes], cancel: threading.Event, log: BuildLog
    ) -> str | None:
        """Post the build and follow its output; the image ID from the ``aux`` message, if any."""
        # The platform parameter only for a foreign platform: engines before API 1.32 reject it, and the
        # classic builder ignores it anyway when the base is native (it built an amd64 image for arm64,
        # from the cache), which _verify catches.
        import requests

        platform = None if normalize(request.platform) == self._engine.native_platform() else request.platform
        timeout = self._engine_timeout(request)
        try:
            with self._engine.errors(f"building {request.image}"):
                # Sending the context and waiting for the first answer are bounded by the engine timeout.
                response = api.post(
                    api._url("/build"),
                    params=_build_params(request, platform),
                    data=context,
                    headers={"Content-Type": "application/tar"},
                    stream=True,
                    timeout=(timeout, timeout),
                )
        except DaemonUnavailable as exc:
            if isinstance(exc.__cause__, requests.Timeout):
                raise log.failure(self._frozen(request, timeout)) from exc
            raise
        with closing(response):
            _socket_timeout(response, None)  # from now on a RUN step may be silent for as long as it likes
            if response.status_code >= 400:
                raise log.failure(f"{request.node}: the engine refused the build: {_response_message(response)}")
            watchdog = Watchdog(self._engine, timeout, lambda: _shutdown(response))
            with when_set(cancel, lambda: _shutdown(response), name="docker-build-cancel"), watchdog:
                image_id = self._follow(response, request, cancel, log, watchdog)
            if watchdog.expired:
                raise log.failure(self._frozen(request, timeout))
            if cancel.is_set() and image_id is None:
                _shutdown(response)  # the engine stops the build when the connection closes
                raise log.failure(f"{request.node}: cancelled")
        return image_id

    def _frozen(self, request: BuildRequest, timeout: float) -> str:
        return frozen_message(request.node, self.url, timeout)

    def _follow(
        self, response: Any, request: BuildRequest, cancel: threading.Event, log: BuildLog, watchdog: Watchdog
    ) -> str | None:
        import requests

        image_id: str | None = None
        try:
            for raw in response.iter_lines():
                watchdog.heard()
                if cancel.is_set():
                    break
                if raw:
                    image_id = _on_message(_decode(raw), request, log) or image_id
        except requests.RequestException as exc:
            if not cancel.is_set() and not watchdog.expired:  # cancelling breaks the stream on purpose
                raise log.failure(
                    f"{request.node}: the connection to the Docker daemon at {self.url} broke during the build: "
                    f"{failure_reason(exc)}"
                ) from exc
        return image_id

    def _verify(self, request: BuildRequest, image_id: str | None, log: BuildLog) -> ImageInfo:
        """The built (untagged) image as the engine has it, with the key label and platform requested."""
        if image_id is None:
            raise log.failure(f"{request.node}: the build finished without naming the image it made")
        info = self.inspect(image_id)
        if info is None:
            raise log.failure(f"{request.node}: the build finished but its image {image_id} does not exist")
        problems = []
        if info.labels.get(KEY_LABEL) != request.key:
            problems.append(f"label {KEY_LABEL} is {info.labels.get(KEY_LABEL)!r}, expected {request.key!r}")
        if normalize(info.platform) != normalize(request.platform):
            problems.append(f"platform is {info.platform}, expected {request.platform}")
        if problems:
            if not info.repo_tags:  # the wrong image is ours alone (a tagged one may be somebody's)
                with suppress(OrchestratorError):
                    self.remove_image(info.image_id)
            failure = log.failure(f"{request.node}: the image built has the wrong platform/key: {'; '.join(problems)}")
            if normalize(info.platform) != normalize(request.platform):
                raise _PlatformsMixed.of(failure)
            raise failure
        return info

    # --- step containers a killed build left (leftovers.py) ---------------------------------

    def remember_probe_in(self, path: Path) -> None:
        """Keep the BuildKit probe's answer in ``path`` for later runs (see buildkit_probe.py)."""
        self.buildkit_probe.remember_in(path)

    def journal_builds_in(self, directory: Path) -> None:
        """Journal each build's step containers under ``directory``; the first build then removes
        those of earlier builds that did not end normally (dockerd killed mid-step)."""
        self._journal = BuildJournal(directory, self._engine.url)

    def _sweep_leftovers(self, log: BuildLog) -> None:
        with self._sweep_lock:
            if self._swept:
                return
            self._swept = True
            for leftover in self._journal.sweep(self._remove_leftover):
                log.line(f"# removed the step container {leftover.container_id} left by build process {leftover.pid}")

    def _remove_leftover(self, container_id: str) -> bool:
        """``docker rm -f`` the container whose full ID starts with ``container_id``; True once it is gone.

        Listed by ID, not inspected: inspecting resolves names too, and a name is not an ID.
        """
        with suppress(OrchestratorError):
            api = self._engine.client()
            with self._engine.errors(f"removing the step container {container_id}"):
                found = api.containers(all=True, quiet=True, filters={"id": container_id})
                matches = [c["Id"] for c in found if str(c["Id"]).startswith(container_id)]
                if len(matches) == 1:
                    with suppress(sdk().errors.NotFound):
                        api.remove_container(matches[0], force=True)
            return True  # removed, gone, or an ambiguous prefix, which is nobody's to remove
        return False

    # --- errors ------------------------------------------------------------------------------

    @contextmanager
    def _transfer_errors(self, verb: str, reference: str) -> Iterator[None]:
        """An engine refusing a pull or push (registry down, unknown tag) is a TransferFailed."""
        try:
            yield
        except EngineError as exc:
            raise TransferFailed(f"{verb} of {reference} failed: {exc}") from exc

    # --- clean-up (orchestrator gc) ------------------------------------------------------------

    def stored_images(self) -> tuple[StoredImage, ...]:
        images = self._engine.get_json("/images/json", "listing images")
        found = []
        for image in images:
            tags = tuple(sorted(t for t in image.get("RepoTags") or () if t != "<none>:<none>"))
            if tags:
                found.append(
                    StoredImage(
                        image_id=str(image["Id"]),
                        repo_tags=tags,
                        labels=types.MappingProxyType(dict(image.get("Labels") or {})),
                        size=int(image.get("Size") or 0),
                        created=int(image.get("Created") or 0),
                    )
                )
        return tuple(sorted(found, key=lambda i: i.image_id))

    def layers_size(self) -> int:
        usage = self._engine.get_json("/system/df", "measuring the engine's disk usage")
        return int(usage.get("LayersSize") or 0)

    # --- the supply-chain step (orchestrator sbom) ----------------------------------------------

    def save(self, reference: str) -> IO[bytes]:
        """``GET /images/{reference}/get`` streamed into a temporary file (deleted when closed)."""
        api = self._engine.client()
        saved = tempfile.TemporaryFile(prefix="orchestrator-save-")  # noqa: SIM115 (the caller closes it)
        try:
            with self._engine.errors(f"saving image {reference}"):
                for chunk in api.get_image(reference, chunk_size=SAVE_CHUNK):
                    saved.write(chunk)
            saved.seek(0)
        except BaseException:
            saved.close()
            raise
        return saved


def _split_reference(reference: str) -> tuple[str, str]:
    """``host:5000/repo:tag`` -> (``host:5000/repo``, ``tag``); ``repo@sha256:...`` -> (``repo``, the digest),
    which the engine's pull takes in place of a tag."""
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return repository, tag


def _raise_stream_error(message: Mapping[str, Any], verb: str, reference: str) -> None:
    if "error" in message or "errorDetail" in message:
        detail = message.get("errorDetail") or {}
        error = message.get("error") or detail.get("message") or f"the {verb} failed"
        raise TransferFailed(f"{verb} of {reference} failed: {str(error).strip()}")


def _build_params(request: BuildRequest, platform: str | None) -> dict[str, str]:
    """The query of ``POST /build``, as ``APIClient.build`` would make it."""
    # No "t": the image stays untagged until the pipeline has checked it (see the module docstring).
    params = {
        "dockerfile": request.dockerfile_path,
        "q": "0",
        "pull": "0",
        "rm": "1",
        "forcerm": "1",  # the engine honours exactly "1", not "True"
    }
    if request.build_args:
        params["buildargs"] = json.dumps(dict(request.build_args))
    # request.labels go into the Dockerfile as one LABEL instruction (see with_label_instruction)
    if request.target:
        params["target"] = request.target
    if request.network_mode:
        params["networkmode"] = request.network_mode
    if request.no_cache:
        params["nocache"] = "1"
    if platform:
        params["platform"] = platform
    return params


def _on_message(message: Mapping[str, Any], request: BuildRequest, log: BuildLog) -> str | None:
    """Log one message of the build stream; raise its error; return the image ID it announces."""
    if "error" in message or "errorDetail" in message:
        detail = message.get("errorDetail") or {}
        error = message.get("error") or detail.get("message") or "the build failed"
        failure = log.failure(f"{request.node}: {str(error).strip()}")
        if "does not match the specified platform" in str(error):
            raise _PlatformsMixed.of(failure)
        raise failure
    if "stream" in message:
        log.write(str(message["stream"]))
        log.containers.note(str(message["stream"]))
        step = _STEP.search(str(message["stream"]))
        if step is not None and log.progress is not None:
            log.progress(step.group(0).strip())
    if "status" in message:
        prefix = f"{message['id']}: " if message.get("id") else ""
        log.line(f"{prefix}{message['status']}")
    aux = message.get("aux")
    if isinstance(aux, Mapping) and isinstance(aux.get("ID"), str):
        return str(aux["ID"])
    built = _SUCCESSFULLY_BUILT.search(str(message.get("stream") or ""))
    return built.group(1) if built else None  # engines that send no aux message; inspect expands the short ID


_STEP = re.compile(r"^Step \d+/\d+ : .*$", re.MULTILINE)  # the classic builder starting a step
_SUCCESSFULLY_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})\s*$", re.MULTILINE)


def _decode(raw: bytes) -> Mapping[str, Any]:
    """One JSON line of the build stream; anything else is kept as output."""
    try:
        message = json.loads(raw)
    except ValueError:
        message = None
    if isinstance(message, dict):
        return message
    return {"stream": raw.decode("utf-8", "replace") + "\n"}


def _socket_timeout(response: Any, timeout: float | None) -> None:
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.settimeout(timeout)


def _shutdown(response: Any) -> None:
    """``shutdown(2)`` the response's socket: unlike ``close``, it interrupts a ``recv`` in another thread."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _response_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.text.strip()}"
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or body)


def _image_info(data: Mapping[str, Any]) -> ImageInfo:
    config = data.get("Config") or {}
    return ImageInfo(
        image_id=str(data["Id"]),
        labels=types.MappingProxyType(dict(config.get("Labels") or {})),
        os=str(data.get("Os") or ""),
        architecture=str(data.get("Architecture") or ""),
        variant=data.get("Variant") or None,
        repo_tags=tuple(data.get("RepoTags") or ()),
        onbuild=bool(config.get("OnBuild")),
    )


class _PlatformsMixed(BuildFailed):
    """The engine's layer cache handed a build a layer of another platform (see DockerExecutor._attempt)."""

    @classmethod
    def of(cls, failure: BuildFailed) -> _PlatformsMixed:
        return cls(str(failure), log_path=failure.log_path, log_tail=failure.log_tail)


if TYPE_CHECKING:
    _conforms: Executor = DockerExecutor()
