"""The SBOM slice of the supply-chain step (issue 16): parsers, the layer merge, the document, the
cache by key, ``orchestrator sbom`` and ``build --attest sbom`` on the FakeExecutor.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.cli import build_run
from orchestrator.engine import local
from orchestrator.supply.layers import ImageArchiveError, Link, final_files, saved_image_layers
from orchestrator.supply.packages import (
    Package,
    normalize_python_name,
    packages_in,
    parse_apk_installed,
    parse_dpkg_status,
    parse_metadata,
    parse_os_release,
    wanted,
)
from orchestrator.supply.sbom import image_sbom, purl, saved_image_sbom, sbom_document
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace

STATUS = """\
Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.
 .
 More text.

Package: libold1
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: tzdata
Status: hold ok installed
Architecture: all
Version: 2024a-0+deb12u1

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 2
"""

APK = """\
C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
T:the musl c library

C:Q1def=
P:busybox
V:1.36.1-r15
A:x86_64
"""

METADATA = """\
Metadata-Version: 2.1
Name: Foo_Bar.baz
Version: 2.0.1
Summary: A thing
Classifier: Name: not this

Name: not the body
"""

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'

Files = Mapping[str, bytes | str | None]  # None: a directory; "->target": a symbolic link


def layer(files: Files, *, gzip: bool = False) -> io.BytesIO:
    """A layer tar: bytes are files, None a directory, a str ``->target`` a symbolic link."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz" if gzip else "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content.removeprefix("->")
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    data.seek(0)
    return data


