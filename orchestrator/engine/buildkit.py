"""A build with BuildKit, through a docker CLI (``buildkit_probe.py`` finds which and how).

The docker SDK cannot drive BuildKit (docker-py#2230), so ``DockerExecutor.build`` hands a build
here once BuildKit is selected; the classic path (``docker.py``) stays as it is. What the classic
path guarantees holds here too:

- The context is exactly the hashed inputs. The context tar is written by ``tarball.py`` with the
  request's context check (InputChanged before anything is sent), without the rebound Dockerfile and
  ``.dockerignore``, into a private temporary directory (0700); it is extracted into
  ``<tmp>/context/`` (no absolute paths or ``..``, links kept as links, modes and mtimes from the
  tar), and the Dockerfile text goes to ``<tmp>/Dockerfile``, outside the context. The CLI gets
  ``-f <tmp>/Dockerfile <tmp>/context``: BuildKit's session sends exactly that directory. (A tar
  on stdin would not do: BuildKit copies its Dockerfile and ``.dockerignore`` under ``COPY . .``,
  and refuses a ``-f`` from outside it.)
- Images the pipeline named by ID (``FROM sha256:<id>``, engine pins; BuildKit would try to pull
  ``docker.io/library/sha256``) are tagged ``orchestrator-pinned:<hex>`` in the engine and the
  Dockerfile sent names that tag (``image_id_references``, ``rebind_image_ids``).
- Secrets: a value from the environment is written to a 0600 file in the private directory and
  passed as ``--secret id=...,src=...``; it is never logged. ``--ssh`` forwards ``$SSH_AUTH_SOCK``.
- The CLI's plain progress is logged line by line; each step it starts is told to ``progress``
  (``#7 [stage-1 2/4] RUN make`` -> ``[stage-1 2/4] RUN make``); a failure carries the log tail and
  the CLI's final error line.
- Cancelling interrupts the CLI (SIGINT to its process group, SIGKILL after a grace period); while
  it runs the engine is pinged, and when it has answered nothing for the engine timeout the CLI is
  killed and the build fails as the classic one does.
- The image ID comes from ``--iidfile``; the executor verifies it (key label, platform), untagged.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from orchestrator.dockerfile import analyze, rebind
from orchestrator.engine.api import BuildRequest
from orchestrator.engine.buildkit_probe import BuildKitWay
from orchestrator.engine.buildlog import BuildLog, Watchdog, frozen_message, when_set
from orchestrator.engine.connection import EngineConnection
from orchestrator.engine.tarball import write_context_tar
from orchestrator.errors import InputChanged

PINNED_REPOSITORY = "orchestrator-pinned"  # engine-pinned bases, tagged for BuildKit: orchestrator-pinned:<hex>
STOP_GRACE_S = 5.0  # after SIGINT, how long the CLI may take to stop before SIGKILL
_IMAGE_ID = re.compile(r"sha256:([0-9a-f]{64})")
_STEP = re.compile(r"^#(\d+) (\[[^\]]*\b\d+/\d+\] .*?)\s*$")  # a vertex of a Dockerfile step, not [internal]
_SECRET_ID = re.compile(r"[A-Za-z0-9_.-]+")
_RPC_NOISE = re.compile(r"rpc error: code = \w+ desc = ")


class _Refused(Exception):
    """The request cannot be built as it is (a secret's variable unset, no ssh agent): the message says why."""


@dataclass(frozen=True, slots=True)
class Workdir:
    """The private temporary directory of one build and what goes in it."""

    root: Path

    @property
    def context(self) -> Path:
        return self.root / "context"

    @property
    def dockerfile(self) -> Path:
        return self.root / "Dockerfile"

    @property
    def iidfile(self) -> Path:
        return self.root / "iid"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"


# --- what the CLI is given -------------------------------------------------------------------


def build_command(
    way: BuildKitWay,
    request: BuildRequest,
    work: Workdir,
    secret_sources: Mapping[str, str],
    ssh: Sequence[str],
) -> list[str]:
    """The CLI's arguments for ``request``: the secrets' ``src`` files and the ssh specs already resolved."""
    command = [*way.build_command(), "--progress", "plain", "--iidfile", str(work.iidfile)]
    command += ["--platform", request.platform]
    for name, value in request.build_args:
        command += ["--build-arg", f"{name}={value}"]
    if request.target:
        command += ["--target", request.target]
    if request.network_mode and request.network_mode != "default":
        command += ["--network", request.network_mode]
    if request.no_cache:
        command.append("--no-cache")
    for secret_id, source in secret_sources.items():
        command += ["--secret", _csv(f"id={secret_id}", f"src={source}")]
    for spec in ssh:
        command += ["--ssh", spec]
    command += ["-f", str(work.dockerfile), str(work.context)]
    return command


def _csv(*fields: str) -> str:
    """One CSV record, as the CLI parses ``--secret`` (a path holding a comma gets quoted)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def secret_sources(request: BuildRequest, work: Workdir, environ: Mapping[str, str]) -> dict[str, str]:
    """Each secret's ``src`` file: its own file, or the value of its variable written to a 0600 file in ``work``."""
    sources: dict[str, str] = {}
    for number, secret in enumerate(request.secrets):
        if not _SECRET_ID.fullmatch(secret.id):
            raise _Refused(f"secret id {secret.id!r}: use letters, digits, '_', '.', '-'")
        if secret.id in sources:
            raise _Refused(f"secret {secret.id!r} is given twice")
        if (secret.env is None) == (secret.file is None):
            raise _Refused(f"secret {secret.id!r} needs exactly one of env and file")
        if secret.file is not None:
            if not os.path.isfile(secret.file):
                raise _Refused(f"secret {secret.id!r}: the file {secret.file} does not exist")
            sources[secret.id] = secret.file
            continue
        value = environ.get(secret.env or "")
        if value is None:
            raise _Refused(f"secret {secret.id!r}: the environment variable {secret.env} is not set")
        work.secrets.mkdir(mode=0o700, exist_ok=True)
        path = work.secrets / str(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value)
        sources[secret.id] = str(path)
    return sources


def ssh_specs(request: BuildRequest, environ: Mapping[str, str]) -> list[str]:
    """``--ssh`` values: an id alone forwards ``$SSH_AUTH_SOCK`` (named explicitly: the CLI's environment is ours)."""
    specs = []
    for spec in request.ssh:
        if "=" in spec:
            specs.append(spec)
            continue
        agent = environ.get("SSH_AUTH_SOCK")
        if not agent:
            raise _Refused(f"ssh {spec!r} forwards the ssh agent, but SSH_AUTH_SOCK is not set (is ssh-agent running?)")
        specs.append(f"{spec}={agent}")
    return specs


# --- images named by ID ----------------------------------------------------------------------


def image_id_references(
    text: str, *, path: str, build_args: Mapping[str, str] | None = None, target: str | None = None
) -> dict[int, str]:
    """The lines whose FROM, COPY --from or RUN --mount from= names an image by ID, and that ID's hex."""
    info = analyze(text, path=path, build_args=build_args, target=target)
    found: dict[int, str] = {}
    for ref in info.image_refs:
        match = _IMAGE_ID.fullmatch(ref.reference)
        if match is not None:
            found[ref.line] = match.group(1)
    return found


def pinned_tag(hex_id: str) -> str:
    return f"{PINNED_REPOSITORY}:{hex_id}"


def rebind_image_ids(text: str, references: Mapping[int, str], *, path: str) -> str:
    """``text`` with each image ID of ``references`` replaced by its ``orchestrator-pinned`` tag."""
    if not references:
        return text
    return rebind(text, {line: pinned_tag(hex_id) for line, hex_id in references.items()}, path=path)


# --- the CLI's output ------------------------------------------------------------------------


def step_of(line: str) -> tuple[int, str] | None:
    """The vertex number and step a plain-progress line announces (``#7 [2/4] RUN make``), if any."""
    match = _STEP.match(line)
    return (int(match.group(1)), match.group(2)) if match else None


def error_of(lines: Sequence[str]) -> str | None:
    """The CLI's final error line (``error: failed to solve: ...``), else the last ``#N ERROR: ...``."""
    vertex_error = None
    for line in reversed(lines):
        head, sep, rest = line.strip().partition(":")
        if not sep:
            continue
        if head.lower() == "error":
            return _RPC_NOISE.sub("", rest.strip())
        if vertex_error is None and re.fullmatch(r"#\d+ ERROR", head):
            vertex_error = _RPC_NOISE.sub("", rest.strip())
    return vertex_error


# --- the context -------------------------------------------------------------------------------


def write_context(request: BuildRequest, work: Workdir) -> None:
    """The request's context, checked, as the directory ``work.context``."""
    tar_path = work.root / "context.tar"
    with open(tar_path, "wb") as out:
        write_context_tar(
            out,
            request.context,
            dockerfile_path=request.dockerfile_path,
            dockerfile_text="",
            extra_files=request.extra_files,
            check=request.context_check,
            with_dockerfile=False,
        )
    extract_context(tar_path, work.context)
    tar_path.unlink()


def extract_context(tar_path: Path, dest: Path) -> None:
    """Extract a context tar into the new directory ``dest``: regular files, directories and symlinks only.

    No member may leave ``dest`` (absolute, ``..``) or pass through a link; links stay links; modes
    and mtimes come from the tar.
    """
    dest.mkdir()
    os.chmod(dest, 0o755)  # as a context root is; the private directory around it stays 0700
    directories = {""}  # the directories made so far, relative
    times: list[tuple[Path, int, bool]] = []
    with tarfile.open(tar_path, mode="r:") as tar:
        for member in tar:
            rel = _safe_path(member.name)
            _make_parents(dest, os.path.dirname(rel), directories, times)  # declared srcs send no directories
            target = dest / rel
            if member.isdir():
                if rel not in directories:
                    target.mkdir()
                directories.add(rel)
            elif member.issym():
                os.symlink(member.linkname, target)
            elif member.isreg():
                source = tar.extractfile(member)
                assert source is not None  # a regular file has data
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with source, os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            else:
                raise ValueError(f"context member {member.name!r} is neither a file, a directory nor a link")
            if not member.issym():
                os.chmod(target, stat.S_IMODE(member.mode))
            times.append((target, int(member.mtime), member.issym()))
    for path, mtime, is_link in reversed(times):  # contents before their directories
        os.utime(path, (mtime, mtime), follow_symlinks=not is_link)
    os.utime(dest, (0, 0))


def _make_parents(dest: Path, rel_dir: str, made: set[str], times: list[tuple[Path, int, bool]]) -> None:
    """Make ``rel_dir`` and its missing parents (0755, mtime 0), as Docker does for a tar without them."""
    missing = []
    while rel_dir not in made:
        missing.append(rel_dir)
        rel_dir = os.path.dirname(rel_dir)
    for rel in reversed(missing):
        if os.path.lexists(dest / rel):  # a link or a file of that name: never written through
            raise ValueError(f"context member below {rel!r}: no directory {rel!r}, a link or a file is there")
        (dest / rel).mkdir()
        os.chmod(dest / rel, 0o755)
        made.add(rel)
        times.append((dest / rel, 0, False))


def _safe_path(name: str) -> str:
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"context member {name!r} is not a plain path inside the context")
    return name


