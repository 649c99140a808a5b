"""Finding a way to BuildKit on this machine: tried, not guessed from versions.

The docker SDK cannot drive BuildKit (docker-py#2230), so BuildKit builds run a ``docker`` CLI
pointed at the executor's engine. The candidates are the CLI on ``PATH`` and ``/usr/bin/docker``
(one per real path). For each, in order:

    ``docker buildx version`` exits 0    -> try ``docker buildx build --load`` (way ``buildx``)
    otherwise, or when that build fails  -> try ``DOCKER_BUILDKIT=1 docker build`` (way ``builtin``)

Each try builds a tiny context (``FROM scratch`` and one LABEL) on the executor's engine, with
``--iidfile``; the first that yields an image is the way, and its image is removed. A CLI without
BuildKit fails that build (docker 23+ without buildx: "BuildKit is enabled but the buildx component
is missing or broken"; docker.io 20.10 builds it with its builtin BuildKit client); the reason is
kept per candidate for the message. ``BuildKitProbe`` probes once per executor, when a builder is
selected (a no-op build never pays for it), and remembers the answer in the cache directory
(``remember_in``) for as long as the engine (its ID and version) and the candidate CLIs and CLI
plugin directories (path, size, modification time) stay the same: a probe costs ~0.4 s.

Every CLI run gets a small environment of its own (``cli_environment``): ``DOCKER_HOST`` is the
executor's engine, the TLS settings are its TLS directory's (``tls_dir``) or else passed
through, and so are ``PATH``, ``HOME`` and ``DOCKER_CONFIG`` (the CLI reads its credentials there);
nothing else of the orchestrator's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CLI = "/usr/bin/docker"  # docker.io 20.10's CLI honours DOCKER_BUILDKIT=1 without buildx
PROBE_LABEL = "org.orchestrator.probe"
PROBE_TIMEOUT_S = 120.0  # the first BuildKit build of a fresh engine starts BuildKit itself
VERSION_TIMEOUT_S = 20.0
PASSED_ENV = (  # what the CLI may see of the orchestrator's environment
    "PATH",
    "HOME",
    "DOCKER_CONFIG",  # credentials (config.json)
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)

Remove = Callable[[str], object]  # removes an image by ID (the executor's remove_image)


@dataclass(frozen=True, slots=True)
class BuildKitWay:
    """One working way to BuildKit: a CLI and how it is asked."""

    cli: str  # the CLI's path, as found
    kind: str  # "buildx" (``docker buildx build --load``) or "builtin" (``DOCKER_BUILDKIT=1 docker build``)

    def build_command(self) -> list[str]:
        """The command that builds, before its options."""
        if self.kind == "buildx":
            return [self.cli, "buildx", "build", "--load"]
        return [self.cli, "build"]

    def environment(
        self, engine_url: str, base: Mapping[str, str] | None = None, *, tls_dir: str | None = None
    ) -> dict[str, str]:
        """The CLI's environment for builds on the engine at ``engine_url`` (see ``cli_environment``)."""
        env = cli_environment(engine_url, base, tls_dir=tls_dir)
        env["DOCKER_BUILDKIT"] = "1"  # the builtin way's switch; harmless to buildx
        return env

    @property
    def detail(self) -> str:
        """How builds reach BuildKit, for the user."""
        if self.kind == "buildx":
            return f"{self.cli} buildx build --load"
        return f"{self.cli} build with DOCKER_BUILDKIT=1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    way: BuildKitWay | None  # the first way that works, or None
    reasons: tuple[str, ...]  # why each candidate tried before it (or every one) failed: "<cli>: <why>"


def candidate_clis(which: Callable[[str], str | None] = shutil.which, system_cli: str = SYSTEM_CLI) -> tuple[str, ...]:
    """The ``docker`` on PATH and ``/usr/bin/docker``, in that order, one per real path."""
    found: dict[str, str] = {}
    for cli in (which("docker"), system_cli):
        if cli and os.path.isfile(cli) and os.access(cli, os.X_OK):
            found.setdefault(os.path.realpath(cli), cli)
    return tuple(found.values())


