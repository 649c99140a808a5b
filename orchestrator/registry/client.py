"""A small client for the OCI Distribution API v2 (Docker Registry HTTP API v2).

The registry serves as a shared build cache (``lookup``/``lookup_many`` of content tags) and
receives human tags (``tag_manifest``) and multi-platform indexes (``put_index``). Images
themselves are pushed and pulled by the engine; this module reads and writes manifests, and the
small blobs of artifacts attached to them (``push_blob``, ``blob``, ``put_referrer``,
``referrers_api``: see ``artifacts.py``).

``requests`` is imported lazily so that importing this module stays cheap; every exception it
raises is translated here (``raise ... from exc``):

    refused, reset, DNS, timeout, HTTP 5xx, 429    -> RegistryUnavailable (exit 2)
    401, 403; credentials that cannot be had      -> RegistryAuthError (a RegistryError, exit 2)
    any other refusal (400, 404 on PUT)            -> RegistryError (exit 2)
    404 on a manifest looked up                    -> None (not in the cache)

Credentials come from the Docker client's config file, as ``docker`` finds them: credential
helpers (``credHelpers``, ``credsStore``), then inline ``auths`` (see ``credentials.py``). Basic
and Bearer (token) challenges are answered; tokens are cached per scope.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError, failure_reason
from orchestrator.registry.credentials import Credentials, CredentialsError, read_credentials

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SINGLE_IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"}
)
# Lookups accept the index types too: distribution 2.8 answers 404 for an OCI index the client does
# not accept, and silently serves the linux/amd64 entry of a docker manifest list instead of the list.
LOOKUP_ACCEPT = ", ".join((DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST))
# Answers to GET /v2/<name>/referrers/<digest> that mean the registry has no referrers API.
_REFERRERS_UNSUPPORTED = frozenset({400, 404, 405, 406, 501})
LOOPBACK_HOSTS = ("localhost", "::1")
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")


class RegistryUnavailable(OrchestratorError):
    """The registry cannot be reached, timed out, or answered 5xx/429 (exit 2)."""


class RegistryError(OrchestratorError):
    """The registry answered and refused the request (exit 2)."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials or their rights (401, 403), or they could not be had (exit 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteImage:
    """A manifest in the registry; ``labels`` and ``platform`` are empty for an index."""

    repository: str  # the path inside the registry, prefix included ("cache/company/base")
    tag: str | None
    digest: str  # "sha256:..." of the manifest
    media_type: str
    size: int  # of the manifest, in bytes
    labels: Mapping[str, str] = field(hash=False)  # hashable all the same (sets, dict keys)
    platform: str  # "os/arch" or "os/arch/variant"; "" when not a single image


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestInfo:
    """What clean-up (``orchestrator gc``) needs to know of one manifest: what it refers to, and its age."""

    digest: str  # "sha256:..." of the manifest
    media_type: str
    size: int  # of the manifest, in bytes
    children: tuple[str, ...] = ()  # the manifests an index lists
    blobs: tuple[tuple[str, int], ...] = ()  # (digest, size) of an image's config and layers
    subject: str | None = None  # the manifest an attestation or signature is about (OCI 1.1)
    platform: str = ""  # of an image: "os/arch[/variant]"
    created: str | None = None  # an image's config ``created`` (ISO 8601)


