"""``orchestrator init``: adopting a tree of Dockerfiles, through the CLI (no Docker needed)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.adopt import writing
from orchestrator.adopt.naming import path_repository, repository_component, target_name
from orchestrator.adopt.scan import dockerfile_suffix
from orchestrator.errors import GraphError, Location
from tests.workspaces import ScratchWorkspace

OK = 0
OUT_OF_DATE = 1
PROBLEMS = 2


@dataclass(frozen=True)
class Spec:
    """One Dockerfile of the generated tree: the label init should give it and what it builds on."""

    path: str
    label: str
    lines: tuple[str, ...]
    parents: tuple[str, ...] = ()  # paths of the Dockerfiles its FROM / COPY --from / mount name


TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"

# A base, language bases on it, apps on those. Repositories come from LABELs (company/base,
# company/node, acme/auth), from images.toml (tools/go, acme/report) or from the path; several
# references ask for tags their producer does not declare (company/base:1.2, company/node:18,
# lang/python:3.11 and 3.12, tools/go:1.22, acme/auth:2), which init must add.
TREE: tuple[Spec, ...] = (
    Spec("base/Dockerfile", "//base:base", ("FROM debian:bookworm", f"LABEL {TITLE}=company/base {VERSION}=1.0")),
    Spec("lang/python/Dockerfile", "//lang/python:python", ("FROM company/base:1.2",), ("base/Dockerfile",)),
    Spec(
        "lang/node/Dockerfile",
        "//lang/node:node",
        ("FROM company/base", 'LABEL "org.orchestrator.repository"="company/node"'),
        ("base/Dockerfile",),
    ),
    Spec("lang/node/Dockerfile.slim", "//lang/node:node-slim", ("FROM company/base:1.0",), ("base/Dockerfile",)),
    Spec("lang/go/Dockerfile", "//lang/go:golang", ("FROM company/base:1.2",), ("base/Dockerfile",)),
    Spec(
        "apps/web/Dockerfile",
        "//apps/web:web",
        ("FROM company/node:18", "COPY --from=lang/python /usr/lib/python3 /py"),
        ("lang/node/Dockerfile", "lang/python/Dockerfile"),
    ),
    Spec("apps/web/Dockerfile.dev", "//apps/web:web-dev", ("FROM apps/web",), ("apps/web/Dockerfile",)),
    Spec("apps/api/Dockerfile", "//apps/api:api", ("FROM lang/python:3.11",), ("lang/python/Dockerfile",)),
    Spec(
        "apps/api/worker.Dockerfile",
        "//apps/api:api-worker",
        ("FROM lang/python:3.11 AS run", "COPY --from=tools/go:1.21 /usr/local/go /go"),
        ("lang/python/Dockerfile", "lang/go/Dockerfile"),
    ),
    Spec(
        "apps/cli/Dockerfile",
        "//apps/cli:cli",
        ("FROM tools/go:1.22 AS build", "RUN go build -o /cli .", "FROM company/base:1.0", "COPY --from=build /cli /"),
        ("lang/go/Dockerfile", "base/Dockerfile"),
    ),
    Spec(
        "apps/static/Dockerfile",
        "//apps/static:static",
        ("FROM scratch", "COPY --from=apps/cli:latest /cli /cli"),
        ("apps/cli/Dockerfile",),
    ),
    Spec("apps/report/Dockerfile", "//apps/report:report", ("FROM lang/python",), ("lang/python/Dockerfile",)),
    Spec(
        "apps/report/Dockerfile.test",
        "//apps/report:report-test",
        ("FROM acme/report:latest", "RUN pytest"),
        ("apps/report/Dockerfile",),
    ),
    Spec(
        "svc/auth/Dockerfile",
        "//svc/auth:auth",
        ("FROM company/node", f"LABEL {TITLE}=acme/auth"),
        ("lang/node/Dockerfile",),
    ),
    Spec(
        "svc/billing/Dockerfile",
        "//svc/billing:billing",
        ("ARG BASE=acme/auth", "FROM ${BASE}:2"),
        ("svc/auth/Dockerfile",),
    ),
    Spec(
        "svc/gateway/Dockerfile",
        "//svc/gateway:gateway",
        ("FROM nginx:1.25", "COPY --from=acme/auth /etc/auth /etc/auth"),
        ("svc/auth/Dockerfile",),
    ),
    Spec("tools/lint/Dockerfile", "//tools/lint:lint", ("FROM lang/python:3.12",), ("lang/python/Dockerfile",)),
    Spec("tools/docs/Dockerfile", "//tools/docs:docs", ("FROM tools/lint",), ("tools/lint/Dockerfile",)),
    Spec(
        "jobs/nightly/Dockerfile",
        "//jobs/nightly:nightly",
        ("FROM company/base:1.2", "RUN --mount=type=bind,from=svc/billing,target=/b ls /b"),
        ("base/Dockerfile", "svc/billing/Dockerfile"),
    ),
    Spec("jobs/cleanup/Dockerfile", "//jobs/cleanup:cleanup", ("FROM alpine:3.19", "RUN true")),
)

MAPPING = """\
[images."lang/go/Dockerfile"]
repository = "tools/go"
tags = ["1.21"]
name = "golang"