def cli_host(engine_url: str) -> str:
    """The engine's address as the docker CLI takes it in ``DOCKER_HOST``."""
    for prefix in ("http+unix://", "unix://"):
        if engine_url.startswith(prefix):
            return "unix://" + "/" + engine_url.removeprefix(prefix).lstrip("/")
    for prefix in ("http://", "https://"):
        if engine_url.startswith(prefix):
            return "tcp://" + engine_url.removeprefix(prefix)
    if "://" not in engine_url and engine_url.startswith("/"):
        return "unix://" + engine_url
    return engine_url


def cli_environment(
    engine_url: str, base: Mapping[str, str] | None = None, *, tls_dir: str | None = None
) -> dict[str, str]:
    """``PASSED_ENV`` from ``base`` (default: ``os.environ``) and ``DOCKER_HOST`` for ``engine_url``.

    An engine with a TLS directory of its own (``tls_dir``: ca.pem, cert.pem, key.pem) gets
    ``DOCKER_TLS_VERIFY=1`` and ``DOCKER_CERT_PATH`` set to it, whatever the environment says;
    otherwise the environment's TLS settings pass through.
    """
    base = os.environ if base is None else base
    env = {name: base[name] for name in PASSED_ENV if base.get(name)}
    env.setdefault("PATH", os.defpath)
    env["DOCKER_HOST"] = cli_host(engine_url)
    if tls_dir is not None:
        env["DOCKER_TLS_VERIFY"] = "1"
        env["DOCKER_CERT_PATH"] = tls_dir
    return env


def probe(
    candidates: Sequence[str], engine_url: str, remove_image: Remove, *, tls_dir: str | None = None
) -> ProbeResult:
    """The first way to BuildKit that builds a tiny image on the engine, and why the others did not."""
    reasons: list[str] = []
    for cli in candidates:
        why: list[str] = []
        kinds = ["buildx", "builtin"] if _has_buildx(cli, engine_url, tls_dir) else ["builtin"]
        for kind in kinds:
            way = BuildKitWay(cli, kind)
            problem = try_way(way, engine_url, remove_image, tls_dir=tls_dir)
            if problem is None:
                return ProbeResult(way, tuple(reasons))
            why.append(problem if kind == "builtin" else f"buildx build --load: {problem}")
        reasons.append(f"{cli}: {'; '.join(why)}")
    return ProbeResult(None, tuple(reasons))