class Registry:
    """One registry (``host[:port][/prefix]``), spoken to over one HTTP session; close() it."""

    def __init__(
        self,
        address: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
        auth_file: Path | None = None,
    ) -> None:
        scheme, self.address, self.host, self.prefix = parse_address(address)
        self.url = f"{scheme}://{self.host}"
        self._timeouts = (connect_timeout, read_timeout)
        self._auth_file = auth_file
        self._lock = threading.Lock()
        self._session: Any = None
        self._closed = False
        self._credentials: Credentials | None = None
        self._credentials_read = False
        self._basic = False  # the registry asked for Basic: send it on every request
        self._tokens: dict[str, str] = {}  # bearer tokens, by scope ("" for none)

    def __repr__(self) -> str:
        return f"Registry({self.address!r})"

    # --- names ---------------------------------------------------------------------------------

    def remote_repository(self, repository: str) -> str:
        """Where the local ``repository`` lives in this registry: prefix, then its path sans host."""
        first, slash, rest = repository.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            repository = rest
        remote = f"{self.prefix}/{repository}" if self.prefix else repository
        if not _REPOSITORY.fullmatch(remote):
            raise ValueError(f"not a valid repository name in a registry: {remote!r}")
        return remote

    def reference(self, repository: str, tag: str) -> str:
        """``host/remote-repository:tag``, as ``docker pull/push/tag`` name it."""
        return f"{self.host}/{self.remote_repository(repository)}:{tag}"

    # --- reading -------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise unless the registry answers ``/v2/`` (authenticating if it asks to)."""
        with self._response("GET", "/v2/", scope=None, action="answering /v2/") as response:
            self._check(response, "answering /v2/")

    def lookup(self, repository: str, tag: str) -> RemoteImage | None:
        """The manifest tagged ``tag`` in the local ``repository``'s remote, or None when absent."""
        remote = self.remote_repository(repository)
        _check_tag(tag)
        action = f"looking up {remote}:{tag}"
        path = f"/v2/{remote}/manifests/{tag}"
        with self._response("GET", path, scope=_pull(remote), action=action, headers={"Accept": LOOKUP_ACCEPT}) as r:
            if r.status_code == 404:
                return None
            self._check(r, action)
            body = self._content(r, action)
            media_type = _media_type(r, body)
            digest = _digest(r, body)
        manifest = _json_object(body, f"{self.address}: the manifest of {remote}:{tag}")
        labels: Mapping[str, str] = types.MappingProxyType({})
        platform = ""
        config_digest = _config_digest(media_type, manifest)
        if config_digest is not None:
            labels, platform = self._image_config(remote, config_digest)
        return RemoteImage(
            repository=remote,
            tag=tag,
            digest=digest,
            media_type=media_type,
            size=len(body),
            labels=labels,
            platform=platform,
        )

    def lookup_many(
        self, wanted: Sequence[tuple[str, str]], *, workers: int = 8
    ) -> dict[tuple[str, str], RemoteImage | None]:
        """``lookup`` of every ``(repository, tag)``, in parallel; the first error stops them all."""
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        unique = list(dict.fromkeys(wanted))
        if not unique:
            return {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique))), thread_name_prefix="registry")
        try:
            futures = {pool.submit(self.lookup, repository, tag): (repository, tag) for repository, tag in unique}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                if (exc := future.exception()) is not None:
                    raise exc
            return {futures[future]: future.result() for future in futures}
        finally:
            # Failing fast: queued lookups are cancelled, running ones finish in the background
            # (each within its timeouts) rather than being waited for.
            pool.shutdown(wait=False, cancel_futures=True)

    def manifest_bytes(self, repository: str, reference: str) -> tuple[str, bytes, str]:
        """``(media type, body, digest)`` of a manifest (by tag or digest), exactly as stored."""
        remote = self.remote_repository(repository)
        if not (_TAG.fullmatch(reference) or _DIGEST.fullmatch(reference)):
            raise ValueError(f"not a tag or a digest: {reference!r}")
        action = f"reading the manifest {remote}{_separator(reference)}{reference}"
        path = f"/v2/{remote}/manifests/{reference}"
        with self._response("GET", path, scope=_pull(remote), action=action, headers={"Accept": LOOKUP_ACCEPT}) as r:
            self._check(r, action)
            body = self._content(r, action)
            media_type = _media_type(r, body)
            digest = _digest(r, body)
        if reference.startswith("sha256:") and (actual := sha256_digest(body)) != reference:
            raise RegistryError(f"the registry at {self.address} answered {action} with other content ({actual})")
        return media_type, body, digest

    def image_config(self, repository: str, reference: str) -> dict[str, Any] | None:
        """The image config (its JSON) of the single-image manifest ``reference`` (a tag or digest).

        None when ``reference`` is an index or an artifact without an image config. The blob is
        checked against its digest.
        """
        remote = self.remote_repository(repository)
        media_type, body, _ = self.manifest_bytes(repository, reference)
        manifest = _json_object(body, f"{self.address}: the manifest {remote}{_separator(reference)}{reference}")
        digest = _config_digest(media_type, manifest)
        if digest is None:
            return None
        action = f"reading the image config {remote}@{digest}"
        with self._response("GET", f"/v2/{remote}/blobs/{digest}", scope=_pull(remote), action=action) as response:
            self._check(response, action)
            blob = self._content(response, action)
        if digest.startswith("sha256:") and (actual := sha256_digest(blob)) != digest:
            raise RegistryError(f"the registry at {self.address} answered {action} with other content ({actual})")
        return _json_object(blob, f"{self.address}: the image config {remote}@{digest}")

    def blob(self, repository: str, digest: str) -> bytes:
        """The blob ``digest`` of the local ``repository``'s remote, checked against its sha256 digest."""
        remote = self.remote_repository(repository)
        _check_digest(digest)
        action = f"reading the blob {remote}@{digest}"
        with self._response("GET", f"/v2/{remote}/blobs/{digest}", scope=_pull(remote), action=action) as response:
            self._check(response, action)
            data = self._content(response, action)
        if digest.startswith("sha256:") and (actual := sha256_digest(data)) != digest:
            raise RegistryError(f"the registry at {self.address} answered {action} with other content ({actual})")
        return data

    def manifest_json(self, repository: str, reference: str) -> dict[str, Any] | None:
        """The manifest ``reference`` (a tag or digest) as JSON, or None when the registry has no such manifest."""
        remote = self.remote_repository(repository)
        if not (_TAG.fullmatch(reference) or _DIGEST.fullmatch(reference)):
            raise ValueError(f"not a tag or a digest: {reference!r}")
        where = f"{remote}{_separator(reference)}{reference}"
        action = f"reading the manifest {where}"
        path = f"/v2/{remote}/manifests/{reference}"
        with self._response("GET", path, scope=_pull(remote), action=action, headers={"Accept": LOOKUP_ACCEPT}) as r:
            if r.status_code == 404:
                return None
            self._check(r, action)
            body = self._content(r, action)
        if reference.startswith("sha256:") and (actual := sha256_digest(body)) != reference:
            raise RegistryError(f"the registry at {self.address} answered {action} with other content ({actual})")
        return _json_object(body, f"{self.address}: the manifest {where}")

    def referrers_api(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        """The descriptors the referrers API (OCI distribution 1.1) lists for the manifest ``digest``.

        None when the registry has no referrers API: it answered 404 (distribution 2.8 does), 400,
        405, 406 or 501, or something other than an OCI image index. ``artifact_type`` is passed on as the
        ``artifactType`` filter, which registries MAY ignore: callers filter again. Pages (``Link``)
        are followed.
        """
        from urllib.parse import quote

        remote = self.remote_repository(repository)
        _check_digest(digest)
        action = f"listing the referrers of {remote}@{digest}"
        path: str | None = f"/v2/{remote}/referrers/{digest}"
        if artifact_type is not None:
            path = f"{path}?artifactType={quote(artifact_type, safe='')}"
        found: list[dict[str, Any]] = []
        while path is not None:
            headers = {"Accept": OCI_INDEX}
            with self._response("GET", path, scope=_pull(remote), action=action, headers=headers) as response:
                if response.status_code in _REFERRERS_UNSUPPORTED:
                    return None
                self._check(response, action)
                body = self._content(response, action)
                following = str((response.links or {}).get("next", {}).get("url") or "")
            try:
                index = json.loads(body)
            except ValueError:
                return None  # not an index: a registry that serves something else at this path
            if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
                return None
            found.extend(entry for entry in index["manifests"] if isinstance(entry, dict))
            path = _same_host_path(following, self.host) if following else None
        return found

    # --- writing -------------------------------------------------------------------------------

    def tag_manifest(self, repository: str, source: RemoteImage, tag: str) -> str:
        """Point ``tag`` at ``source``'s manifest (same repository), byte for byte; its digest."""
        self._require_inside(repository, [source])
        media_type, body, digest = self.manifest_bytes(repository, source.digest)
        self._put_manifest(repository, tag, media_type, body)
        return digest

    def put_index(self, repository: str, tag: str, images: Sequence[RemoteImage]) -> str:
        """Tag an OCI image index of ``images`` (one per platform) as ``tag``; the index's digest."""
        self._require_inside(repository, images)
        body = index_document(images)
        return self._put_manifest(repository, tag, OCI_INDEX, body)

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        """Store the manifest ``body`` (byte for byte) under ``reference``, a tag or its own digest; its digest."""
        return self._store_manifest(repository, reference, media_type, body)[0]

    def put_referrer(self, repository: str, media_type: str, body: bytes) -> tuple[str, str | None]:
        """Store a manifest that has a ``subject`` by its digest: ``(digest, OCI-Subject answered or None)``.

        A registry with the referrers API answers ``OCI-Subject``; without it, the client must keep
        the referrers tag up to date itself (``orchestrator/registry/artifacts.py``).
        """
        return self._store_manifest(repository, sha256_digest(body), media_type, body)

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` as a blob (one monolithic PUT), unless the registry already has it; its digest."""
        from urllib.parse import quote

        remote = self.remote_repository(repository)
        digest = sha256_digest(data)
        action = f"uploading the blob {remote}@{digest}"
        path = f"/v2/{remote}/blobs/{digest}"
        with self._response("HEAD", path, scope=_push(remote), action=action) as response:
            if response.status_code == 200:
                return digest
            if response.status_code != 404:
                self._check(response, action)
        start = f"/v2/{remote}/blobs/uploads/"
        with self._response("POST", start, scope=_push(remote), action=action, data=b"") as response:
            self._check(response, action)
            location = str(response.headers.get("Location") or "")
        if not location:
            raise RegistryError(f"the registry at {self.address} answered {action} without a Location")
        upload = _same_host_path(location, self.host, base=start)
        upload += ("&" if "?" in upload else "?") + "digest=" + quote(digest, safe="")
        headers = {"Content-Type": "application/octet-stream"}
        with self._response("PUT", upload, scope=_push(remote), action=action, headers=headers, data=data) as response:
            self._check(response, action)
            answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"the registry at {self.address} stored the blob {digest} as {answered}")
        return digest

    # --- clean-up (orchestrator gc) ------------------------------------------------------------

    def tags(self, repository: str) -> tuple[str, ...]:
        """Every tag of the local ``repository``'s remote, sorted; () when the registry has no such repository."""
        remote = self.remote_repository(repository)
        action = f"listing the tags of {remote}"
        path: str | None = f"/v2/{remote}/tags/list?n=1000"
        found: set[str] = set()
        while path is not None:
            with self._response("GET", path, scope=_pull(remote), action=action) as response:
                if response.status_code == 404:
                    return ()
                self._check(response, action)
                body = self._content(response, action)
                following = str((response.links or {}).get("next", {}).get("url") or "")
            listed = _json_object(body, f"{self.address}: the tags of {remote}").get("tags") or []
            found.update(str(tag) for tag in listed if isinstance(tag, str))
            # the next page, from the Link header: a path, or (some registries) a whole URL
            if following and not following.startswith("/"):
                following = "/" + following.split("://", 1)[-1].partition("/")[2]
            path = following or None
        return tuple(sorted(found))

    def describe(self, repository: str, reference: str) -> ManifestInfo:
        """The manifest ``reference`` (a tag or digest): what it refers to, and an image's platform and age."""
        remote = self.remote_repository(repository)
        media_type, body, digest = self.manifest_bytes(repository, reference)
        manifest = _json_object(body, f"{self.address}: the manifest {remote}{_separator(reference)}{reference}")
        subject = manifest.get("subject")
        info = ManifestInfo(
            digest=digest,
            media_type=media_type,
            size=len(body),
            subject=str(subject["digest"]) if isinstance(subject, dict) and "digest" in subject else None,
        )
        if media_type in INDEX_TYPES:
            entries = manifest.get("manifests") or []
            children = tuple(str(e["digest"]) for e in entries if isinstance(e, dict) and "digest" in e)
            return replace(info, children=children)
        blobs = tuple(
            (str(b["digest"]), int(b.get("size") or 0))
            for b in [manifest.get("config"), *(manifest.get("layers") or [])]
            if isinstance(b, dict) and "digest" in b
        )
        info = replace(info, blobs=blobs)
        config_digest = _config_digest(media_type, manifest)
        if config_digest is None:
            return info
        action = f"reading the image config {remote}@{config_digest}"
        with self._response("GET", f"/v2/{remote}/blobs/{config_digest}", scope=_pull(remote), action=action) as r:
            self._check(r, action)
            config = _json_object(
                self._content(r, action), f"{self.address}: the image config {remote}@{config_digest}"
            )
        parts = [str(config.get("os") or ""), str(config.get("architecture") or "")]
        if config.get("variant"):
            parts.append(str(config["variant"]))
        created = config.get("created")
        return replace(info, platform="/".join(parts), created=str(created) if created else None)

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete the manifest ``digest`` (and so every tag pointing at it); False when it was not there.

        The registry must allow deletes (distribution: ``storage: delete: enabled: true``); its blobs
        stay until the registry's own garbage collection (``registry garbage-collect``).
        """
        remote = self.remote_repository(repository)
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a digest: {digest!r}")
        action = f"deleting the manifest {remote}@{digest}"
        path = f"/v2/{remote}/manifests/{digest}"
        with self._response("DELETE", path, scope=f"repository:{remote}:delete", action=action) as response:
            if response.status_code == 404:
                return False
            if response.status_code == 405:
                raise RegistryError(
                    f"the registry at {self.address} does not allow deleting manifests ({action}); "
                    "enable deletes in its configuration (distribution: storage: delete: enabled: true)"
                )
            self._check(response, action)
        return True

    def close(self) -> None:
        with self._lock:
            session, self._session, self._closed = self._session, None, True
        if session is not None:
            session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- helpers -------------------------------------------------------------------------------

    def _require_inside(self, repository: str, images: Sequence[RemoteImage]) -> None:
        remote = self.remote_repository(repository)
        strangers = sorted({image.repository for image in images if image.repository != remote})
        if strangers:
            raise ValueError(f"images of {', '.join(strangers)} cannot be tagged in {remote}")

    def _put_manifest(self, repository: str, tag: str, media_type: str, body: bytes) -> str:
        _check_tag(tag)
        return self.put_manifest(repository, tag, media_type, body)

    def _store_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> tuple[str, str | None]:
        """PUT the manifest ``body`` as ``reference``; its digest and the ``OCI-Subject`` header answered, if any."""
        remote = self.remote_repository(repository)
        digest = sha256_digest(body)
        if _DIGEST.fullmatch(reference):
            if reference != digest:
                raise ValueError(f"the manifest's digest is {digest}, not {reference}")
        elif not _TAG.fullmatch(reference):
            raise ValueError(f"not a tag or a digest: {reference!r}")
        action = f"storing the manifest {remote}{_separator(reference)}{reference}"
        path = f"/v2/{remote}/manifests/{reference}"
        headers = {"Content-Type": media_type}
        with self._response("PUT", path, scope=_push(remote), action=action, headers=headers, data=body) as response:
            self._check(response, action)
            answered = response.headers.get("Docker-Content-Digest")
            subject = response.headers.get("OCI-Subject")
        if answered and answered != digest:
            raise RegistryError(
                f"the registry at {self.address} stored {remote}{_separator(reference)}{reference} as {answered}, "
                f"not {digest}"
            )
        return digest, str(subject) if subject else None

    def _image_config(self, remote: str, digest: str) -> tuple[Mapping[str, str], str]:
        """The labels and platform of the image config blob ``digest``."""
        action = f"reading the image config {remote}@{digest}"
        with self._response("GET", f"/v2/{remote}/blobs/{digest}", scope=_pull(remote), action=action) as response:
            self._check(response, action)
            body = self._content(response, action)
        config = _json_object(body, f"{self.address}: the image config {remote}@{digest}")
        inner = config.get("config") or {}
        raw_labels = inner.get("Labels") if isinstance(inner, dict) else None
        labels = {str(k): str(v) for k, v in (raw_labels or {}).items()} if isinstance(raw_labels, dict) else {}
        parts = [str(config.get("os") or ""), str(config.get("architecture") or "")]
        if config.get("variant"):
            parts.append(str(config["variant"]))
        return types.MappingProxyType(labels), "/".join(parts)

    def _check(self, response: Any, action: str) -> None:
        """Raise unless ``response`` is a success."""
        status = int(response.status_code)
        if status < 400:
            return
        detail = _error_detail(response)
        if status == 429 or status >= 500:
            raise RegistryUnavailable(f"the registry at {self.address} is unavailable ({action}): {detail}")
        if status in (401, 403):
            raise RegistryAuthError(
                f"the registry at {self.address} refused {action}: {detail}; check its credentials in the Docker "
                f"config file (docker login {self.host}, or its credHelpers / credsStore helper)"
            )
        raise RegistryError(f"the registry at {self.address} refused {action}: {detail}")

    def _content(self, response: Any, action: str) -> bytes:
        import requests

        try:
            return bytes(response.content)
        except requests.RequestException as exc:
            raise self._unavailable(action, exc) from exc

    def _unavailable(self, action: str, exc: BaseException) -> RegistryUnavailable:
        import requests

        why = failure_reason(exc, timeouts=(requests.Timeout, TimeoutError))
        return RegistryUnavailable(f"cannot reach the registry at {self.address} ({action}): {why}")

    # --- HTTP and authentication ---------------------------------------------------------------

    @contextmanager
    def _response(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        action: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Iterator[Any]:
        """The answer to ``method path``, after answering one authentication challenge; closed after."""
        response = self._send(method, self.url + path, scope=scope, action=action, headers=headers, data=data)
        try:
            if response.status_code == 401:
                challenge = str(response.headers.get("WWW-Authenticate", ""))
                response.close()
                if self._authorize(challenge, scope, action):
                    response = self._send(
                        method, self.url + path, scope=scope, action=action, headers=headers, data=data
                    )
            yield response
        finally:
            response.close()

    def _send(
        self,
        method: str,
        url: str,
        *,
        scope: str | None,
        action: str,
        headers: Mapping[str, str] | None,
        data: bytes | None,
    ) -> Any:
        import requests

        all_headers = dict(headers or {})
        authorization = self._authorization(scope)
        if authorization:
            all_headers["Authorization"] = authorization
        try:
            return self._http().request(method, url, headers=all_headers, data=data, timeout=self._timeouts)
        except (requests.RequestException, OSError) as exc:
            raise self._unavailable(action, exc) from exc

    def _http(self) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            if self._session is None:
                import requests

                session = requests.Session()
                adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                self._session = session
            return self._session

    def _authorization(self, scope: str | None) -> str | None:
        with self._lock:
            token = self._tokens.get(scope or "")
            if token is not None:
                return f"Bearer {token}"
            if self._basic and self._credentials is not None:
                return self._credentials.header()
        return None

    def _authorize(self, challenge: str, scope: str | None, action: str) -> bool:
        """Prepare to answer ``challenge``; False when there is nothing better to send (the 401 stays)."""
        scheme, _, rest = challenge.strip().partition(" ")
        params = _challenge_params(rest)
        credentials = self._stored_credentials()
        if scheme.lower() == "basic":
            if credentials is None:
                return False
            with self._lock:
                self._basic = True
            return True
        if scheme.lower() == "bearer" and params.get("realm"):
            token = self._fetch_token(params, scope, credentials, action)
            with self._lock:
                self._tokens[scope or ""] = token
            return True
        return False

    def _fetch_token(
        self, params: Mapping[str, str], scope: str | None, credentials: Credentials | None, action: str
    ) -> str:
        """A bearer token from the challenge's realm, for its scope (else ``scope``)."""
        import requests

        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for item in (params.get("scope") or scope or "").split():
            query.append(("scope", item))
        headers = {"Authorization": credentials.header()} if credentials is not None else {}
        realm = params["realm"]
        token_action = f"{action}: asking {realm} for a token"
        try:
            response = self._http().get(realm, params=query, headers=headers, timeout=self._timeouts)
        except (requests.RequestException, OSError) as exc:
            raise self._unavailable(token_action, exc) from exc
        with response:
            self._check(response, token_action)
            body = self._content(response, token_action)
        answer = _json_object(body, f"{self.address}: the token from {realm}")
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the registry at {self.address}: {realm} answered without a token")
        return token

    def _stored_credentials(self) -> Credentials | None:
        with self._lock:
            if not self._credentials_read:
                try:
                    self._credentials = read_credentials(self.host, self._auth_file)
                except CredentialsError as exc:
                    raise RegistryAuthError(f"no credentials for the registry at {self.address}: {exc}") from exc
                self._credentials_read = True
            return self._credentials


# --- pure functions ----------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, str, str, str]:
    """``(scheme, address sans scheme, host[:port], prefix)`` of ``[scheme://]host[:port][/prefix]``.

    Without a scheme a loopback host is spoken to over http (like dockerd's default insecure
    registries), any other over https.
    """
    text = address.strip()
    scheme = ""
    for candidate in ("http", "https"):
        if text.lower().startswith(candidate + "://"):
            scheme, text = candidate, text[len(candidate) + 3 :]
    text = text.strip("/")
    host, _, prefix = text.partition("/")
    if not host:
        raise ValueError(f"not a registry address: {address!r}")
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address, such as ::1 (no port then)
    if not scheme:
        scheme = "http" if _is_loopback(host) else "https"
    return scheme, text, host, prefix.strip("/")


def _is_loopback(host: str) -> bool:
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_HOSTS or re.fullmatch(r"127(?:\.\d{1,3}){3}", name) is not None


def index_digest(images: Sequence[RemoteImage]) -> str:
    """The digest ``put_index`` gives the index of ``images`` (to see whether a tag already has it)."""
    return sha256_digest(index_document(images))


def index_document(images: Sequence[RemoteImage]) -> bytes:
    """An OCI image index of ``images`` sorted by platform, as deterministic JSON bytes."""
    if not images:
        raise ValueError("an index needs at least one image")
    seen: dict[str, RemoteImage] = {}
    for image in images:
        if not image.platform:
            raise ValueError(f"{image.repository}@{image.digest} is not a single-platform image")
        if image.platform in seen and seen[image.platform].digest != image.digest:
            raise ValueError(f"two images for {image.platform}: {seen[image.platform].digest} and {image.digest}")
        seen[image.platform] = image
    manifests = [
        {"mediaType": image.media_type, "digest": image.digest, "size": image.size, "platform": _platform(platform)}
        for platform, image in sorted(seen.items())
    ]
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _platform(platform: str) -> dict[str, str]:
    os_, _, rest = platform.partition("/")
    architecture, _, variant = rest.partition("/")
    described = {"os": os_, "architecture": architecture}
    if variant:
        described["variant"] = variant
    return described


def _challenge_params(text: str) -> dict[str, str]:
    """``{"realm": ..., "service": ..., "scope": ...}`` of a ``WWW-Authenticate`` challenge's parameters."""
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM.finditer(text):
        quoted, bare = match[2], match[3]
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
    return params


def _config_digest(media_type: str, manifest: Mapping[str, Any]) -> str | None:
    """The image config blob of a single-image manifest; None for an index or an artifact."""
    config = manifest.get("config")
    if media_type not in SINGLE_IMAGE_TYPES or not isinstance(config, dict):
        return None
    digest = config.get("digest")
    if config.get("mediaType") not in IMAGE_CONFIG_TYPES or not isinstance(digest, str):
        return None
    return digest


def _check_tag(tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise ValueError(f"not a valid tag: {tag!r}")


def _check_digest(digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a digest: {digest!r}")


def _same_host_path(location: str, host: str, *, base: str = "/") -> str:
    """The path (and query) of ``location``, a URL the registry answered, resolved against ``base``.

    Absolute URLs must name the registry's own host: credentials are never sent elsewhere.
    """
    from urllib.parse import urljoin, urlsplit

    parts = urlsplit(urljoin(f"http://{host}{base}", location))
    if parts.netloc.lower() != host.lower():
        raise RegistryError(f"the registry at {host} sent us to another host ({parts.netloc}), which is not supported")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _pull(remote: str) -> str:
    return f"repository:{remote}:pull"


def _push(remote: str) -> str:
    return f"repository:{remote}:pull,push"


def _separator(reference: str) -> str:
    return "@" if ":" in reference else ":"


def sha256_digest(body: bytes) -> str:
    """``sha256:<hex>`` of ``body``: the digest of a blob or manifest."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _digest(response: Any, body: bytes) -> str:
    answered = response.headers.get("Docker-Content-Digest")
    return str(answered) if answered else sha256_digest(body)


def _media_type(response: Any, body: bytes) -> str:
    """The manifest's media type: the Content-Type, else its ``mediaType`` field."""
    header = str(response.headers.get("Content-Type") or "").partition(";")[0].strip()
    if header in SINGLE_IMAGE_TYPES or header in INDEX_TYPES:
        return header
    try:
        field = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        field = None
    return str(field) if isinstance(field, str) and field else header


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return value


def _error_detail(response: Any) -> str:
    """``HTTP 403 DENIED: requested access ...`` from the registry's ``{"errors": [...]}`` body."""
    import requests

    status = f"HTTP {response.status_code}"
    try:
        errors = json.loads(response.content).get("errors")
    except (requests.RequestException, ValueError, AttributeError):  # the status alone is the detail
        errors = None
    if isinstance(errors, list):
        parts = [
            " ".join(str(error.get(field)) for field in ("code", "message") if error.get(field))
            for error in errors
            if isinstance(error, dict)
        ]
        text = "; ".join(part for part in parts if part)
        if text:
            return f"{status} {text}"
    reason = str(getattr(response, "reason", "") or "")
    return f"{status} {reason}".strip()
