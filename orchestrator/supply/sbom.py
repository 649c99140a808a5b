"""The SBOM of one image on one platform: a CycloneDX 1.6 JSON document, the same bytes for the same key.

    layers (lowest first) -> the package databases of the final file system (``layers.py``)
                          -> packages (``packages.py``) -> the document

The image is ``metadata.component`` (type ``container``; name: the target's label, version: the key;
properties ``orchestrator:platform`` and ``orchestrator:key``); each package is a ``library``
component named by its purl, and the distro of ``/etc/os-release`` an ``operating-system`` one.
Nothing in it depends on when or where it was made: the components are sorted, there is no
timestamp, and the serial number is derived from the key and platform.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import IO

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from orchestrator import __version__
from orchestrator.supply.layers import final_files, saved_image_layers
from orchestrator.supply.packages import OsRelease, Package, os_release_in, packages_in, wanted

SERIAL_NAMESPACE = uuid.UUID("5bd1a7a0-4f0c-4d55-9a43-6f7263686573")  # uuid5(this, "<key> <platform>")
DEFAULT_NAMESPACE = {"deb": "debian", "apk": "alpine"}  # when the image has no /etc/os-release


def purl(package: Package, distro: str | None) -> str:
    """``pkg:deb/debian/bash@5.2-1?arch=amd64``, ``pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64``, ``pkg:pypi/six@1.16.0``.

    The distro (``/etc/os-release``'s ID) is the namespace of OS packages; without one, debian or alpine.
    """
    if package.kind == "pypi":
        return PackageURL(type="pypi", name=package.name, version=package.version).to_string()
    namespace = distro or DEFAULT_NAMESPACE[package.kind]
    qualifiers = {"arch": package.arch} if package.arch else None
    return PackageURL(
        type=package.kind, namespace=namespace, name=package.name, version=package.version, qualifiers=qualifiers
    ).to_string()


def sbom_document(
    packages: Sequence[Package],
    os_release: OsRelease | None,
    *,
    label: str,
    key: str,
    platform: str,
) -> str:
    """The CycloneDX JSON of an image (``label`` at ``key`` on ``platform``) holding ``packages``."""
    distro = os_release.id if os_release is not None else None
    bom = Bom(serial_number=uuid.uuid5(SERIAL_NAMESPACE, f"{key} {platform}"))
    bom.metadata.tools.components.add(
        Component(name="orchestrator", version=__version__, type=ComponentType.APPLICATION)
    )
    image = Component(
        name=label,
        version=key,
        type=ComponentType.CONTAINER,
        bom_ref=f"image:{label}@{key}",
        properties=[
            Property(name="orchestrator:key", value=key),
            Property(name="orchestrator:platform", value=platform),
        ],
    )
    bom.metadata.component = image
    components = []
    if os_release is not None:
        components.append(
            Component(
                name=os_release.id,
                version=os_release.version_id,
                description=os_release.pretty_name,
                type=ComponentType.OPERATING_SYSTEM,
                bom_ref=f"os:{os_release.id}@{os_release.version_id or ''}",
            )
        )
    seen: set[str] = set()
    for package in sorted(packages):
        ref = purl(package, distro)
        if ref in seen:
            continue
        seen.add(ref)
        components.append(
            Component(
                name=package.name,
                version=package.version,
                type=ComponentType.LIBRARY,
                purl=PackageURL.from_string(ref),
                bom_ref=ref,
            )
        )
    for component in components:
        bom.components.add(component)
    bom.register_dependency(image, components)
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"].pop("timestamp", None)  # the library stamps the time of the call: dropped (optional)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def image_sbom(layers: Iterable[IO[bytes]], *, label: str, key: str, platform: str) -> str:
    """The SBOM of the image the layers make (lowest first)."""
    files = final_files(layers, wanted)
    return sbom_document(packages_in(files), os_release_in(files), label=label, key=key, platform=platform)


def saved_image_sbom(archive: IO[bytes], *, label: str, key: str, platform: str) -> str:
    """The SBOM of the image in a ``docker save`` tar (seekable)."""
    return image_sbom(saved_image_layers(archive), label=label, key=key, platform=platform)
