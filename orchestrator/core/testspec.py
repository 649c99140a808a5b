"""The checks of an ``image_test()``, validated at load time and kept as canonical JSON.

The canonical text (sorted keys, defaults filled in) is what the load cache stores and what the
result cache hashes: two definitions that mean the same thing share cached results.

    commands = [{"name", "command": [argv...], "env": {}, "user", "exit_code": 0,
                 "expected_output": [regex...], "excluded_output": [...],
                 "expected_error": [...], "excluded_error": [...]}]
    files    = [{"path": "/abs", "exists": True, "type": "file"|"dir"|"symlink",
                 "mode": "0644", "owner": "uid[:gid]", "contains": [regex...]}]
    metadata = {"user", "workdir", "env": {}, "entrypoint": [...], "cmd": [...],
                "exposed_ports": ["8080/tcp"], "labels": {}, "volumes": [...]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.errors import BuildFileError, did_you_mean


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)


def _is_str_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _matches(pattern: str, v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(pattern, v) is not None


Field = tuple[str, Callable[[Any], bool], Any]  # (type name, check, default; REQUIRED if required)
REQUIRED = object()

COMMAND_FIELDS: Mapping[str, Field] = {
    "name": ("string", _is_str, REQUIRED),
    "command": ("list of strings", _is_str_list, REQUIRED),
    "env": ("dict of string to string", _is_str_dict, {}),
    "user": ("string", _is_str, None),
    "exit_code": ("int", _is_int, 0),
    "expected_output": ("list of regular expressions", _is_str_list, []),
    "excluded_output": ("list of regular expressions", _is_str_list, []),
    "expected_error": ("list of regular expressions", _is_str_list, []),
    "excluded_error": ("list of regular expressions", _is_str_list, []),
}
FILE_FIELDS: Mapping[str, Field] = {
    "path": ("string", _is_str, REQUIRED),
    "name": ("string", _is_str, None),
    "exists": ("bool", _is_bool, True),
    "type": ('"file", "dir" or "symlink"', lambda v: v in ("file", "dir", "symlink"), None),
    "mode": ('octal string such as "0644"', lambda v: _matches(r"0?[0-7]{3,4}", v), None),
    "owner": ('"uid" or "uid:gid" (numbers)', lambda v: _matches(r"\d+(:\d+)?", v), None),
    "contains": ("list of regular expressions", _is_str_list, []),
}
METADATA_FIELDS: Mapping[str, Field] = {
    "user": ("string", _is_str, None),
    "workdir": ("string", _is_str, None),
    "env": ("dict of string to string", _is_str_dict, None),
    "entrypoint": ("list of strings", _is_str_list, None),
    "cmd": ("list of strings", _is_str_list, None),
    "exposed_ports": ("list of strings", _is_str_list, None),
    "labels": ("dict of string to string", _is_str_dict, None),
    "volumes": ("list of strings", _is_str_list, None),
}
REGEX_FIELDS = ("expected_output", "excluded_output", "expected_error", "excluded_error", "contains")


def canonical_spec(rule: str, commands: Any, files: Any, metadata: Any) -> str:
    """The checks as canonical JSON; BuildFileError naming the bad entry otherwise."""
    if not isinstance(commands, list | tuple):
        raise BuildFileError(f"{rule}: commands must be a list of dicts")
    if not isinstance(files, list | tuple):
        raise BuildFileError(f"{rule}: files must be a list of dicts")
    if metadata is not None and not isinstance(metadata, dict):
        raise BuildFileError(f"{rule}: metadata must be a dict")
    checked_commands = [_entry(f"{rule}: commands[{i}]", c, COMMAND_FIELDS) for i, c in enumerate(commands)]
    checked_files = [_entry(f"{rule}: files[{i}]", f, FILE_FIELDS) for i, f in enumerate(files)]
    checked_metadata = None if metadata is None else _metadata(f"{rule}: metadata", metadata)
    names = [c["name"] for c in checked_commands]
    for file in checked_files:
        if not file["path"].startswith("/"):
            raise BuildFileError(f"{rule}: files: path {file['path']!r} must be absolute")
        if file["name"] is None:
            file["name"] = f"{'file' if file['exists'] else 'no file'} {file['path']}"
        names.append(file["name"])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BuildFileError(f"{rule}: check names must be unique; repeated: {', '.join(duplicates)}")
    if not checked_commands and not checked_files and not checked_metadata:
        raise BuildFileError(f"{rule}: no checks (give commands, files or metadata)")
    spec = {"commands": checked_commands, "files": checked_files, "metadata": checked_metadata}
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def parse_spec(text: str) -> dict[str, Any]:
    """The canonical JSON back as a dict (as ``canonical_spec`` made it)."""
    value: dict[str, Any] = json.loads(text)
    return value


def _entry(where: str, value: Any, fields: Mapping[str, Field]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BuildFileError(f"{where} must be a dict, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key in value:
        if key not in fields:
            raise BuildFileError(
                f"{where}: unknown key {key!r}{did_you_mean(key, list(fields))}; valid keys: {', '.join(fields)}"
            )
    for key, (type_name, check, default) in fields.items():
        if key not in value or value[key] is None:
            if default is REQUIRED:
                raise BuildFileError(f"{where}: {key!r} is required")
            out[key] = default
            continue
        item = value[key]
        if not check(item):
            raise BuildFileError(f"{where}: {key!r} must be a {type_name}, got {item!r}")
        out[key] = list(item) if isinstance(item, tuple) else item
        if key in REGEX_FIELDS:
            for pattern in item:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise BuildFileError(f"{where}: {key!r}: bad regular expression {pattern!r}: {exc}") from None
    if "command" in out and not out["command"]:
        raise BuildFileError(f"{where}: 'command' must not be empty")
    if "mode" in out and out["mode"] is not None:
        out["mode"] = out["mode"].rjust(4, "0")
    return out


def _metadata(where: str, value: dict[str, Any]) -> dict[str, Any]:
    entry = _entry(where, value, METADATA_FIELDS)
    return {k: v for k, v in entry.items() if v is not None}
