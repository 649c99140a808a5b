"""SLSA v1 provenance in an in-toto v1 statement (orchestrator/supply/provenance.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonschema
import pytest

from orchestrator import __version__
from orchestrator.supply.provenance import (
    BUILD_TYPE,
    BUILDER_ID,
    BasePin,
    BuildFacts,
    GitSource,
    ParentImage,
    Subject,
    git_uri,
    provenance_json,
    provenance_statement,
)

REPOSITORY = "127.0.0.1:5000/company/app"
AMD64 = "sha256:" + "a" * 64
ARM64 = "sha256:" + "b" * 64
INDEX = "sha256:" + "c" * 64
BASE = "sha256:" + "d" * 64
PARENT = "sha256:" + "e" * 64

FACTS = BuildFacts(
    label="//company:app",
    platform="linux/amd64",
    key="0123456789abcdef0123456789abcdef",
    key_algorithm="xxh3",
    key_schema="3",
    dockerfile="company/app/Dockerfile",
    inputs_digest="fedcba9876543210fedcba9876543210",
    builder="buildkit",
    engine="unix:///var/run/docker.sock",
    build_args=[("VERSION", "1.2"), ("DEBUG", "0")],
    bases=[
        BasePin(reference="127.0.0.1:5000/mirror/debian:bookworm", digest=BASE),
        BasePin(reference="127.0.0.1:5000/mirror/alpine:3.19", digest=BASE, source="engine"),
    ],
    parents=[
        ParentImage(label="//company:runtime", key="11" * 16),
        ParentImage(label="//company:base", key="22" * 16, digest=PARENT),
    ],
    source=GitSource(uri="git+file:///work/repo", commit="9" * 40),
    invocation_id="run-42",
    started_on="2024-05-01T10:00:00Z",
    finished_on="2024-05-01T10:01:00Z",
)
SUBJECTS = [Subject(name=REPOSITORY, digest=ARM64), Subject(name=REPOSITORY, digest=AMD64)]

_DESCRIPTOR = {  # in-toto v1 ResourceDescriptor: at least one of uri, digest, content
    "type": "object",
    "anyOf": [{"required": ["uri"]}, {"required": ["digest"]}, {"required": ["content"]}],
    "properties": {
        "uri": {"type": "string"},
        "name": {"type": "string"},
        "digest": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object"},
    },
}
SCHEMA = {  # the required fields of an in-toto Statement v1 and of a SLSA Provenance v1 predicate
    "type": "object",
    "required": ["_type", "subject", "predicateType", "predicate"],
    "properties": {
        "_type": {"const": "https://in-toto.io/Statement/v1"},
        "predicateType": {"const": "https://slsa.dev/provenance/v1"},
        "subject": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "digest"],
                "properties": {
                    "name": {"type": "string"},
                    "digest": {
                        "type": "object",
                        "required": ["sha256"],
                        "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                    },
                },
            },
        },
        "predicate": {
            "type": "object",
            "required": ["buildDefinition", "runDetails"],
            "properties": {
                "buildDefinition": {
                    "type": "object",
                    "required": ["buildType", "externalParameters"],
                    "properties": {
                        "buildType": {"type": "string", "format": "uri"},
                        "externalParameters": {"type": "object"},
                        "internalParameters": {"type": "object"},
                        "resolvedDependencies": {"type": "array", "items": _DESCRIPTOR},
                    },
                },
                "runDetails": {
                    "type": "object",
                    "required": ["builder"],
                    "properties": {
                        "builder": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": {"type": "string"}, "version": {"type": "object"}},
                        },
                        "metadata": {
                            "type": "object",
                            "properties": {
                                "invocationId": {"type": "string"},
                                "startedOn": {"type": "string"},
                                "finishedOn": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _statement(**changes: Any) -> dict[str, Any]:
    return provenance_statement(subjects=SUBJECTS, build=dataclasses.replace(FACTS, **changes))


def test_statement_has_every_required_in_toto_and_slsa_field() -> None:
    statement = provenance_statement(subjects=SUBJECTS, build=FACTS)
    jsonschema.validate(statement, SCHEMA, cls=jsonschema.Draft202012Validator)
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE == "urn:orchestrator:buildtype:image:v1"
    assert statement["predicate"]["runDetails"]["builder"] == {
        "id": BUILDER_ID,
        "version": {"orchestrator-images": __version__},
    }


def test_each_manifest_digest_is_a_subject_sorted_and_the_index_too_when_passed() -> None:
    statement = provenance_statement(
        subjects=[*SUBJECTS, Subject(name=REPOSITORY, digest=INDEX), SUBJECTS[0]], build=FACTS
    )
    assert statement["subject"] == [
        {"name": REPOSITORY, "digest": {"sha256": "a" * 64}},
        {"name": REPOSITORY, "digest": {"sha256": "b" * 64}},
        {"name": REPOSITORY, "digest": {"sha256": "c" * 64}},
    ]


def test_parameters_say_what_was_built_and_how() -> None:
    definition = provenance_statement(subjects=SUBJECTS, build=FACTS)["predicate"]["buildDefinition"]
    assert definition["externalParameters"] == {
        "target": "//company:app",
        "platform": "linux/amd64",
        "dockerfile": "company/app/Dockerfile",
        "buildArgs": {"VERSION": "1.2", "DEBUG": "0"},
    }
    assert definition["internalParameters"] == {
        "key": "0123456789abcdef0123456789abcdef",
        "keyAlgorithm": "xxh3",
        "keySchema": "3",
        "builder": "buildkit",
        "engine": "unix:///var/run/docker.sock",
    }


def test_resolved_dependencies_are_source_inputs_bases_then_parents() -> None:
    dependencies = provenance_statement(subjects=SUBJECTS, build=FACTS)["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert dependencies == [
        {"uri": "git+file:///work/repo", "digest": {"gitCommit": "9" * 40}},
        {"name": "orchestrator:inputs", "digest": {"orchestrator-xxh3": "fedcba9876543210fedcba9876543210"}},
        {
            "uri": "docker-image://127.0.0.1:5000/mirror/alpine:3.19",
            "digest": {"sha256": "d" * 64},
            "annotations": {"orchestrator:source": "engine"},
        },
        {
            "uri": "docker-image://127.0.0.1:5000/mirror/debian:bookworm",
            "digest": {"sha256": "d" * 64},
            "annotations": {"orchestrator:source": "registry"},
        },
        {"name": "//company:base", "digest": {"orchestrator-xxh3": "22" * 16, "sha256": "e" * 64}},
        {"name": "//company:runtime", "digest": {"orchestrator-xxh3": "11" * 16}},
    ]


def test_without_git_or_times_those_parts_are_left_out() -> None:
    statement = _statement(source=None, invocation_id=None, started_on=None, finished_on=None, key_algorithm="sha256")
    dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dependencies[0] == {"name": "orchestrator:inputs", "digest": {"orchestrator-sha256": FACTS.inputs_digest}}
    assert "metadata" not in statement["predicate"]["runDetails"]
    jsonschema.validate(statement, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_run_metadata_holds_only_what_was_given() -> None:
    statement = _statement(started_on=None)
    assert statement["predicate"]["runDetails"]["metadata"] == {
        "invocationId": "run-42",
        "finishedOn": "2024-05-01T10:01:00Z",
    }


def test_json_is_the_same_bytes_whatever_the_order_of_the_facts() -> None:
    shuffled = dataclasses.replace(FACTS, bases=list(reversed(FACTS.bases)), parents=list(reversed(FACTS.parents)))
    text = provenance_json(subjects=SUBJECTS, build=FACTS)
    assert text == provenance_json(subjects=list(reversed(SUBJECTS)), build=shuffled)
    assert text.endswith("}\n") and json.loads(text) == provenance_statement(subjects=SUBJECTS, build=FACTS)
    assert list(json.loads(text)) == sorted(json.loads(text))  # keys sorted


def test_build_facts_freeze_their_collections() -> None:
    assert isinstance(FACTS.build_args, tuple) and isinstance(FACTS.bases, tuple) and isinstance(FACTS.parents, tuple)
    assert hash(FACTS) == hash(dataclasses.replace(FACTS, started_on="later"))  # times are display-only


@pytest.mark.parametrize(
    "make",
    [
        lambda: Subject(name=REPOSITORY, digest="sha256:abc"),
        lambda: BasePin(reference="127.0.0.1:5000/mirror/debian", digest="md5:" + "0" * 32),
        lambda: ParentImage(label="//company:base", key="k", digest="A" * 64),
        lambda: dataclasses.replace(FACTS, key_algorithm="md5"),
        lambda: provenance_statement(subjects=[], build=FACTS),
    ],
    ids=["short-digest", "other-algorithm", "bare-hex", "key-algorithm", "no-subject"],
)
def test_bad_facts_are_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        (None, "git+file:///work/repo"),
        ("https://ci-token:hunter2@127.0.0.1/company/images.git", "git+https://127.0.0.1/company/images.git"),
        ("ssh://git@127.0.0.1/company/images.git", "git+ssh://127.0.0.1/company/images.git"),
        ("git+https://127.0.0.1/company/images.git", "git+https://127.0.0.1/company/images.git"),
        ("git@127.0.0.1:company/images.git", "git+ssh://127.0.0.1/company/images.git"),
    ],
)
def test_git_uri_names_the_remote_without_credentials(remote: str | None, expected: str) -> None:
    assert git_uri(remote, "/work/repo") == expected
