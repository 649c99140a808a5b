"""Run a real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8), no Docker Engine.

``running_registry(workdir)`` writes its own config into ``workdir`` (storage in ``workdir/data``,
deletes enabled, listening on a free loopback port), starts ``docker-registry serve``, waits until
``/v2/`` answers and yields ``"127.0.0.1:<port>"``; it stops the registry when the block ends.
With ``users={"name": "password"}`` it demands them (HTTP basic auth from an htpasswd file, whose
bcrypt hashes come from the C library's ``crypt``: no Python package, no ``htpasswd`` program).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

BINARY = "docker-registry"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
PORT_ATTEMPTS = 5


class RegistryServerError(RuntimeError):
    """The test registry is missing or did not start."""


def registry_binary() -> str | None:
    """The path of ``docker-registry``, or None when it is not installed."""
    return shutil.which(BINARY) or next(
        (path for path in ("/usr/bin/docker-registry", "/usr/sbin/docker-registry") if Path(path).is_file()), None
    )


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (it may be taken again before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_registry(workdir: Path, *, users: Mapping[str, str] | None = None) -> Iterator[str]:
    """A registry on ``127.0.0.1:<free port>`` storing into ``workdir/data``; yields its address.

    ``users``: the registry answers 401 to anyone else (basic auth, an htpasswd file).
    """
    binary = registry_binary()
    if binary is None:
        raise RegistryServerError(
            f"{BINARY} is not installed; the registry tests need it: apt-get install docker-registry"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if users:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text("".join(f"{user}:{bcrypt_hash(password)}\n" for user, password in users.items()))
    failure = ""
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        process, failure = _start(binary, workdir, port, htpasswd)
        if process is None:
            continue  # most likely someone took the port between free_port() and the bind: try another
        try:
            yield f"127.0.0.1:{port}"
        finally:
            _stop(process)
        return
    raise RegistryServerError(failure)


def bcrypt_hash(password: str) -> str:
    """``$2y$...``: the only hash distribution's htpasswd accepts, from libcrypt (libxcrypt has bcrypt)."""
    try:
        libcrypt = ctypes.CDLL("libcrypt.so.1")
    except OSError as exc:
        raise RegistryServerError(f"cannot load libcrypt.so.1 to hash a registry password: {exc}") from exc
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = libcrypt.crypt_gensalt(b"$2y$", 5, None, 0)  # cost 5: fast, a test
    hashed = libcrypt.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2y$"):
        raise RegistryServerError("libcrypt cannot make bcrypt hashes here")
    return str(hashed.decode())


def _start(
    binary: str, workdir: Path, port: int, htpasswd: Path | None = None
) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The running registry on ``port``, or None and why it failed."""
    config = workdir / "registry.yml"
    config.write_text(_config(workdir / "data", port, htpasswd))
    log_path = workdir / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None, f"{BINARY} exited with status {process.returncode}:\n{_tail(log_path)}"
        if _answers(port):
            return process, ""
        time.sleep(0.05)
    _stop(process)
    raise RegistryServerError(
        f"{BINARY} did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}"
    )


def _config(data: Path, port: int, htpasswd: Path | None = None) -> str:
    auth = f"auth:\n  htpasswd:\n    realm: orchestrator-test\n    path: {htpasswd}\n" if htpasswd else ""
    return auth + (
        "version: 0.1\n"
        "log:\n"
        "  level: info\n"
        "  accesslog:\n"
        "    disabled: false\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {data}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        "  headers:\n"
        "    X-Content-Type-Options: [nosniff]\n"
    )


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1.0) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code == 401  # up, and asking for credentials
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
