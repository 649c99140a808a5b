"""The packages an image's files say it holds: dpkg and apk databases, Python distributions.

Parsers of the formats as the package managers write them, and ``wanted`` / ``packages_in``, which
choose the files to read from the layers and read them. Pure: bytes in, ``Package`` values out.

    /var/lib/dpkg/status            paragraphs; only ``Status: ... installed`` counts
    /var/lib/dpkg/status.d/<name>   distroless: one paragraph a file, usually without Status
    /lib/apk/db/installed           ``P:`` name, ``V:`` version, ``A:`` arch, a blank line between
    .../site-packages/<d>.dist-info/METADATA   (dist-packages too) ``Name:``, ``Version:`` headers
    /etc/os-release (/usr/lib/os-release)      ``ID``, ``VERSION_ID``, ``PRETTY_NAME``: the distro
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")  # the first found wins
_DIST_INFO = re.compile(r"(?:^|/)(?:site|dist)-packages/[^/]+\.dist-info/METADATA$")


@dataclass(frozen=True, slots=True, order=True)
class Package:
    kind: str  # deb | apk | pypi
    name: str
    version: str
    arch: str | None = None


@dataclass(frozen=True, slots=True)
class OsRelease:
    id: str
    version_id: str | None = None
    pretty_name: str | None = None


def wanted(path: str) -> bool:
    """Whether ``path`` (from the root, no leading ``/``) is a file the packages are read from."""
    if path in (DPKG_STATUS, APK_INSTALLED) or path in OS_RELEASE:
        return True
    if posixpath.dirname(path) == DPKG_STATUS_D:
        return not path.endswith(".md5sums")
    return _DIST_INFO.search(path) is not None


def packages_in(files: Mapping[str, bytes]) -> list[Package]:
    """Every package the files (``wanted`` ones, by path) name, sorted, each once."""
    found: set[Package] = set()
    for path, content in files.items():
        text = content.decode("utf-8", errors="replace")
        if path == DPKG_STATUS:
            found.update(parse_dpkg_status(text))
        elif posixpath.dirname(path) == DPKG_STATUS_D:
            found.update(parse_dpkg_status(text, status_required=False))
        elif path == APK_INSTALLED:
            found.update(parse_apk_installed(text))
        elif _DIST_INFO.search(path):
            package = parse_metadata(text)
            if package is not None:
                found.add(package)
    return sorted(found)


def os_release_in(files: Mapping[str, bytes]) -> OsRelease | None:
    for path in OS_RELEASE:
        if path in files:
            return parse_os_release(files[path].decode("utf-8", errors="replace"))
    return None


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg's): ``Field: value``, continuation lines start with a blank."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            fields[last] = value.strip()


def parse_dpkg_status(text: str, *, status_required: bool = True) -> list[Package]:
    """The installed packages of a dpkg status file: ``Status: <want> <flag> installed`` only.

    ``status_required=False`` (distroless's ``status.d`` files): a paragraph without Status counts.
    """
    packages = []
    for fields in _paragraphs(text):
        name, version = fields.get("package"), fields.get("version")
        if not name or not version:
            continue
        status = fields.get("status")
        if status is None:
            if status_required:
                continue
        elif status.split()[-1:] != ["installed"]:
            continue
        packages.append(Package("deb", name, version, fields.get("architecture") or None))
    return packages


def parse_apk_installed(text: str) -> list[Package]:
    """The packages of apk's database (``/lib/apk/db/installed``)."""
    packages = []
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields.get("P") and fields.get("V"):
                packages.append(Package("apk", fields["P"], fields["V"], fields.get("A") or None))
            fields = {}
        elif len(line) > 1 and line[1] == ":":
            fields.setdefault(line[0], line[2:].strip())
    return packages


def normalize_python_name(name: str) -> str:
    """PEP 503's normalized name (``Foo_Bar.baz`` -> ``foo-bar-baz``), as purls of PyPI packages use."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_metadata(text: str) -> Package | None:
    """The distribution a ``METADATA`` file describes (its headers; the body is ignored)."""
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    return Package("pypi", normalize_python_name(str(name).strip()), str(version).strip())


def parse_os_release(text: str) -> OsRelease | None:
    """``/etc/os-release``: shell-style ``KEY=value`` lines, values maybe quoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    if not values.get("ID"):
        return None
    return OsRelease(values["ID"], values.get("VERSION_ID") or None, values.get("PRETTY_NAME") or None)