[images."apps/report/Dockerfile"]
repository = "acme/report"
"""

LABELS = {spec.path: spec.label for spec in TREE}
EDGES = {(LABELS[parent], spec.label) for spec in TREE for parent in spec.parents}


def _files(tree: tuple[Spec, ...] = TREE) -> dict[str, str]:
    files = {spec.path: "\n".join(spec.lines) + "\n" for spec in tree}
    files["images.toml"] = MAPPING
    files["apps/web/src/index.js"] = "console.log('hi')\n"
    files[".git/Dockerfile"] = "not a Dockerfile of the tree\n"
    files["apps/web/node_modules/pkg/Dockerfile"] = "FROM nothing-here\n"
    files["apps/web/Dockerfile.dockerignore"] = "node_modules\n"
    return files


@pytest.fixture
def repo(tmp_path: Path) -> ScratchWorkspace:
    """The generated tree of 20 Dockerfiles, with no WORKSPACE and no BUILD file yet."""
    ws = ScratchWorkspace(root=tmp_path / "repo", cache_dir=tmp_path / "cache")
    ws.write(_files())
    return ws


def _init(ws: ScratchWorkspace, *args: str) -> tuple[int, list[str], str]:
    result = ws.run("init", str(ws.root), *args)
    return result.exit_code, result.stdout.splitlines(), result.output


def _build_order(stdout: list[str]) -> list[str]:
    return stdout[stdout.index("build order:") + 1 :]


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _closure(label: str, *, up: bool) -> set[str]:
    found, todo = set(), [label]
    while todo:
        here = todo.pop()
        for parent, child in EDGES:
            nxt = parent if up and child == here else child if not up and parent == here else None
            if nxt is not None and nxt not in found:
                found.add(nxt)
                todo.append(nxt)
    return found


# --- Adopting the tree ------------------------------------------------------------------------------


def test_init_writes_one_image_per_dockerfile_and_a_workspace(repo: ScratchWorkspace) -> None:
    code, stdout, output = _init(repo)
    assert code == OK, output
    assert repo.path("WORKSPACE").read_text().endswith('workspace(name = "repo")\n')
    wrote = [line for line in stdout if line.startswith("wrote ")]
    assert wrote[0] == "wrote WORKSPACE"
    assert "wrote apps/web/BUILD (2 images)" in wrote
    assert "wrote lang/node/BUILD (2 images)" in wrote
    assert len(wrote) == 1 + len({spec.path.rsplit("/", 1)[0] for spec in TREE})
    assert sorted(_build_order(stdout)) == sorted(LABELS.values())
    assert not repo.path("apps/web/node_modules/pkg/BUILD").exists()
    assert not repo.path(".git/BUILD").exists()


def test_buildorder_after_init_puts_every_image_after_what_it_builds_on(repo: ScratchWorkspace) -> None:
    code, stdout, output = _init(repo)
    assert code == OK, output
    order = repo.lines("query", "buildorder")
    assert order == _build_order(stdout)
    assert sorted(order) == sorted(LABELS.values())
    position = {label: i for i, label in enumerate(order)}
    for parent, child in EDGES:
        assert position[parent] < position[child], f"{parent} must come before {child}"
    graph_edges = {tuple(e) for e in json.loads(repo.run("graph", "--format", "json").stdout)["edges"]}
    assert graph_edges == EDGES


def test_deps_and_rdeps_of_the_base_follow_the_dockerfiles(repo: ScratchWorkspace) -> None:
    assert _init(repo)[0] == OK
    assert set(repo.lines("query", "rdeps", "//base:base")) == _closure("//base:base", up=False)
    assert len(repo.lines("query", "rdeps", "//base:base")) == len(TREE) - 2  # all but itself and cleanup
    assert repo.lines("query", "rdeps", "--depth", "1", "company/base:1.2") == sorted(
        [
            *("//lang/python:python", "//lang/node:node", "//lang/node:node-slim", "//lang/go:golang"),
            *("//apps/cli:cli", "//jobs/nightly:nightly"),
        ]
    )
    assert set(repo.lines("query", "deps", "//apps/static:static")) == _closure("//apps/static:static", up=True)
    assert repo.lines("query", "deps", "//apps/static:static") == ["//apps/cli:cli", "//base:base", "//lang/go:golang"]
    assert repo.lines("query", "deps", "//base:base") == []


def test_tags_other_dockerfiles_ask_for_are_added_to_the_producer(repo: ScratchWorkspace) -> None:
    assert _init(repo)[0] == OK
    base = repo.path("base/BUILD").read_text()
    assert 'repository = "company/base",\n    tags = ["1.0", "latest", "1.2"],' in base
    assert "# tag '1.2' added for jobs/nightly/Dockerfile, lang/go/Dockerfile, lang/python/Dockerfile" in base
    assert (
        'repository = "lang/python",\n    tags = ["latest", "3.11", "3.12"],'
        in repo.path("lang/python/BUILD").read_text()
    )
    go = repo.path("lang/go/BUILD").read_text()
    assert 'name = "golang",\n    repository = "tools/go",\n    tags = ["1.21", "1.22"],' in go
    assert "# Dockerfile: repository from images.toml" in go
    node = repo.path("lang/node/BUILD").read_text()
    assert 'repository = "company/node",\n    tags = ["latest", "18"],' in node
    assert "repository from LABEL org.orchestrator.repository" in node
    assert 'name = "node-slim",\n    dockerfile = "Dockerfile.slim",\n    repository = "lang/node-slim",' in node
    assert 'repository = "acme/auth",\n    tags = ["latest", "2"],' in repo.path("svc/auth/BUILD").read_text()
    api = repo.path("apps/api/BUILD").read_text()
    assert 'name = "api-worker",\n    dockerfile = "worker.Dockerfile",\n    repository = "apps/api-worker",' in api


def test_generated_build_files_say_so_and_name_their_dockerfiles(repo: ScratchWorkspace) -> None:
    assert _init(repo)[0] == OK
    first = repo.path("apps/web/BUILD").read_text().splitlines()[0]
    assert first == "# Generated by `orchestrator init` from Dockerfile, Dockerfile.dev."


def test_init_again_without_force_changes_nothing_and_says_so(repo: ScratchWorkspace) -> None:
    assert _init(repo)[0] == OK
    before = _snapshot(repo.root)
    code, stdout, output = _init(repo)
    assert code == OK, output
    assert _snapshot(repo.root) == before
    assert not [line for line in stdout if line.startswith("wrote ")]
    assert "nothing written: 16 BUILD files already up to date" in stdout
    assert sorted(_build_order(stdout)) == sorted(LABELS.values())


def test_edited_generated_build_makes_a_rerun_write_nothing_and_exit_1_until_force(repo: ScratchWorkspace) -> None:
    assert _init(repo)[0] == OK
    generated = repo.path("tools/docs/BUILD").read_text()
    edited = generated.replace('tags = ["latest"]', 'tags = ["latest", "edited"]')
    repo.path("tools/docs/BUILD").write_text(edited)
    repo.write({"tools/new/Dockerfile": "FROM alpine:3.19\n"})
    before = _snapshot(repo.root)
    code, _, output = _init(repo)
    assert code == OUT_OF_DATE, output
    assert "nothing was written: 1 BUILD file generated earlier differs" in output
    assert "tools/docs/BUILD; --force rewrites them" in output
    _assert_nothing_written(repo, before)  # not even tools/new/BUILD
    code, stdout, output = _init(repo, "--dry-run")
    assert code == OK, output
    assert any(line.startswith("kept tools/docs/BUILD:") for line in stdout)
    code, stdout, output = _init(repo, "--force")
    assert code == OK, output
    assert "wrote tools/docs/BUILD (1 image)" in stdout
    assert repo.path("tools/docs/BUILD").read_text() == generated


def test_dry_run_writes_nothing_and_prints_the_files(repo: ScratchWorkspace) -> None:
    before = _snapshot(repo.root)
    code, stdout, output = _init(repo, "--dry-run")
    assert code == OK, output
    assert _snapshot(repo.root) == before
    assert "would write WORKSPACE:" in stdout
    assert "would write apps/web/BUILD (2 images):" in stdout
    assert '        repository = "company/base",' in stdout
    assert sorted(_build_order(stdout)) == sorted(LABELS.values())


def test_existing_workspace_file_is_kept(repo: ScratchWorkspace) -> None:
    repo.write({"WORKSPACE": 'workspace(name = "mine", platforms = ["linux/amd64"])\n'})
    code, stdout, output = _init(repo)
    assert code == OK, output
    assert repo.path("WORKSPACE").read_text() == 'workspace(name = "mine", platforms = ["linux/amd64"])\n'
    assert "wrote WORKSPACE" not in stdout


def test_hand_written_build_file_is_left_alone_and_its_directory_skipped(repo: ScratchWorkspace) -> None:
    hand_written = 'image(name = "reporting", repository = "acme/report")\n'
    repo.write({"apps/report/BUILD": hand_written, "images.toml": MAPPING.split("\n\n")[0] + "\n"})
    code, stdout, output = _init(repo)
    assert code == OK, output
    assert repo.path("apps/report/BUILD").read_text() == hand_written
    assert "left alone: apps/report/BUILD (not generated by orchestrator init)" in output
    order = _build_order(stdout)
    assert "//apps/report:reporting" in order
    assert "//apps/report:report-test" not in order  # its Dockerfile.test is not adopted
    assert _init(repo, "--force")[0] == OK
    assert repo.path("apps/report/BUILD").read_text() == hand_written


# --- Problems: nothing is written -------------------------------------------------------------------


def _assert_nothing_written(ws: ScratchWorkspace, before: dict[str, str]) -> None:
    assert _snapshot(ws.root) == before


def test_dockerfile_syntax_error_is_reported_with_its_path_and_nothing_is_written(repo: ScratchWorkspace) -> None:
    repo.write({"tools/lint/Dockerfile": "FROM\nRUN true\n"})
    before = _snapshot(repo.root)
    code, _, output = _init(repo)
    assert code == PROBLEMS
    assert "tools/lint/Dockerfile:1: FROM without an image" in output
    _assert_nothing_written(repo, before)


def test_two_dockerfiles_producing_one_reference_are_both_named(repo: ScratchWorkspace) -> None:
    repo.write({"jobs/cleanup/Dockerfile": f"FROM alpine:3.19\nLABEL {TITLE}=acme/auth\n"})
    before = _snapshot(repo.root)
    code, _, output = _init(repo)
    assert code == PROBLEMS
    assert "jobs/cleanup/Dockerfile: acme/auth:latest is also produced by svc/auth/Dockerfile" in output
    assert "svc/auth/Dockerfile: acme/auth:latest is also produced by jobs/cleanup/Dockerfile" in output
    _assert_nothing_written(repo, before)


def test_mapping_entry_for_a_missing_dockerfile_is_a_problem(repo: ScratchWorkspace) -> None:
    repo.write({"images.toml": MAPPING + '\n[images."apps/gone/Dockerfile"]\nrepository = "gone"\n'})
    before = _snapshot(repo.root)
    code, _, output = _init(repo)
    assert code == PROBLEMS
    assert "apps/gone/Dockerfile: the mapping names a Dockerfile that does not exist" in output
    _assert_nothing_written(repo, before)


def test_every_problem_is_reported_at_once(repo: ScratchWorkspace) -> None:
    repo.write(
        {
            "tools/lint/Dockerfile": "RUN true\n",
            "images.toml": MAPPING + '\n[images."nope/Dockerfile"]\nrepositry = "x"\n',
        }
    )
    code, _, output = _init(repo)
    assert code == PROBLEMS
    assert "nothing was written: 3 problems" in output
    assert "tools/lint/Dockerfile:1: RUN before the first FROM" in output
    assert "images.toml: [images.\"nope/Dockerfile\"] unknown key 'repositry' (did you mean 'repository'?)" in output
    assert "nope/Dockerfile: the mapping names a Dockerfile that does not exist" in output


def test_invalid_mapping_file_is_a_problem(repo: ScratchWorkspace) -> None:
    repo.write({"images.toml": "[images.\n"})
    before = _snapshot(repo.root)
    code, _, output = _init(repo)
    assert code == PROBLEMS
    assert "images.toml: invalid TOML" in output
    _assert_nothing_written(repo, before)


def test_mapping_values_are_checked(repo: ScratchWorkspace) -> None:
    repo.write({"images.toml": '[images."base/Dockerfile"]\nrepository = "Company/Base"\ntags = []\n'})
    code, _, output = _init(repo)
    assert code == PROBLEMS
    assert "repository 'Company/Base' is not an image repository" in output
    assert "tags must be a non-empty list of strings" in output


def test_explicit_mapping_file_that_does_not_exist_is_a_problem(repo: ScratchWorkspace, tmp_path: Path) -> None:
    code, _, output = _init(repo, "--mapping", str(tmp_path / "nope.toml"))
    assert code == PROBLEMS
    assert "nope.toml: no such mapping file" in output


def test_cycle_names_every_dockerfile_in_it_and_nothing_is_written(repo: ScratchWorkspace) -> None:
    repo.write({"base/Dockerfile": f"FROM tools/docs\nLABEL {TITLE}=company/base {VERSION}=1.0\n"})
    before = _snapshot(repo.root)
    code, _, output = _init(repo)
    assert code == PROBLEMS
    for path in ("base/Dockerfile", "lang/python/Dockerfile", "tools/lint/Dockerfile", "tools/docs/Dockerfile"):
        assert f"{path}: in a dependency cycle" in output
    _assert_nothing_written(repo, before)


def test_ambiguous_tag_request_names_both_producers(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "repo", cache_dir=tmp_path / "cache")
    ws.write(
        {
            "a/Dockerfile": f"FROM alpine:3.19\nLABEL {TITLE}=acme/app {VERSION}=1\n",
            "b/Dockerfile": f"FROM alpine:3.19\nLABEL {TITLE}=acme/app {VERSION}=2\n",
            "c/Dockerfile": "FROM acme/app:3\n",
        }
    )
    code, _, output = _init(ws)
    assert code == PROBLEMS
    assert "c/Dockerfile:1: acme/app:3: a/Dockerfile and b/Dockerfile both produce acme/app" in output
    # latest: both have it, so it is a duplicate too
    assert "a/Dockerfile: acme/app:latest is also produced by b/Dockerfile" in output


def test_no_dockerfile_is_a_problem(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "empty", cache_dir=tmp_path / "cache")
    ws.write({"README.md": "nothing\n"})
    code, _, output = _init(ws)
    assert code == PROBLEMS
    assert "no Dockerfile to adopt" in output
    assert not ws.path("WORKSPACE").exists()


def test_external_base_that_ends_like_a_path_repository_gets_a_hint(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "repo", cache_dir=tmp_path / "cache")
    ws.write({"base/company-base/Dockerfile": "FROM debian:bookworm\n", "app/Dockerfile": "FROM acme/company-base\n"})
    code, stdout, output = _init(ws)
    assert code == OK, output
    assert "app/Dockerfile:1: acme/company-base is an external base; if it means base/company-base/Dockerfile" in output
    assert _build_order(stdout) == ["//app:app", "//base/company-base:company-base"]


# --- Inferring references from the tree -------------------------------------------------------------

# The shape of docker-library's buildpack-deps (the full image's context holds curl/ and scm/), and a
# company base named by its directory; no LABEL, no images.toml.
NESTED = {
    "buildpack-deps/bookworm/curl/Dockerfile": "FROM debian:bookworm\n",
    "buildpack-deps/bookworm/scm/Dockerfile": "FROM buildpack-deps:bookworm-curl\n",
    "buildpack-deps/bookworm/Dockerfile": "FROM buildpack-deps:bookworm-scm\n",
    "images/company-base/Dockerfile": "FROM buildpack-deps:bookworm\n",
    "apps/api/Dockerfile": "FROM company-base:latest\n",
}
NESTED_ORDER = [
    "//buildpack-deps/bookworm/curl:curl",
    "//buildpack-deps/bookworm/scm:scm",
    "//buildpack-deps/bookworm:bookworm",
    "//images/company-base:company-base",
    "//apps/api:api",
]


@pytest.fixture
def nested(tmp_path: Path) -> ScratchWorkspace:
    ws = ScratchWorkspace(root=tmp_path / "nested", cache_dir=tmp_path / "cache")
    ws.write(NESTED)
    return ws


def test_nested_tree_without_mapping_gets_its_edges_from_the_directories(nested: ScratchWorkspace) -> None:
    code, stdout, output = _init(nested)
    assert code == OK, output
    assert _build_order(stdout) == NESTED_ORDER
    edges = {tuple(e) for e in json.loads(nested.run("graph", "--format", "json").stdout)["edges"]}
    assert edges == set(itertools.pairwise(NESTED_ORDER))
    scm = nested.path("buildpack-deps/bookworm/scm/BUILD").read_text()
    assert 'repository = "buildpack-deps",\n    tags = ["bookworm-scm"],' in scm
    assert "repository from the tree (buildpack-deps names the directory buildpack-deps)" in scm
    full = nested.path("buildpack-deps/bookworm/BUILD").read_text()
    assert 'repository = "buildpack-deps",\n    tags = ["bookworm"],' in full  # bookworm/ beats bookworm/curl/
    base = nested.path("images/company-base/BUILD").read_text()
    assert 'repository = "company-base",\n    tags = ["latest"],' in base
    assert _init(nested)[0] == OK  # a rerun finds the BUILD files up to date


def test_in_family_reference_that_cannot_be_mapped_writes_nothing_and_names_the_entry(
    nested: ScratchWorkspace,
) -> None:
    nested.write(
        {
            "buildpack-deps/bookworm/Dockerfile": "FROM buildpack-deps:bookworm-scm-extra\n",
            "apps/api/Dockerfile": "FROM company-base:2.0\n",
        }
    )
    before = _snapshot(nested.root)
    code, _, output = _init(nested)
    assert code == PROBLEMS
    assert "nothing was written: 2 problems" in output
    assert (
        "apps/api/Dockerfile:1: company-base:2.0 looks like an image of this tree (company-base names "
        "images/company-base/) but cannot be mapped: no Dockerfile under images/company-base/ has the path "
        '.../2.0/; add to images.toml: [images."images/company-base/Dockerfile"] repository = "company-base", '
        'tags = ["2.0"]'
    ) in output
    assert "buildpack-deps/bookworm/Dockerfile:1: buildpack-deps:bookworm-scm-extra looks like an image" in output
    assert 'repository = "buildpack-deps", tags = ["bookworm-scm-extra"]' in output
    _assert_nothing_written(nested, before)
    nested.write(
        {
            "images.toml": '[images."buildpack-deps/bookworm/scm/Dockerfile"]\n'
            'repository = "buildpack-deps"\ntags = ["bookworm-scm-extra"]\n\n'
            '[images."images/company-base/Dockerfile"]\nrepository = "company-base"\ntags = ["2.0"]\n'
        }
    )
    code, stdout, output = _init(nested)
    assert code == OK, output
    assert _build_order(stdout) == NESTED_ORDER


def test_reference_matching_two_dockerfiles_lists_both_entries(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "repo", cache_dir=tmp_path / "cache")
    ws.write(
        {
            "python/3.12/bookworm/Dockerfile": "FROM debian:bookworm\n",
            "python/bookworm/3.12/Dockerfile": "FROM debian:bookworm\n",
            "app/Dockerfile": "FROM python:3.12-bookworm\n",
        }
    )
    code, _, output = _init(ws)
    assert code == PROBLEMS
    assert "it could be python/3.12/bookworm/Dockerfile or python/bookworm/3.12/Dockerfile" in output
    assert '[images."python/3.12/bookworm/Dockerfile"] repository = "python", tags = ["3.12-bookworm"] or ' in output


def test_directory_named_like_its_own_external_base_leaves_it_external(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "repo", cache_dir=tmp_path / "cache")
    ws.write({"base/debian/Dockerfile": "FROM debian:bookworm\n", "app/Dockerfile": "FROM alpine:3.19\n"})
    code, stdout, output = _init(ws)
    assert code == OK, output
    assert _build_order(stdout) == ["//app:app", "//base/debian:debian"]


def test_rerun_after_the_tree_changed_writes_nothing_and_says_force_rewrites(nested: ScratchWorkspace) -> None:
    assert _init(nested)[0] == OK
    nested.write({"apps/api/Dockerfile": "FROM buildpack-deps:bookworm-curl\n"})
    before = _snapshot(nested.root)
    code, _, output = _init(nested)
    assert code == OUT_OF_DATE
    assert "buildpack-deps/bookworm/curl/BUILD" in output
    assert "--force rewrites them" in output
    _assert_nothing_written(nested, before)
    code, stdout, output = _init(nested, "--force")
    assert code == OK, output
    assert "//buildpack-deps/bookworm/curl:curl" in _build_order(stdout)
    assert 'tags = ["bookworm-curl"],' in nested.path("buildpack-deps/bookworm/curl/BUILD").read_text()


def test_root_dockerfile_and_odd_names(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "My Repo", cache_dir=tmp_path / "cache")
    ws.write(
        {
            "Dockerfile": "FROM alpine:3.19\n",
            "Web.App/Dockerfile.Dev": "FROM my-repo\n",
            "Web.App/dev.Dockerfile": "FROM my-repo\n",
        }
    )
    code, stdout, output = _init(ws)
    assert code == OK, output
    assert _build_order(stdout) == ["//:my-repo", "//Web.App:web.app-dev", "//Web.App:web.app-dev-2"]
    assert ws.path("WORKSPACE").read_text().endswith('workspace(name = "my-repo")\n')
    text = ws.path("Web.App/BUILD").read_text()
    assert 'name = "web.app-dev",\n    dockerfile = "Dockerfile.Dev",\n    repository = "web.app-dev",' in text
    assert 'name = "web.app-dev-2",\n    dockerfile = "dev.Dockerfile",\n    repository = "web.app-dev-2",' in text


def test_directory_that_cannot_be_a_package_is_a_problem(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "repo", cache_dir=tmp_path / "cache")
    ws.write({"web app/Dockerfile": "FROM alpine:3.19\n"})
    code, _, output = _init(ws)
    assert code == PROBLEMS
    assert "web app/Dockerfile: the directory 'web app' cannot be a package" in output


# --- Names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "suffix"),
    [
        ("Dockerfile", ""),
        ("Dockerfile.dev", "dev"),
        ("worker.Dockerfile", "worker"),
        ("Dockerfile.dockerignore", None),
        ("Dockerfile.dev.dockerignore", None),
        ("worker.Dockerfile.dockerignore", None),
        ("Dockerfile.bak", None),
        ("Dockerfile.", None),
        ("dockerfile", None),
        ("Dockerfiles", None),
    ],
)
def test_dockerfile_names(filename: str, suffix: str | None) -> None:
    assert dockerfile_suffix(filename) == suffix


def test_names_and_repositories_are_made_valid() -> None:
    assert target_name("Web App") == "web-app"
    assert target_name("...") == "image"
    assert repository_component("Web__App") == "web__app"
    assert repository_component("a._b") == "a-b"
    assert repository_component("-x-") == "x"
    assert path_repository("base/Python", "python") == "base/python"
    assert path_repository("registry.example/app", "app") == "registry-example/app"
    assert path_repository("", "repo") == "repo"


def test_files_are_put_back_when_the_written_workspace_fails_to_load(
    repo: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _init(repo)[0] == OK
    repo.path("tools/docs/BUILD").write_text(repo.path("tools/docs/BUILD").read_text() + "# edited\n")
    before = _snapshot(repo.root)

    def failing_load(*args: object, **kwargs: object) -> None:
        raise GraphError("the loader disagrees", location=Location("tools/docs/Dockerfile", 1))

    monkeypatch.setattr(writing, "load", failing_load)
    code, _, output = _init(repo, "--force")
    assert code == PROBLEMS
    assert "tools/docs/Dockerfile:1: the loader disagrees" in output
    _assert_nothing_written(repo, before)
