"""A private Docker Engine for fault tests: one a test may kill, freeze and restart without harm.

``running_engine()`` starts, under a fresh directory ``/tmp/orch-engine-<name>/`` (short: socket
paths must stay under 108 bytes):

- a containerd of its own (``ctd/``: root, state, socket, a config that reads nothing from ``/etc``).
  dockerd would otherwise start a managed containerd only when no system one answers on
  ``/run/containerd/containerd.sock``, and share the system one (namespace ``moby``) when it does; an
  explicit ``--containerd`` with a namespace of its own behaves the same on Debian 12 and 13;
- a bridge of its own, ``<name>`` on ``10.X.Y.1/24`` (a /24 no interface or route uses), given to
  dockerd with ``--bridge``. Never ``--bridge=none``: dockerd then deletes the host's ``docker0``.
  ``--iptables=false --ip-masq=false``: it leaves the host's firewall alone;
- dockerd with its own ``--data-root``, ``--exec-root``, ``--pidfile``, ``--host unix://...`` and
  ``--config-file`` (so ``/etc/docker/daemon.json`` cannot conflict with these flags).

With ``tls=True`` dockerd also listens on ``tcp://127.0.0.1:<a free port>`` with mutual TLS
(``--tlsverify``): ``make_certificates`` (the ``openssl`` CLI) makes a CA, a server certificate for
``127.0.0.1`` (an IP SAN) and a client certificate; ``tcp_url`` is the address, ``client_tls`` the
directory of ``ca.pem``, ``cert.pem``, ``key.pem`` a client needs (the docker CLI's DOCKER_CERT_PATH).

It yields a ``PrivateEngine``: ``url``, ``pid``, ``gateway``; ``stop()``, ``kill9()``, ``sigstop()``,
``sigcont()``, ``restart()`` (same directories: what the engine had survives, as after a crash) and
``import_rootfs()``. When the block ends it stops dockerd, the containers it left (their shims),
containerd, unmounts what they left mounted, deletes the bridge and the directory.

Start-up (containerd, bridge, dockerd answering ``/_ping``) takes about 0.4 s on Debian 12; a
``restart()`` after ``kill9()`` waits for dockerd to stop the containers it finds running (10 s for
a process that ignores SIGTERM, as ``sleep`` does as PID 1).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 30.0  # dockerd restoring a killed engine's running containers takes 10 s each
STOP_TIMEOUT_S = 20.0
SUBNET_ATTEMPTS = 50
BINARIES = ("dockerd", "containerd", "ip", "umount")


class EngineStartError(RuntimeError):
    """The private engine cannot run here (not root, a binary missing) or did not start."""


@dataclass
class PrivateEngine:
    """A running private engine; see the module docstring."""

    name: str
    root: Path
    gateway: str
    start_seconds: float = 0.0  # how long running_engine() took to have it answer
    tcp_port: int | None = None  # with tls=True: dockerd listens on 127.0.0.1:tcp_port with mutual TLS
    _dockerd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _containerd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        """``unix:///tmp/orch-engine-.../docker.sock``: for ``DOCKER_HOST`` or ``DockerExecutor(url)``."""
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        """``tcp://127.0.0.1:<port>``: the engine over TCP with mutual TLS (``running_engine(tls=True)``)."""
        if self.tcp_port is None:
            raise EngineStartError(f"the private engine {self.name} was started without tls=True")
        return f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def server_tls(self) -> Path:
        return self.root / "tls" / "server"

    @property
    def client_tls(self) -> Path:
        """The client's ``ca.pem``, ``cert.pem`` and ``key.pem`` (signed by the CA dockerd trusts)."""
        return self.root / "tls" / "client"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "ctd" / "containerd.sock"

    @property
    def pid(self) -> int:
        """dockerd's process ID (a new one after ``restart()``)."""
        if self._dockerd is None:
            raise EngineStartError(f"the private engine {self.name} is not running")
        return self._dockerd.pid

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def running(self) -> bool:
        return self._dockerd is not None and self._dockerd.poll() is None

    # --- faults ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop dockerd cleanly (SIGTERM, as ``systemctl stop docker``): it stops its containers first."""
        if self._dockerd is None:
            return
        if self._dockerd.poll() is None:
            self.sigcont()  # a frozen dockerd would never see the SIGTERM
            self._dockerd.terminate()
            try:
                self._dockerd.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._dockerd.kill()
                self._dockerd.wait()
        self._dockerd = None

    def kill9(self) -> None:
        """``kill -9`` dockerd: its containers keep running under containerd, its state stays on disk."""
        if self._dockerd is None:
            return
        self._dockerd.kill()
        self._dockerd.wait()  # reaped: a zombie would still "own" the pidfile
        self._dockerd = None

    def sigstop(self) -> None:
        """Freeze dockerd: its socket accepts connections that nobody answers.

        Returns once every thread of dockerd is stopped: the signal reaches a thread running on
        another core a moment later, long enough for it to answer one more request.
        """
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and not _all_threads_stopped(self.pid):
            time.sleep(0.01)

    def sigcont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start dockerd again on the same directories (stopping it first if it runs)."""
        self.stop()
        self._dockerd = _start_dockerd(self)

    # --- content --------------------------------------------------------------------------------

    def client(self) -> Any:
        """A docker SDK ``APIClient`` on this engine; close it after use."""
        import docker

        return docker.APIClient(base_url=self.url, version="auto", timeout=60)

    def import_rootfs(self, reference: str, rootfs_tar: bytes, cmd: str = '["sh"]') -> str:
        """``docker import``: a one-layer image of ``rootfs_tar`` tagged ``reference``; its ID."""
        repository, _, tag = reference.rpartition(":")
        client = self.client()
        try:
            client.import_image_from_data(rootfs_tar, repository=repository, tag=tag, changes=[f"CMD {cmd}"])
            return str(client.inspect_image(reference)["Id"])
        finally:
            client.close()

    def container_ids(self) -> set[str]:
        """The full IDs of every container the engine has, running or not."""
        client = self.client()
        try:
            return {c["Id"] for c in client.containers(all=True)}
        finally:
            client.close()


@contextlib.contextmanager
def running_engine(*, data_size_mb: int | None = None, tls: bool = False) -> Iterator[PrivateEngine]:
    """A private engine, running; everything it made is gone when the block ends.

    ``data_size_mb``: its data-root is a tmpfs of that size (a disk that fills up). ``tls``: it also
    listens on ``tcp://127.0.0.1:<port>`` with mutual TLS (certificates made here, see the module docstring).
    """
    _check_can_run()
    started = time.monotonic()
    name = f"oe{uuid.uuid4().hex[:8]}"  # also the bridge: an interface name has at most 15 characters
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix=f"orch-engine-{name}-", dir="/tmp"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        gateway = _add_bridge(name)
        stack.callback(_try, "ip", "link", "del", name)
        stack.callback(_unmount_under, root)  # runs after the processes below are gone
        engine = PrivateEngine(name=name, root=root, gateway=gateway)
        if data_size_mb is not None:
            (root / "data").mkdir()
            _run("mount", "-t", "tmpfs", "-o", f"size={data_size_mb}m", "tmpfs", str(root / "data"))
        if tls:
            make_certificates(root / "tls")
            engine.tcp_port = _free_port()
        stack.callback(_stop_containerd, engine)
        engine._containerd = _start_containerd(engine)
        stack.callback(_kill_shims, engine)
        stack.callback(engine.stop)
        engine._dockerd = _start_dockerd(engine)
        engine.start_seconds = time.monotonic() - started
        yield engine


def _check_can_run() -> None:
    if os.geteuid() != 0:
        raise EngineStartError("a private Docker Engine needs root (it adds a bridge and mounts file systems)")
    missing = [binary for binary in BINARIES if shutil.which(binary) is None]
    if missing:
        raise EngineStartError(f"a private Docker Engine needs {', '.join(missing)} (apt-get install docker.io)")


# --- the bridge -----------------------------------------------------------------------------------


def _add_bridge(name: str) -> str:
    """Add and raise the bridge ``name`` on a free ``10.X.Y.1/24``; its address."""
    for _ in range(SUBNET_ATTEMPTS):
        subnet = ipaddress.IPv4Network(f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        if any(subnet.overlaps(used) for used in _networks_in_use()):
            continue
        gateway = str(subnet.network_address + 1)
        _run("ip", "link", "add", name, "type", "bridge")
        try:
            _run("ip", "addr", "add", f"{gateway}/24", "dev", name)
            _run("ip", "link", "set", name, "up")
        except EngineStartError:
            _try("ip", "link", "del", name)
            raise
        return gateway
    raise EngineStartError(f"no free 10.X.Y.0/24 for the bridge {name} after {SUBNET_ATTEMPTS} attempts")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """The networks of every IPv4 address and route on this host."""
    found = []
    for line in _run("ip", "-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            found.append(ipaddress.IPv4Network(words[words.index("inet") + 1], strict=False))
    for line in _run("ip", "-4", "route", "show", "table", "all").splitlines():
        destination = line.split()[0] if line.split() else "default"
        if destination not in ("default", "local", "broadcast", "unreachable", "blackhole", "prohibit"):
            with contextlib.suppress(ValueError):
                found.append(ipaddress.IPv4Network(destination, strict=False))
    return found


# --- the processes --------------------------------------------------------------------------------


def _start_containerd(engine: PrivateEngine) -> subprocess.Popen[bytes]:
    ctd = engine.root / "ctd"
    ctd.mkdir()
    config = ctd / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{ctd / "root"}"\n'
        f'state = "{ctd / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        "[grpc]\n"
        f'  address = "{engine.containerd_socket}"\n'
        "[ttrpc]\n"
        '  address = ""\n'
        '[plugins."io.containerd.internal.v1.opt"]\n'
        f'  path = "{ctd / "opt"}"\n'
    )
    process = _spawn(["containerd", "--config", str(config)], engine.root / "containerd.log")
    _wait_until(lambda: engine.containerd_socket.is_socket(), process, engine.root / "containerd.log", "containerd")
    return process


def _start_dockerd(engine: PrivateEngine) -> subprocess.Popen[bytes]:
    config = engine.root / "daemon.json"
    config.write_text("{}\n")
    (engine.root / "dockerd.pid").unlink(missing_ok=True)  # left by kill9(); its process is reaped
    argv = [
        "dockerd",
        f"--config-file={config}",
        f"--data-root={engine.root / 'data'}",
        f"--exec-root={engine.root / 'exec'}",
        f"--pidfile={engine.root / 'dockerd.pid'}",
        f"--host={engine.url}",
        f"--containerd={engine.containerd_socket}",
        f"--containerd-namespace={engine.name}",
        f"--containerd-plugins-namespace={engine.name}-plugins",
        f"--bridge={engine.name}",
        "--iptables=false",
        "--ip-masq=false",
        "--shutdown-timeout=2",
    ]
    if engine.tcp_port is not None:
        server = engine.server_tls
        argv += [
            f"--host=tcp://127.0.0.1:{engine.tcp_port}",
            "--tlsverify",
            f"--tlscacert={server / 'ca.pem'}",
            f"--tlscert={server / 'cert.pem'}",
            f"--tlskey={server / 'key.pem'}",
        ]
    process = _spawn(argv, engine.log)
    _wait_until(lambda: _answers(engine.socket), process, engine.log, "dockerd")
    if engine.tcp_port is not None:
        _wait_until(lambda: _listens(engine.tcp_port or 0), process, engine.log, "dockerd's TLS port")
    return process


# --- TLS ------------------------------------------------------------------------------------------


def make_certificates(directory: Path) -> None:
    """A CA and two certificates it signed, with the ``openssl`` CLI (EC P-256 keys: fast to make).

    ``directory/server``: ``ca.pem``, ``cert.pem`` (for ``127.0.0.1``, an IP SAN; serverAuth),
    ``key.pem``; ``directory/client``: ``ca.pem``, ``cert.pem`` (clientAuth), ``key.pem``. The CA's
    key stays in ``directory/ca``. Call it again on another directory for a CA dockerd does not trust.
    """
    ca, server, client = directory / "ca", directory / "server", directory / "client"
    for folder in (ca, server, client):
        folder.mkdir(parents=True, exist_ok=True)
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        "openssl", "req", "-x509", *key_options, "-keyout", str(ca / "key.pem"), "-out", str(ca / "ca.pem"),
        "-days", "2", "-subj", "/CN=orchestrator test CA",
    )  # fmt: skip
    for folder, name, extensions in (
        (server, "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        (client, "orchestrator-test-client", "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / "extensions.cnf").write_text(extensions)
        _run(
            "openssl", "req", *key_options, "-keyout", str(folder / "key.pem"), "-out", str(folder / "request.csr"),
            "-subj", f"/CN={name}",
        )  # fmt: skip
        _run(
            "openssl", "x509", "-req", "-in", str(folder / "request.csr"), "-CA", str(ca / "ca.pem"),
            "-CAkey", str(ca / "key.pem"), "-CAcreateserial", "-out", str(folder / "cert.pem"), "-days", "2",
            "-extfile", str(folder / "extensions.cnf"),
        )  # fmt: skip
        shutil.copyfile(ca / "ca.pem", folder / "ca.pem")
        (folder / "key.pem").chmod(0o600)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait_until(ready: Any, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            raise EngineStartError(f"{what} exited with status {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise EngineStartError(f"{what} did not start within {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")
        time.sleep(0.02)


def _answers(socket_path: Path) -> bool:
    """Whether dockerd answers ``GET /_ping`` on its socket."""
    import http.client
    import socket

    if not socket_path.is_socket():
        return False
    connection = http.client.HTTPConnection("docker", timeout=2.0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(str(socket_path))
        connection.sock = sock
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
        sock.close()


# --- teardown -------------------------------------------------------------------------------------


def _kill_shims(engine: PrivateEngine) -> None:
    """SIGKILL the containers dockerd left running (after ``kill9()``) and their shims.

    A shim names its containerd's socket on its command line, so only this engine's are found.
    """
    shims = [pid for pid, argv in _processes() if f"-address\0{engine.containerd_socket}" in argv and "shim" in argv]
    parents = _parents()
    for shim in shims:
        for child in (pid for pid, parent in parents.items() if parent == shim):
            _signal(child, signal.SIGKILL)
        _signal(shim, signal.SIGKILL)


def _stop_containerd(engine: PrivateEngine) -> None:
    process = engine._containerd
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _unmount_under(root: Path) -> None:
    """Unmount everything mounted at or under ``root`` (overlays, netns files, dockerd's bind of its data-root)."""
    prefix = str(root)
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")  # "\040" is a space
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
        if not _try("umount", point):
            _try("umount", "-l", point)


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in state T (stopped), from /proc."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


def _processes() -> Iterator[tuple[int, str]]:
    """(pid, NUL-separated command line) of every process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace")


def _parents() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                found[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return found


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _run(*argv: str) -> str:
    """Run a command; its output (EngineStartError when it fails)."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EngineStartError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _try(*argv: str) -> bool:
    """Run a command; whether it succeeded."""
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