def saved(*layers: Files) -> bytes:
    """A ``docker save`` tar (Docker's own layout) of an image made of ``layers``, lowest first."""
    data = io.BytesIO()
    names_ = [f"{i:064x}/layer.tar" for i in range(len(layers))]
    with tarfile.open(fileobj=data, mode="w") as tar:
        manifest = json.dumps([{"Config": "c.json", "RepoTags": None, "Layers": names_}]).encode()
        for name, content in [("manifest.json", manifest), ("c.json", b"{}")] + [
            (n, layer(files).getvalue()) for n, files in zip(names_, layers, strict=True)
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


def merged(*layers: Files) -> dict[str, bytes]:
    return final_files([layer(files) for files in layers], wanted)


def components(document: str) -> list[dict[str, Any]]:
    return list(json.loads(document).get("components", []))


def purls(document: str) -> list[str]:
    return sorted(c["purl"] for c in components(document) if "purl" in c)


# --- parsers ----------------------------------------------------------------------------------------


def test_dpkg_status_lists_only_installed_packages() -> None:
    found = parse_dpkg_status(STATUS)
    assert [(p.name, p.version, p.arch) for p in found] == [
        ("base-files", "12.4+deb12u5", "amd64"),
        ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
        ("tzdata", "2024a-0+deb12u1", "all"),
    ]
    assert all(p.kind == "deb" for p in found)


def test_a_status_d_paragraph_without_status_counts_and_one_in_status_does_not() -> None:
    text = "Package: libc6\nVersion: 2.36-9\nArchitecture: arm64\n"
    assert parse_dpkg_status(text, status_required=False) == [Package("deb", "libc6", "2.36-9", "arm64")]
    assert parse_dpkg_status(text) == []


def test_apk_installed() -> None:
    assert parse_apk_installed(APK) == [
        Package("apk", "musl", "1.2.4-r2", "x86_64"),
        Package("apk", "busybox", "1.36.1-r15", "x86_64"),
    ]


def test_metadata_headers_only_with_the_normalized_name() -> None:
    assert parse_metadata(METADATA) == Package("pypi", "foo-bar-baz", "2.0.1")
    assert parse_metadata("Metadata-Version: 2.1\nName: x\n") is None
    assert normalize_python_name("Zope.Interface__x") == "zope-interface-x"


def test_os_release() -> None:
    found = parse_os_release(OS_RELEASE)
    assert found is not None
    assert (found.id, found.version_id, found.pretty_name) == ("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    assert parse_os_release("NAME=x\n") is None


def test_wanted_paths() -> None:
    assert wanted("var/lib/dpkg/status")
    assert wanted("var/lib/dpkg/status.d/libc6")
    assert not wanted("var/lib/dpkg/status.d/libc6.md5sums")
    assert not wanted("var/lib/dpkg/status-old")
    assert wanted("lib/apk/db/installed")
    assert wanted("usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA")
    assert wanted("opt/venv/lib/python3.12/site-packages/a_b-1.dist-info/METADATA")
    assert not wanted("opt/venv/lib/python3.12/site-packages/a_b-1.dist-info/RECORD")
    assert not wanted("srv/a_b-1.dist-info/METADATA")
    assert wanted("etc/os-release") and wanted("usr/lib/os-release")


# --- the layer merge --------------------------------------------------------------------------------


def test_later_layers_replace_files_and_members_may_start_with_dot_slash() -> None:
    files = merged({"./var/lib/dpkg/status": b"one", "./etc/hostname": b"h"}, {"var/lib/dpkg/status": b"two"})
    assert files == {"var/lib/dpkg/status": b"two"}


def test_a_whiteout_deletes_the_status_file_of_a_lower_layer() -> None:
    files = merged({"var/lib/dpkg/status": STATUS.encode()}, {"var/lib/dpkg/.wh.status": b""})
    assert files == {}


def test_a_whiteout_of_a_directory_deletes_what_is_under_it() -> None:
    files = merged(
        {"var/lib/dpkg/status": b"s", "var/lib/dpkg/status.d/a": b"a", "lib/apk/db/installed": b"i"},
        {"var/lib/.wh.dpkg": b""},
    )
    assert files == {"lib/apk/db/installed": b"i"}


def test_an_opaque_directory_hides_the_lower_layers_but_not_its_own() -> None:
    files = merged(
        {"var/lib/dpkg/status.d/a": b"a", "var/lib/dpkg/status.d/b": b"b", "var/lib/dpkg/status": b"s"},
        {"var/lib/dpkg/status.d/": None, "var/lib/dpkg/status.d/.wh..wh..opq": b"", "var/lib/dpkg/status.d/c": b"c"},
    )
    assert files == {"var/lib/dpkg/status": b"s", "var/lib/dpkg/status.d/c": b"c"}


def test_a_whiteout_does_not_hide_what_its_own_layer_adds() -> None:
    files = merged({"var/lib/dpkg/status": b"old"}, {"var/lib/dpkg/.wh.status": b"", "var/lib/dpkg/status": b"new"})
    assert files == {"var/lib/dpkg/status": b"new"}


def test_a_file_over_a_directory_replaces_what_was_under_it() -> None:
    files = merged({"var/lib/dpkg/status.d/a": b"a"}, {"var/lib/dpkg/status.d": b"now a file"})
    assert files == {}


def test_symbolic_links_are_followed_among_kept_files() -> None:
    files = merged({"usr/lib/os-release": OS_RELEASE.encode(), "etc/os-release": "->../usr/lib/os-release"})
    assert files["etc/os-release"] == OS_RELEASE.encode()
    dangling = merged({"etc/os-release": "->/nowhere"})
    assert dangling == {}


def test_compressed_layers_are_read() -> None:
    files = final_files([layer({"lib/apk/db/installed": APK.encode()}, gzip=True)], wanted)
    assert parse_apk_installed(files["lib/apk/db/installed"].decode())[0].name == "musl"


def test_link_entries_are_kept_until_the_end() -> None:
    assert Link("x") == Link("x")


def test_the_layers_of_a_saved_image_in_order() -> None:
    archive = io.BytesIO(saved({"a": b"1"}, {"b": b"2"}))
    found = []
    for lay in saved_image_layers(archive):
        with tarfile.open(fileobj=lay, mode="r|") as tar:
            found.append(tar.getnames())
    assert found == [["a"], ["b"]]
    with pytest.raises(ImageArchiveError, match=r"manifest\.json"):
        list(saved_image_layers(io.BytesIO(layer({"x": b""}).getvalue())))


# --- the document ----------------------------------------------------------------------------------


def test_purls() -> None:
    assert purl(Package("deb", "zlib1g", "1:1.2.13.dfsg-1", "amd64"), "debian") == (
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64"
    )
    assert purl(Package("deb", "bash", "5.2", "arm64"), "ubuntu") == "pkg:deb/ubuntu/bash@5.2?arch=arm64"
    assert purl(Package("deb", "bash", "5.2", None), None) == "pkg:deb/debian/bash@5.2"
    assert purl(Package("apk", "musl", "1.2.4-r2", "x86_64"), None) == "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"
    assert purl(Package("pypi", "foo-bar", "1.0"), "debian") == "pkg:pypi/foo-bar@1.0"


def test_the_document_of_an_image_with_dpkg_apk_and_python() -> None:
    image = saved(
        {
            "etc/os-release": OS_RELEASE.encode(),
            "var/lib/dpkg/status": STATUS.encode(),
            "var/lib/dpkg/status.d/libc6": b"Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\n",
            "var/lib/dpkg/status.d/libc6.md5sums": b"abc  /lib/x\n",
        },
        {"usr/local/lib/python3.11/site-packages/Foo_Bar.baz-2.0.1.dist-info/METADATA": METADATA.encode()},
    )
    text = saved_image_sbom(io.BytesIO(image), label="//x:x", key="k1", platform="linux/amd64")
    document = json.loads(text)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    assert purls(text) == [
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64",
        "pkg:deb/debian/libc6@2.36-9?arch=amd64",
        "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all",
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64",
        "pkg:pypi/foo-bar-baz@2.0.1",
    ]
    assert {c["type"] for c in components(text) if "purl" in c} == {"library"}
    assert [c for c in components(text) if c["type"] == "operating-system"] == [
        {"bom-ref": "os:debian@12", "name": "debian", "version": "12", "description": "Debian GNU/Linux 12 (bookworm)"}
        | {"type": "operating-system"}
    ]
    image_component = document["metadata"]["component"]
    named = (image_component["name"], image_component["version"], image_component["type"])
    assert named == ("//x:x", "k1", "container")
    properties = {p["name"]: p["value"] for p in image_component["properties"]}
    assert properties == {"orchestrator:key": "k1", "orchestrator:platform": "linux/amd64"}
    assert "timestamp" not in document["metadata"]


def test_the_same_key_gives_the_same_bytes_and_another_key_another_serial() -> None:
    packages = [Package("pypi", "b", "1"), Package("deb", "a", "1", "amd64")]
    one = sbom_document(packages, None, label="//x:x", key="k1", platform="linux/amd64")
    assert one == sbom_document(list(reversed(packages)), None, label="//x:x", key="k1", platform="linux/amd64")
    other = sbom_document(packages, None, label="//x:x", key="k2", platform="linux/amd64")
    assert json.loads(one)["serialNumber"] != json.loads(other)["serialNumber"]
    assert [c["name"] for c in components(one)] == sorted(c["name"] for c in components(one))


def test_an_image_without_package_databases_has_no_components() -> None:
    text = image_sbom([layer({"hello": b"hi\n"})], label="//x:x", key="k", platform="linux/amd64")
    assert components(text) == []


def test_a_package_listed_twice_is_one_component() -> None:
    files = {
        "a/site-packages/six-1.16.0.dist-info/METADATA": b"Name: six\nVersion: 1.16.0\n",
        "b/dist-packages/six-1.16.0.dist-info/METADATA": b"Name: six\nVersion: 1.16.0\n",
    }
    assert packages_in(files) == [Package("pypi", "six", "1.16.0")]


# --- the cache, the command and --attest on the fake engine --------------------------------------


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeExecutor]:
    executor = FakeExecutor(write_logs=True)
    executor.archives["*"] = saved({"var/lib/dpkg/status": STATUS.encode(), "etc/os-release": OS_RELEASE.encode()})

    def connect(spec: object = None) -> local.Engine:
        return local.Engine(executor=executor, images=executor.references())

    monkeypatch.setattr(build_run, "connect", connect)
    monkeypatch.setattr(local, "connect", connect)
    yield executor


def write_app(ws: ScratchWorkspace, platforms: str = "") -> None:
    build = f'image(name = "app"{platforms})\n'
    ws.write({"app/BUILD": build, "app/Dockerfile": "FROM scratch\nCOPY hello /hello\n", "app/hello": "hi\n"})


def test_sbom_builds_then_reads_the_image_then_answers_from_the_cache(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor
) -> None:
    write_app(workspace)
    first = workspace.run("-v", "sbom", "//app:app")
    assert first.exit_code == 0, first.output
    assert len(fake_engine.requests) == 1 and len(fake_engine.saves) == 1
    assert "read from the image's layers" in first.stderr
    assert "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64" in purls(first.stdout)
    second = workspace.run("-v", "sbom", "//app:app")
    assert second.exit_code == 0, second.output
    assert second.stdout == first.stdout
    assert "from the cache" in second.stderr
    assert len(fake_engine.requests) == 1 and len(fake_engine.saves) == 1


def test_sbom_of_a_platform_the_target_lacks_is_a_usage_error(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor
) -> None:
    write_app(workspace, ', platforms = ["linux/amd64", "linux/arm64"]')
    result = workspace.run("sbom", "//app:app", "--platform", "linux/s390x")
    assert result.exit_code == 2
    assert "linux/amd64, linux/arm64" in result.stderr
    assert fake_engine.requests == []


def test_sbom_defaults_to_the_first_platform(workspace: ScratchWorkspace, fake_engine: FakeExecutor) -> None:
    write_app(workspace, ', platforms = ["linux/arm64", "linux/amd64"]')
    fake_engine.native = "linux/arm64"
    result = workspace.run("sbom", "//app:app")
    assert result.exit_code == 0, result.output
    properties = json.loads(result.stdout)["metadata"]["component"]["properties"]
    assert {"name": "orchestrator:platform", "value": "linux/arm64"} in properties
    assert [r.platform for r in fake_engine.requests] == ["linux/arm64"]


def test_build_attest_sbom_caches_each_nodes_sbom_without_changing_keys(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor
) -> None:
    write_app(workspace)
    keys = workspace.keys()
    result = workspace.run("build", "--attest", "sbom")
    assert result.exit_code == 0, result.output
    assert workspace.keys() == keys
    (key,) = keys.values()
    with Store(workspace.cache_dir) as store:
        assert "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64" in purls(store.get(names.sbom(key, "linux/amd64")))
    assert len(fake_engine.saves) == 1
    again = workspace.run("-v", "sbom", "//app:app")
    assert "from the cache" in again.stderr and len(fake_engine.saves) == 1


def test_workspace_attestations_make_the_sbom_and_a_failure_is_a_warning(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor
) -> None:
    workspace.write({"WORKSPACE": 'workspace(attestations = ["sbom", "provenance"])\n'})
    write_app(workspace)
    fake_engine.archives.clear()
    result = workspace.run("build")
    assert result.exit_code == 0, result.output
    assert "no SBOM" in result.stderr
    assert len(fake_engine.saves) == 1


def test_a_build_without_attestations_reads_no_image(workspace: ScratchWorkspace, fake_engine: FakeExecutor) -> None:
    write_app(workspace)
    assert workspace.run("build").exit_code == 0
    assert fake_engine.saves == []


def test_workspace_attestations_are_checked_at_their_line(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": '\nworkspace(\n    attestations = ["sbon"],\n)\n'})
    write_app(workspace)
    result = workspace.run("query", "buildorder")
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR WORKSPACE:2:1: workspace(): attestations must be among sbom, provenance")
    assert "did you mean 'sbom'?" in result.stderr