# --- the build ---------------------------------------------------------------------------------


WORKDIR_PREFIX = "orchestrator-buildkit-"


@contextmanager
def workdir() -> Iterator[Workdir]:
    """A private temporary directory (0700), removed however the build ends.

    Its name holds this process's ID, so that one a killed orchestrator left (with the context and
    any secret files in it) is removed by the next build (``sweep_workdirs``).
    """
    sweep_workdirs()
    root = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    try:
        yield Workdir(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sweep_workdirs(temp_dir: str | None = None) -> list[Path]:
    """Remove the build directories of orchestrator processes that no longer run; what was removed."""
    removed = []
    for path in Path(temp_dir or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = path.name.removeprefix(WORKDIR_PREFIX).partition("-")[0]
        if pid.isdigit() and not _running(int(pid)) and _owned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's
    return True


def _owned(path: Path) -> bool:
    try:
        return path.lstat().st_uid == os.geteuid()
    except OSError:
        return False


def build_with_buildkit(
    way: BuildKitWay,
    request: BuildRequest,
    dockerfile_text: str,
    *,
    engine: EngineConnection,
    engine_timeout: float,
    pin: Callable[[str], None],
    cancel: threading.Event,
    log: BuildLog,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Run ``request`` through ``way`` with ``dockerfile_text`` (labels already in); the image ID it wrote.

    ``pin`` tags the image ``sha256:<hex>`` as ``orchestrator-pinned:<hex>`` (given the hex).
    """
    environ = os.environ if environ is None else environ
    try:
        references = image_id_references(
            dockerfile_text, path=request.dockerfile_path, build_args=dict(request.build_args), target=request.target
        )
    except Exception as exc:  # the pipeline analysed this text already: only a broken request gets here
        raise log.failure(f"{request.node}: cannot read the Dockerfile sent: {exc}") from exc
    for hex_id in sorted(set(references.values())):
        pin(hex_id)
    text = rebind_image_ids(dockerfile_text, references, path=request.dockerfile_path)
    for line, hex_id in sorted(references.items()):
        log.line(f"# line {line}: the image sha256:{hex_id} is named {pinned_tag(hex_id)} for BuildKit")
    with workdir() as work:
        try:
            write_context(request, work)
        except InputChanged as exc:
            log.line(f"ERROR: {exc}")
            raise
        work.dockerfile.write_text(text, encoding="utf-8")
        try:
            sources = secret_sources(request, work, environ)
            ssh = ssh_specs(request, environ)
        except _Refused as exc:
            raise log.failure(f"{request.node}: {exc}") from exc
        command = build_command(way, request, work, sources, ssh)
        env = way.environment(engine.url, environ, tls_dir=engine.tls_dir)
        log.line("# " + " ".join(command))
        if cancel.is_set():
            raise log.failure(f"{request.node}: cancelled")
        returncode, lines, expired = _run(command, env, work, engine, engine_timeout, cancel, log)
        if expired:
            raise log.failure(frozen_message(request.node, engine.url, engine_timeout))
        if cancel.is_set():
            raise log.failure(f"{request.node}: cancelled")
        if returncode != 0:
            why = error_of(lines) or f"{way.build_command()[0]} exited with status {returncode}"
            raise log.failure(f"{request.node}: {why}")
        image_id = work.iidfile.read_text().strip() if work.iidfile.is_file() else ""
    return image_id or None


def _run(
    command: list[str],
    env: Mapping[str, str],
    work: Workdir,
    engine: EngineConnection,
    engine_timeout: float,
    cancel: threading.Event,
    log: BuildLog,
) -> tuple[int, list[str], bool]:
    """Run the CLI, logging its output; its exit status, its last lines, and whether the watchdog ended it."""
    from collections import deque

    process = subprocess.Popen(
        command,
        env=dict(env),
        cwd=work.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops a buildx plugin too
    )
    stopper = _Stopper(process)
    last: deque[str] = deque(maxlen=50)
    seen: set[int] = set()
    try:
        assert process.stdout is not None
        with (
            when_set(cancel, stopper.stop, name="buildkit-cancel"),
            Watchdog(engine, engine_timeout, stopper.stop) as watchdog,
        ):
            for raw in process.stdout:
                watchdog.heard()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(line + "\n")
                last.append(line)
                step = step_of(line)
                if step is not None and step[0] not in seen:
                    seen.add(step[0])
                    if log.progress is not None:
                        log.progress(step[1])
            returncode = process.wait()
        return returncode, list(last), watchdog.expired
    finally:
        if process.poll() is None:
            stopper.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class _Stopper:
    """Stops the CLI once: SIGINT to its process group (it cancels the build), SIGKILL after a grace period."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._lock = threading.Lock()
        self._stopping = False

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._signal(signal.SIGINT)
        try:
            self._process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)
