"""The supply chain on the real engine and the real registry: ``build --push --attest sbom,provenance
--sign-key``, then ``orchestrator verify`` (and ``sign``) as CI would run them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.registry.artifacts import fetch_artifact, referrers, signature_tag
from orchestrator.registry.client import Registry
from orchestrator.workspace.lockfile import LOCK_FILE
from tests.dpkg import OS_RELEASE, STATUS
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

SBOM_TYPE = "application/vnd.cyclonedx+json"
PROVENANCE_TYPE = "application/vnd.in-toto+json"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """A P-256 key pair as PEM files: (private PKCS#8, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "cosign.key"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = tmp_path / "cosign.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


@pytest.fixture
def family(workspace: ScratchWorkspace, busybox_image: str, docker_api: Any) -> Iterator[str]:
    """One image on the busybox base (pinned in images.lock) holding a crafted dpkg status: its repository."""
    repository = f"ot-supply-{uuid.uuid4().hex[:8]}"
    workspace.write(
        {
            "x/BUILD": f'image(name = "x", repository = "{repository}", tags = ["1.0"])\n',
            "x/Dockerfile": (
                f"FROM {busybox_image}\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\n"
            ),
            "x/status": STATUS,
            "x/os-release": OS_RELEASE,
        }
    )
    locked = workspace.run("lock")
    assert locked.exit_code == 0, locked.output
    yield repository
    for image in docker_api.images():
        for tag in image.get("RepoTags") or []:
            if repository in tag:
                docker_api.remove_image(tag, force=True)


def _payload(client: Registry, repository: str, digest: str, artifact_type: str) -> dict[str, Any]:
    found = referrers(client, repository, digest, artifact_type)
    assert len(found) == 1, found
    _, payload = fetch_artifact(client, repository, found[0].digest)
    document: dict[str, Any] = json.loads(payload)
    return document


def test_push_attest_sign_then_verify_and_a_moved_tag_fails(
    workspace: ScratchWorkspace,
    family: str,
    registry: str,
    keys: tuple[Path, Path],
    busybox_image: str,
    docker_api: Any,
) -> None:
    private, public = keys
    ref = f"{registry}/{family}:1.0"
    before = workspace.keys()
    built = workspace.run(
        "build",
        "--registry",
        registry,
        "--push",
        "--attest",
        "sbom,provenance",
        "--sign-key",
        str(private),
    )
    assert built.exit_code == 0, built.output
    assert "WARNING" not in built.output, built.output
    assert workspace.keys() == before  # attestations and signing are no inputs of keys

    with Registry(registry) as client:
        digest = client.manifest_bytes(family, "1.0")[2]
        sbom = _payload(client, family, digest, SBOM_TYPE)
        provenance = _payload(client, family, digest, PROVENANCE_TYPE)
        assert client.manifest_json(family, signature_tag(digest)) is not None
    assert sorted(c["purl"] for c in sbom["components"] if "purl" in c) == [
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64",
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64",
    ]
    assert provenance["subject"] == [{"name": f"{registry}/{family}", "digest": {"sha256": digest[7:]}}]
    pins = json.loads((workspace.root / LOCK_FILE).read_text())["bases"][busybox_image]
    (platform, pin), *_ = pins.items()
    dependencies = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {
        "uri": f"docker-image://{busybox_image}",
        "digest": {"sha256": pin["digest"].removeprefix("sha256:")},
        "annotations": {"orchestrator:source": pin["source"]},
    } in dependencies
    assert provenance["predicate"]["buildDefinition"]["internalParameters"]["key"] == before[f"//x:x {platform}"]

    verified = workspace.run("verify", ref, "--key", str(public), "--require", "sbom,provenance")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.strip() == f"verified {ref}@{digest} (signature, sbom, provenance)"

    # The tag moves to another image (a second build, pushed without signing): verify fails.
    workspace.write({"x/status": STATUS.replace("12.4+deb12u5", "12.4+deb12u6")})
    moved = workspace.run("build", "--registry", registry, "--push")
    assert moved.exit_code == 0, moved.output
    with Registry(registry) as client:
        new_digest = client.manifest_bytes(family, "1.0")[2]
        assert new_digest != digest
        failed = workspace.run("verify", ref, "--key", str(public))
        assert failed.exit_code == 1, failed.output
        assert failed.stderr.strip() == f"ERROR no signature for {ref}@{new_digest}"

        # The old image's signature copied beside the new image: it names the old digest.
        media_type, body, _ = client.manifest_bytes(family, signature_tag(digest))
        client.put_manifest(family, signature_tag(new_digest), media_type, body)
        copied = workspace.run("verify", ref, "--key", str(public))
    assert copied.exit_code == 1, copied.output
    assert copied.stderr.startswith(f"ERROR signature does not match {ref}@{new_digest}")


def test_verify_requires_an_attestation_the_image_was_pushed_without(
    workspace: ScratchWorkspace, family: str, registry: str, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    ref = f"{registry}/{family}:1.0"
    built = workspace.run("build", "--registry", registry, "--push")
    assert built.exit_code == 0, built.output
    unsigned = workspace.run("verify", ref, "--key", str(public))
    assert unsigned.exit_code == 1
    assert "ERROR no signature for" in unsigned.stderr

    signed = workspace.run("sign", ref, "--key", str(private))
    assert signed.exit_code == 0, signed.output
    assert workspace.run("verify", ref, "--key", str(public)).exit_code == 0
    missing = workspace.run("verify", ref, "--key", str(public), "--require", "provenance")
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"ERROR no provenance attestation for {ref}@sha256:")


def test_attestations_change_no_key(workspace: ScratchWorkspace, family: str) -> None:
    plain = workspace.lines("hash")
    workspace.write({"WORKSPACE": 'workspace(attestations = ["sbom", "provenance"])\n'})
    assert workspace.lines("hash") == plain


def test_sign_key_without_push_is_a_usage_error(
    workspace: ScratchWorkspace, family: str, keys: tuple[Path, Path]
) -> None:
    result = workspace.run("build", "--sign-key", str(keys[0]))
    assert result.exit_code == 2
    assert "--sign-key signs what --push publishes" in result.output


def test_verify_against_a_registry_that_is_down_exits_2(workspace: ScratchWorkspace, keys: tuple[Path, Path]) -> None:
    result = workspace.run("verify", "127.0.0.1:1/company/base:1.0", "--key", str(keys[1]))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("ERROR ")
