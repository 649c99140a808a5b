"""Run the checks of one ``image_test()`` against one image, through a ContainerProbe.

One result per command, per file entry and per metadata field checked, in the order the spec
lists them. A failed check's message says what was expected and what was found
(``expected exit code 0, got 2; stderr: 'boom\\n'``); regular expressions are searched for
(``re.search`` with ``MULTILINE``), so ``^hi$`` matches a line. Engine failures are not check
failures: they propagate as OrchestratorError.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.core.testspec import METADATA_FIELDS
from orchestrator.engine.probe import CONTENT_LIMIT, DEFAULT_TIMEOUT_S, ContainerProbe, FileFacts, FileType

SHOWN_CHARS = 400  # of an output or a file quoted in a message


class CheckKind(StrEnum):
    COMMAND = "command"
    FILE = "file"
    METADATA = "metadata"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str
    kind: CheckKind
    passed: bool
    message: str  # what was expected and what was found ("" when passed)
    duration_s: float
    timed_out: bool = False  # a command killed after its timeout (such results are not cached)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": str(self.kind),
            "passed": self.passed,
            "message": self.message,
            "duration_s": self.duration_s,
            "timed_out": self.timed_out,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> CheckResult:
        return CheckResult(
            name=str(data["name"]),
            kind=CheckKind(data["kind"]),
            passed=bool(data["passed"]),
            message=str(data["message"]),
            duration_s=float(data["duration_s"]),
            timed_out=bool(data.get("timed_out", False)),
        )


def run_checks(
    spec: Mapping[str, Any],
    image: str,
    platform: str,
    probe: ContainerProbe,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[CheckResult]:
    """Every check of ``spec`` (as ``spec.parse_spec`` returns it) against ``image`` on ``platform``."""
    results = [_command(entry, image, platform, probe, timeout_s) for entry in spec.get("commands") or ()]
    results += [_file(entry, image, probe) for entry in spec.get("files") or ()]
    if spec.get("metadata"):
        results += _metadata(spec["metadata"], image, probe)
    return results


# --- commands ---------------------------------------------------------------------------------


def _command(
    entry: Mapping[str, Any], image: str, platform: str, probe: ContainerProbe, timeout_s: float
) -> CheckResult:
    run = probe.run(
        image,
        entry["command"],
        env=entry.get("env") or {},
        user=entry.get("user"),
        platform=platform,
        timeout_s=timeout_s,
    )
    name = entry["name"]
    if run.timed_out:
        message = f"timed out after {timeout_s:g}s (the container was killed); output so far: {_show(run.stdout)}"
        if run.stderr:
            message += f"; stderr so far: {_show(run.stderr)}"
        return CheckResult(
            name=name, kind=CheckKind.COMMAND, passed=False, message=message, duration_s=run.duration_s, timed_out=True
        )
    exit_problem = run.exit_code != entry["exit_code"]
    problems = [f"expected exit code {entry['exit_code']}, got {run.exit_code}"] if exit_problem else []
    output_problems = _regex_problems("output", run.stdout, entry["expected_output"], entry["excluded_output"])
    error_problems = _regex_problems("stderr", run.stderr, entry["expected_error"], entry["excluded_error"])
    problems += output_problems + error_problems
    if output_problems:
        problems.append(f"output was: {_show(run.stdout)}")
    if error_problems or exit_problem:
        problems.append(f"stderr: {_show(run.stderr)}")
        if exit_problem and not output_problems and not run.stderr.strip() and run.stdout.strip():
            problems.append(f"output: {_show(run.stdout)}")
    return CheckResult(
        name=name,
        kind=CheckKind.COMMAND,
        passed=not problems,
        message="; ".join(problems),
        duration_s=run.duration_s,
    )


def _regex_problems(what: str, text: str, expected: Sequence[str], excluded: Sequence[str]) -> list[str]:
    problems = [f"{what} did not match {p}" for p in expected if not re.search(p, text, re.MULTILINE)]
    problems += [f"{what} matched {p}, which it should not" for p in excluded if re.search(p, text, re.MULTILINE)]
    return problems


# --- files ------------------------------------------------------------------------------------


def _file(entry: Mapping[str, Any], image: str, probe: ContainerProbe) -> CheckResult:
    started = time.monotonic()
    path = entry["path"]
    facts = probe.file(image, path, read_content=bool(entry["contains"]))
    if not entry["exists"]:
        problems = [] if facts is None else [f"{path} exists but should not"]
    elif facts is None:
        problems = [f"{path} does not exist"]
    else:
        problems = _file_problems(entry, facts)
    return CheckResult(
        name=entry["name"],
        kind=CheckKind.FILE,
        passed=not problems,
        message="; ".join(problems),
        duration_s=time.monotonic() - started,
    )


def _file_problems(entry: Mapping[str, Any], facts: FileFacts) -> list[str]:
    problems = []
    path = entry["path"]
    if entry["type"] is not None and facts.type != entry["type"]:
        link = f" (-> {facts.link_target})" if facts.link_target else ""
        problems.append(f"type is {facts.type}{link}, expected {entry['type']}")
    if entry["mode"] is not None and facts.mode != int(entry["mode"], 8):
        problems.append(f"mode is {facts.mode:04o}, expected {entry['mode']}")
    if entry["owner"] is not None:
        uid, _, gid = entry["owner"].partition(":")
        if gid and (facts.uid, facts.gid) != (int(uid), int(gid)):
            problems.append(f"owner is {facts.uid}:{facts.gid}, expected {entry['owner']}")
        elif not gid and facts.uid != int(uid):
            problems.append(f"owner is {facts.uid}, expected {uid}")
    if entry["contains"]:
        if facts.type is not FileType.FILE or facts.content is None:
            problems.append(f"cannot check contents: {path} is a {facts.type}, not a regular file")
        else:
            text = facts.content.decode("utf-8", "replace")
            missing = [f"contents did not match {p}" for p in entry["contains"] if not re.search(p, text, re.MULTILINE)]
            if missing:
                read = f" (only the first {CONTENT_LIMIT} bytes were read)" if facts.truncated else ""
                problems += [*missing, f"contents were: {_show(text)}{read}"]
    return problems


# --- metadata ---------------------------------------------------------------------------------


def _metadata(expected: Mapping[str, Any], image: str, probe: ContainerProbe) -> list[CheckResult]:
    started = time.monotonic()
    config = probe.config(image)
    fields = [name for name in METADATA_FIELDS if name in expected]
    each = (time.monotonic() - started) / max(len(fields), 1)  # one inspect, shared by the fields
    found: dict[str, Any] = {
        "user": config.user,
        "workdir": config.workdir,
        "env": config.env,
        "entrypoint": list(config.entrypoint),
        "cmd": list(config.cmd),
        "exposed_ports": list(config.exposed_ports),
        "labels": config.labels,
        "volumes": list(config.volumes),
    }
    results = []
    for name in fields:
        want = expected[name]
        have = found[name]
        if name in ("env", "labels"):
            problems = _pairs_problems("env" if name == "env" else "label", have, want)
        elif name == "exposed_ports":
            problems = _ports_problems(have, want)
        elif name == "volumes":
            problems = [] if sorted(have) == sorted(want) else [f"volumes are {_json(have)}, expected {_json(want)}"]
        elif name in ("entrypoint", "cmd"):
            problems = [] if have == want else [f"{name} is {_json(have)}, expected {_json(want)}"]
        else:
            problems = [] if have == want else [f"{name} is {_scalar(have)}, expected {want!r}"]
        results.append(
            CheckResult(
                name=f"metadata {name}",
                kind=CheckKind.METADATA,
                passed=not problems,
                message="; ".join(problems),
                duration_s=each,
            )
        )
    return results


def _pairs_problems(what: str, have: Mapping[str, str], want: Mapping[str, str]) -> list[str]:
    problems = []
    for key, value in want.items():
        if key not in have:
            problems.append(f"{what} {key} is not set, expected {value!r}")
        elif have[key] != value:
            problems.append(f"{what} {key} is {have[key]!r}, expected {value!r}")
    return problems


def _ports_problems(have: Sequence[str], want: Sequence[str]) -> list[str]:
    exposed = set(have)
    missing = [port for port in want if _port(port) not in exposed]
    if not missing:
        return []
    shown = ", ".join(sorted(exposed)) or "none"
    return [f"port {_port(port)} is not exposed (exposed: {shown})" for port in missing]


def _port(port: str) -> str:
    """``8080`` means ``8080/tcp``, as in a Dockerfile's EXPOSE."""
    return port if "/" in port else f"{port}/tcp"


def _scalar(value: str) -> str:
    return f"{value!r} (not set)" if value == "" else repr(value)


def _json(value: Any) -> str:
    return json.dumps(value)


def _show(text: str) -> str:
    """``text`` quoted for a message, its end cut off beyond SHOWN_CHARS."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
