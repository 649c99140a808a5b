"""``--output``: validated on every command, ``json`` wherever data is printed, and the text forms."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from orchestrator.cache.store import Store
from orchestrator.cli import engine as cli_engine
from orchestrator.cli.main import app
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline
from orchestrator.registry.pins import Resolver
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace


def _output_options(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(command path, valid values) of every command that takes --output."""
    found = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _output_options(sub, (*path, name))
    for param in getattr(command, "params", []):
        if "--output" in param.opts:
            found.append((path, tuple(param.type.choices)))
    return found


OUTPUTS = _output_options(typer.main.get_command(app))
NEEDS_TARGET = {("explain",), ("query", "deps"), ("query", "rdeps")}


def test_the_commands_that_print_data_take_output() -> None:
    assert {path for path, _ in OUTPUTS} >= {
        ("build",),
        ("explain",),
        ("graph",),
        ("hash",),
        ("lint",),
        ("lock",),
        ("query", "affected"),
        ("query", "buildorder"),
        ("query", "deps"),
        ("query", "outdated"),
        ("query", "rdeps"),
    }
    assert all("json" in values for _, values in OUTPUTS)


@pytest.mark.parametrize(("path", "values"), OUTPUTS, ids=[" ".join(path) for path, _ in OUTPUTS])
def test_unknown_output_is_a_usage_error_listing_the_valid_values(
    path: tuple[str, ...], values: tuple[str, ...]
) -> None:
    target = ["//x"] if path in NEEDS_TARGET else []
    result = CliRunner().invoke(app, [*path, "--output", "yaml", *target])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Invalid value for '--output'" in result.stderr and "'yaml' is not one of" in result.stderr
    for value in values:
        assert f"'{value}'" in result.stderr


def test_explain_yaml_is_rejected_before_loading_anything(family: ScratchWorkspace) -> None:
    result = family.run("explain", "-o", "yaml", "//apps/web")
    assert result.exit_code == 2
    assert "'yaml' is not one of 'label', 'json'" in result.stderr
    assert result.stdout == ""


def _build_family(ws: ScratchWorkspace) -> None:
    loaded = load(ws.root)
    with Store(ws.cache_dir) as store:
        pipeline = Pipeline(loaded, store, ws.cache_dir, FakeExecutor(), BuildOptions())
        assert pipeline.run(pipeline.plan(loaded.graph.select([]))).exit_code == 0


def test_explain_shows_an_added_file_as_absent_before_not_none(family: ScratchWorkspace) -> None:
    _build_family(family)
    family.write({"apps/web/src/new.js": "console.log('new')\n"})
    result = family.run("explain", "//apps/web")
    assert result.exit_code == 0, result.output
    assert "None" not in result.stdout
    added = next(line for line in result.stdout.splitlines() if "src/new.js" in line)
    assert added.startswith("  ctx src/new.js: (absent) -> ")
    as_json = json.loads(family.run("explain", "-o", "json", "//apps/web").stdout)
    change = next(c for c in as_json[0]["changes"] if c["entry"] == "ctx src/new.js")
    assert change["old"] is None and change["new"]


def test_graph_takes_output_and_keeps_format(family: ScratchWorkspace) -> None:
    as_json = json.loads(family.run("graph", "-o", "json", "//apps/web").stdout)
    assert "//apps/web:web" in [t["label"] for t in as_json["targets"]]
    assert family.run("graph", "--format", "mermaid").stdout == family.run("graph", "--output", "mermaid").stdout


def _engine_with_bases() -> FakeExecutor:
    executor = FakeExecutor()
    for reference in ("alpine:3.19", "gcc:13"):
        executor.add_image(reference, labels={"v": "1"})
    return executor


@pytest.fixture
def fake_bases(monkeypatch: pytest.MonkeyPatch) -> None:
    """lock and query outdated resolve the family's bases from a fake engine, not the local daemon."""
    engine = _engine_with_bases()

    @contextmanager
    def resolver(spec: object = None) -> Iterator[Resolver]:
        yield Resolver(engine)

    monkeypatch.setattr(cli_engine, "base_resolver", resolver)


@pytest.mark.usefixtures("fake_bases")
def test_lock_json_lists_the_changes_and_the_pins(family: ScratchWorkspace) -> None:
    result = family.run("lock", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["pins"] == 2 and document["written"] is True
    assert sorted((c["reference"], c["old"]) for c in document["changes"]) == [("alpine:3.19", None), ("gcc:13", None)]
    again = family.run("lock")
    assert again.exit_code == 0 and again.stdout == "images.lock: 2 pins, unchanged\n"


@pytest.mark.usefixtures("fake_bases")
def test_outdated_says_so_when_every_base_is_current(family: ScratchWorkspace) -> None:
    assert family.run("lock").exit_code == 0
    result = family.run("query", "outdated")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the list a script reads is empty
    assert result.stderr == "every locked base is current (images.lock needs no update)\n"
    assert "Traceback" not in result.output
    assert json.loads(family.run("query", "outdated", "-o", "json").stdout) == []
