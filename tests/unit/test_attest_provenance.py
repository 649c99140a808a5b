"""Provenance after a build (``pipeline/attest_provenance.py``): facts from the graph, images.lock and keys;
cached by key and platform; the subject the registry's copy, else the image ID."""

from __future__ import annotations

import json

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.core.content import content_tag
from orchestrator.keys.hashing import keys_with_store
from orchestrator.pipeline.attest_provenance import make_provenance
from orchestrator.pipeline.summary import NodeReport, NodeStatus
from orchestrator.workspace.loading import load
from tests.workspaces import ScratchWorkspace

BASE_ID = "sha256:" + "b" * 64
PARENT_ID = "sha256:" + "c" * 64
CHILD_ID = "sha256:" + "d" * 64


def _family(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "base/BUILD": 'image(name = "base", repository = "company/base")\n',
            "base/Dockerfile": "FROM debian:bookworm\nCOPY hi /hi\n",
            "base/hi": "hi\n",
            "app/BUILD": 'image(name = "app", repository = "company/app", build_args = {"V": "1"})\n',
            "app/Dockerfile": "FROM company/base\nARG V\n",
            "images.lock": json.dumps(
                {"version": 1, "bases": {"debian:bookworm": {"linux/amd64": {"digest": BASE_ID, "source": "engine"}}}}
            ),
            "WORKSPACE": 'workspace(platforms = ["linux/amd64"])\n',
        }
    )


def test_provenance_lists_pins_parents_and_inputs_and_is_cached(workspace: ScratchWorkspace) -> None:
    _family(workspace)
    loaded = load(workspace.root, explicit_root=workspace.root)
    with Store(workspace.cache_dir) as store:
        computer, keys = keys_with_store(store, loaded, loaded.graph.topological_nodes(loaded.graph.nodes))
        by_label = {str(k.node.label): k for k in keys}
        base, app = by_label["//base:base"], by_label["//app:app"]
        reports = [
            NodeReport(node=base.node, key=base.key, status=NodeStatus.CACHED, reason="", image_id=PARENT_ID),
            NodeReport(
                node=app.node,
                key=app.key,
                status=NodeStatus.BUILT,
                reason="",
                image_id=CHILD_ID,
                builder="buildkit",
                engine="unix:///var/run/docker.sock",
            ),
        ]
        made, warnings = make_provenance(store, loaded, computer, reports, None)
        assert warnings == []
        statement = json.loads(made[app.node].text)
        assert statement["subject"] == [{"name": "company/app", "digest": {"sha256": "d" * 64}}]
        definition = statement["predicate"]["buildDefinition"]
        assert definition["externalParameters"] == {
            "target": "//app:app",
            "platform": "linux/amd64",
            "dockerfile": "app/Dockerfile",
            "buildArgs": {"V": "1"},
        }
        assert definition["internalParameters"]["key"] == app.key
        assert definition["internalParameters"]["builder"] == "buildkit"
        algorithm = f"orchestrator-{computer.algorithm}"
        assert {"name": "//base:base", "digest": {algorithm: base.key, "sha256": "c" * 64}} in definition[
            "resolvedDependencies"
        ]
        assert {"name": "orchestrator:inputs", "digest": {algorithm: computer.inputs_digest(app.node.label)}} in (
            definition["resolvedDependencies"]
        )
        base_statement = json.loads(made[base.node].text)
        assert {
            "uri": "docker-image://debian:bookworm",
            "digest": {"sha256": "b" * 64},
            "annotations": {"orchestrator:source": "engine"},
        } in base_statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert base_statement["predicate"]["buildDefinition"]["internalParameters"]["builder"] == "unknown"
        assert store.get(names.provenance(app.key, "linux/amd64")) == made[app.node].text

        # A later run finds it cached (another builder is not what built it) and only moves the subject.
        cached_app = NodeReport(node=app.node, key=app.key, status=NodeStatus.CACHED, reason="", image_id=BASE_ID)
        again = [reports[0], cached_app]
        cached, _ = make_provenance(store, loaded, computer, again, None)
        assert cached[app.node].cached
        moved = json.loads(cached[app.node].text)
        assert moved["subject"] == [{"name": "company/app", "digest": {"sha256": "b" * 64}}]
        assert moved["predicate"] == statement["predicate"]


def test_a_node_only_in_the_registry_without_a_registry_gets_a_warning(workspace: ScratchWorkspace) -> None:
    _family(workspace)
    loaded = load(workspace.root, explicit_root=workspace.root)
    with Store(workspace.cache_dir) as store:
        computer, keys = keys_with_store(store, loaded, loaded.graph.topological_nodes(loaded.graph.nodes))
        report = NodeReport(
            node=keys[0].node,
            key=keys[0].key,
            status=NodeStatus.REMOTE_CACHED,
            reason="",
            tags=(content_tag(keys[0].key),),
        )
        made, warnings = make_provenance(store, loaded, computer, [report], None)
    assert made == {}
    assert warnings == [f"{keys[0].node}: no provenance: its image is neither in the engine nor in the registry"]