def _has_buildx(cli: str, engine_url: str, tls_dir: str | None) -> bool:
    try:
        done = subprocess.run(
            [cli, "buildx", "version"],
            env=cli_environment(engine_url, tls_dir=tls_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def try_way(way: BuildKitWay, engine_url: str, remove_image: Remove, *, tls_dir: str | None = None) -> str | None:
    """Build the probe image ``way``'s way; None when it worked (its image removed), else why not."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-buildkit-probe-") as tmp:
        work = Path(tmp)
        (work / "context").mkdir()
        (work / "Dockerfile").write_text(f"FROM scratch\nLABEL {PROBE_LABEL}=1\n")
        iidfile = work / "iid"
        command = [
            *way.build_command(),
            "--progress",
            "plain",
            "--iidfile",
            str(iidfile),
            "-f",
            str(work / "Dockerfile"),
            str(work / "context"),
        ]
        try:
            done = subprocess.run(
                command,
                env=way.environment(engine_url, tls_dir=tls_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"a build of an empty image did not finish in {PROBE_TIMEOUT_S:g} s"
        except OSError as exc:
            return f"cannot run it: {exc.strerror or exc}"
        image_id = iidfile.read_text().strip() if iidfile.is_file() else ""
        if done.returncode != 0 or not image_id:
            return failure_line(done.stdout.decode("utf-8", "replace")) or f"exit status {done.returncode}"
    remove_image(image_id)
    return None


def failure_line(output: str) -> str:
    """The line of a failed CLI run's output that says why: its last ``ERROR``/``error:`` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() == "error":
            return rest.strip().rstrip(".")
    return lines[-1] if lines else ""


class BuildKitProbe:
    """The way to BuildKit of one executor's engine, probed on first ``result()`` only; thread-safe.

    ``identity`` names the engine (its ID and version); with ``remember_in`` a result is kept in a
    file and used again while the engine and the CLIs it depends on are the same.
    """

    def __init__(
        self,
        engine_url: Callable[[], str],
        remove_image: Remove,
        candidates: Callable[[], Sequence[str]] = candidate_clis,
        identity: Callable[[], str] | None = None,
        tls_dir: str | None = None,
    ) -> None:
        self._engine_url = engine_url
        self._remove_image = remove_image
        self.candidates = candidates
        self._identity = identity
        self._tls_dir = tls_dir
        self._memo: Path | None = None
        self._lock = threading.Lock()
        self._result: ProbeResult | None = None

    def remember_in(self, path: Path) -> None:
        """Keep results in ``path`` (a JSON file), and use one kept there while it still holds."""
        self._memo = path

    def result(self) -> ProbeResult:
        with self._lock:
            if self._result is None:
                candidates = self.candidates()
                fingerprint = self._fingerprint(candidates)
                self._result = self._recalled(fingerprint)
                if self._result is None:
                    self._result = probe(candidates, self._engine_url(), self._remove_image, tls_dir=self._tls_dir)
                    self._keep(fingerprint, self._result)
            return self._result

    def _fingerprint(self, candidates: Sequence[str]) -> str | None:
        if self._memo is None or self._identity is None:
            return None
        files = [*candidates, *PLUGIN_DIRS, os.path.expanduser("~/.docker/cli-plugins")]
        return json.dumps([self._identity(), self._engine_url(), [_stat_of(path) for path in files]])

    def _recalled(self, fingerprint: str | None) -> ProbeResult | None:
        if fingerprint is None or self._memo is None:
            return None
        try:
            kept = json.loads(self._memo.read_text())
            if kept["fingerprint"] != fingerprint:
                return None
            way = None if kept["way"] is None else BuildKitWay(kept["way"]["cli"], kept["way"]["kind"])
            return ProbeResult(way, tuple(kept["reasons"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none kept, or unreadable: probe again

    def _keep(self, fingerprint: str | None, result: ProbeResult) -> None:
        if fingerprint is None or self._memo is None:
            return
        way = None if result.way is None else {"cli": result.way.cli, "kind": result.way.kind}
        data = json.dumps({"fingerprint": fingerprint, "way": way, "reasons": list(result.reasons)})
        try:
            self._memo.parent.mkdir(parents=True, exist_ok=True)
            partial = self._memo.with_name(f"{self._memo.name}.{os.getpid()}.tmp")
            partial.write_text(data)
            os.replace(partial, self._memo)
        except OSError:
            pass  # not kept: the next run probes again


PLUGIN_DIRS = (  # where the docker CLI looks for plugins such as buildx
    "/usr/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/local/lib/docker/cli-plugins",
)


def _stat_of(path: str) -> list[object]:
    """What of a file or directory must stay the same for a kept probe to hold (its real path, size, mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [os.path.realpath(path), st.st_size, st.st_mtime_ns]


def unavailable_message(reasons: Sequence[str]) -> str:
    """Why ``--executor buildkit`` cannot build here, and what would help."""
    why = "; ".join(reasons) if reasons else "no docker CLI found (neither on PATH nor /usr/bin/docker)"
    return (
        f"--executor buildkit: no way to BuildKit works here: {why}; install docker-buildx, or a docker CLI "
        "that honours DOCKER_BUILDKIT=1 (docker.io 20.10's /usr/bin/docker), or use --executor classic"
    )


def fallback_warning(reasons: Sequence[str]) -> str:
    """What ``--executor auto`` says when it falls back to the classic builder."""
    why = "; ".join(reasons) if reasons else "no docker CLI found (neither on PATH nor /usr/bin/docker)"
    return (
        f"building with the engine's classic builder: no way to BuildKit works here ({why}); "
        "RUN --mount, secrets and ssh need BuildKit (install docker-buildx)"
    )
