"""Tests for orchestrator.dockerfile.reads: what a build reads from its context, found statically."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from orchestrator.dockerfile import ContextReads, Read, context_reads, onbuild_reads
from orchestrator.errors import DockerfileError


def reads_of(
    text: str,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: str | None = "linux/amd64",
    base_triggers: Mapping[str, ContextReads] | None = None,
) -> ContextReads:
    triggers = base_triggers or {}
    return context_reads(
        text,
        path="Dockerfile",
        build_args=build_args or {},
        target=target,
        platform=platform,
        base_triggers=triggers.get,
    )


def sources(text: str, **kwargs: object) -> list[str]:
    result = reads_of(text, **kwargs)  # type: ignore[arg-type]
    assert result.whole is None, result.whole
    return [read.source for read in result.reads]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("COPY app.py /app/", ["app.py"]),
        ("COPY a.txt b.txt c/ /app/", ["a.txt", "b.txt", "c"]),
        ("COPY src/ /app/", ["src"]),
        ("COPY ./src/./lib/ /app/", ["src/lib"]),
        ("COPY . /app", ["."]),
        ("COPY *.py /app/", ["*.py"]),
        ('COPY ["my file.txt", "other", "/app/"]', ["my file.txt", "other"]),
        ('COPY "quoted.txt" /app/', ["quoted.txt"]),
        ("COPY --chown=1000:1000 --chmod=0644 --link a /b", ["a"]),
        ("COPY --from=builder /out /app", []),
        ("COPY --from=nginx:1.27 /etc/nginx /etc/nginx", []),
        ("COPY <<EOF /etc/motd\nhello\nEOF", []),
        ("COPY <<EOF real.txt /etc/\nhello\nEOF", ["real.txt"]),
        ("ADD https://example.com/x.tgz /x", []),
        ("ADD git@github.com:moby/buildkit.git /src", []),
        ("ADD https://github.com/moby/buildkit.git#v0.10.1 /src", []),
        ("ADD local.tgz /x", ["local.tgz"]),
        ("ADD --checksum=sha256:00 https://example.com/x local.txt /x/", ["local.txt"]),
        ("COPY ../x /x", ["x"]),
        ("COPY ../../etc/passwd /x", ["etc/passwd"]),
        ("COPY /abs/x /x", ["abs/x"]),
        ("COPY a/../b /x", ["b"]),
        ("COPY ./ /x", ["."]),
        ("RUN --mount=type=bind,source=go.sum,target=/go.sum go build", ["go.sum"]),
        ("RUN --mount=type=bind,src=requirements.txt,target=/r pip install", ["requirements.txt"]),
        ("RUN --mount=target=/src make", ["."]),
        ("RUN --mount=type=bind,target=/src make", ["."]),
        ('RUN --mount="type=bind,source=a,target=/a" make', ["a"]),
        ("RUN --mount=type=cache,target=/root/.cache pip install", []),
        ("RUN --mount=type=secret,id=token cat /run/secrets/token", []),
        ("RUN --mount=type=ssh git clone x", []),
        ("RUN --mount=type=tmpfs,target=/t make", []),
        ("RUN --mount=type=bind,from=builder,source=/out,target=/o make", []),
        ("RUN --mount=type=cache,from=builder,target=/o make", []),
        ("RUN echo hi", []),
        ("ONBUILD COPY . /app", []),
        ("ONBUILD RUN --mount=type=bind,source=x,target=/x make", []),
    ],
)
def test_sources_read_by_one_instruction(body: str, expected: list[str]) -> None:
    assert sources(f"FROM alpine\n{body}\n") == expected


def test_a_read_names_its_line_and_instruction_and_whether_it_is_a_glob() -> None:
    text = "FROM alpine\nWORKDIR /app\nCOPY src/ *.cfg /app/\nRUN --mount=type=bind,source=x,target=/x make\n"
    assert reads_of(text) == ContextReads(
        reads=(
            Read(source="src", glob=False, line=3, why="COPY src/ *.cfg /app/"),
            Read(source="*.cfg", glob=True, line=3, why="COPY src/ *.cfg /app/"),
            Read(source="x", glob=False, line=4, why="RUN --mount=type=bind,source=x,target=/x"),
        )
    )


def test_a_long_instruction_is_cut_to_80_characters() -> None:
    text = "FROM alpine\nCOPY " + " ".join(f"file{i}.txt" for i in range(20)) + " /app/\n"
    whys = {read.why for read in reads_of(text).reads}
    assert len(whys) == 1
    (why,) = whys
    assert len(why) == 80 and why.startswith("COPY file0.txt file1.txt") and why.endswith("...")


def test_a_continued_instruction_reads_on_one_line_named_by_its_first() -> None:
    text = "FROM alpine\nCOPY a \\\n     b \\\n     /app/\n"
    result = reads_of(text)
    assert [(r.source, r.line) for r in result.reads] == [("a", 2), ("b", 2)]
    assert "\n" not in result.reads[0].why


def test_escape_directive_with_backtick() -> None:
    text = "# escape=`\nFROM alpine\nCOPY a `\n     b `\n     /app/\nCOPY c\\d /x\n"
    assert sources(text) == ["a", "b", "c\\d"]


@pytest.mark.parametrize(
    ("text", "build_args", "expected"),
    [
        ("FROM alpine\nARG SRC=src\nCOPY ${SRC}/ /app/\n", {}, ["src"]),
        ("FROM alpine\nARG SRC=src\nCOPY ${SRC}/ /app/\n", {"SRC": "other"}, ["other"]),
        ("FROM alpine\nARG SRC\nCOPY app${SRC} /app/\n", {}, ["app"]),
        ("FROM alpine\nARG SRC\nCOPY ${SRC:-fallback} /app/\n", {}, ["fallback"]),
        ("FROM alpine\nARG SRC\nCOPY ${SRC} /app/\n", {"SRC": "given"}, ["given"]),
        ("FROM alpine\nARG V=1\nARG SRC=v$V\nCOPY $SRC /app/\n", {}, ["v1"]),
        ('FROM alpine\nARG SRC="a b"\nCOPY ["$SRC", "/app/"]\n', {}, ["a b"]),
        # a global ARG is seen in a stage only after ARG NAME there; then it keeps its global value
        ("ARG SRC=global\nFROM alpine\nARG SRC\nCOPY ${SRC} /app/\n", {}, ["global"]),
        ("ARG SRC=global\nFROM alpine\nARG SRC\nCOPY ${SRC} /app/\n", {"SRC": "arg"}, ["arg"]),
        ("ARG SRC=global\nFROM alpine\nARG SRC=local\nCOPY ${SRC} /app/\n", {}, ["local"]),
        # a stage built on an earlier stage inherits its ARGs
        ("FROM alpine AS base\nARG SRC=inherited\nFROM base\nCOPY ${SRC} /app/\n", {}, ["inherited"]),
        ("FROM alpine\nCOPY \\$literal /app/\n", {}, ["$literal"]),
        ("FROM alpine\nCOPY '$literal' /app/\n", {}, ["$literal"]),
        ("FROM alpine\nARG SRC=x\nRUN --mount=type=bind,source=$SRC,target=/x make\n", {}, ["x"]),
    ],
)
def test_arg_substitution_of_sources(text: str, build_args: dict[str, str], expected: list[str]) -> None:
    assert sources(text, build_args=build_args) == expected


@pytest.mark.parametrize(
    ("platform", "expected"),
    [("linux/arm64", ["bin/linux-arm64"]), ("linux/amd64", ["bin/linux-amd64"]), ("linux/arm/v7", ["bin/linux-arm"])],
)
def test_platform_args_declared_in_the_stage(platform: str, expected: list[str]) -> None:
    text = "FROM alpine\nARG TARGETOS TARGETARCH\nCOPY bin/${TARGETOS}-${TARGETARCH} /usr/bin/app\n"
    assert sources(text, platform=platform) == expected


@pytest.mark.parametrize(
    ("text", "line", "name"),
    [
        ("ARG SRC=global\nFROM alpine\nCOPY ${SRC} /app/\n", 3, "SRC"),  # a global ARG not redeclared
        ("FROM alpine\nCOPY bin-${TARGETARCH} /app/\n", 2, "TARGETARCH"),  # a platform ARG not declared
        ("FROM alpine AS a\nARG SRC=x\nFROM alpine\nCOPY ${SRC} /app/\n", 4, "SRC"),  # another stage's ARG
        ("FROM alpine\nCOPY ${APP_DIR}/ /app/\n", 2, "APP_DIR"),  # maybe an ENV of the base image
    ],
)
def test_a_source_using_a_name_that_is_not_an_arg_in_scope_makes_the_whole_context_an_input(
    text: str, line: int, name: str
) -> None:
    result = reads_of(text, platform="linux/arm64")
    assert result.whole is not None
    assert result.whole.startswith(f"Dockerfile:{line}: COPY source ")
    assert f"uses {name}, which is not an ARG in scope (ENV values are not followed)" in result.whole


def test_a_source_using_an_env_makes_the_whole_context_an_input() -> None:
    text = "FROM alpine\nENV APP=app\nCOPY README /\nCOPY ${APP}/ /app/\n"
    result = reads_of(text)
    assert result.whole == "Dockerfile:4: COPY source ${APP}/ uses APP, which an ENV sets (ENV values are not followed)"
    assert [read.source for read in result.reads] == ["README"]  # what can be known is still listed


def test_an_arg_that_an_env_overrides_is_not_followed() -> None:
    text = "FROM alpine\nARG APP=a\nENV APP=b\nCOPY ${APP} /app/\n"
    result = reads_of(text)
    assert result.whole is not None and "Dockerfile:4:" in result.whole and "uses APP" in result.whole


def test_an_arg_whose_default_uses_an_env_is_not_followed() -> None:
    text = "FROM alpine\nARG SRC=${HOME}/x\nCOPY ${SRC} /app/\n"
    result = reads_of(text)
    assert result.whole is not None and result.whole.startswith("Dockerfile:3: COPY source ${SRC} uses SRC")
    assert "HOME" in result.whole


def test_platform_args_without_a_platform_are_not_followed() -> None:
    text = "FROM alpine\nARG TARGETARCH\nCOPY bin-${TARGETARCH} /app/\n"
    result = reads_of(text, platform=None)
    assert result.whole is not None and "uses TARGETARCH, which depends on the platform" in result.whole


def test_a_source_that_cannot_be_substituted_makes_the_whole_context_an_input() -> None:
    result = reads_of('FROM alpine\nCOPY "a b" /app/\n')  # BuildKit splits at blanks: `"a` fails as it does
    assert result.whole is not None and result.whole.startswith("Dockerfile:2: COPY source ")


def test_only_the_stages_the_target_needs_are_read() -> None:
    text = (
        "FROM golang AS build\nCOPY go.mod main.go /src/\n"
        "FROM alpine AS docs\nCOPY docs/ /docs/\n"
        "FROM alpine AS unused\nCOPY unused/ /x/\n"
        "FROM alpine\nCOPY --from=build /out /app\nCOPY etc/ /etc/\n"
    )
    assert sources(text) == ["go.mod", "main.go", "etc"]
    assert sources(text, target="docs") == ["docs"]
    assert sources(text, target="build") == ["go.mod", "main.go"]


def test_a_stage_needed_through_a_mount_or_a_base_is_read() -> None:
    text = (
        "FROM alpine AS deps\nCOPY lock /\n"
        "FROM alpine AS base\nCOPY base.txt /\n"
        "FROM base\nRUN --mount=type=bind,from=deps,source=/lock,target=/lock true\n"
    )
    assert sources(text) == ["lock", "base.txt"]


def test_onbuild_of_an_earlier_stage_runs_in_a_stage_built_on_it() -> None:
    text = "FROM alpine AS base\nONBUILD COPY hooks/ /hooks/\nFROM base\nCOPY app /app\n"
    result = reads_of(text)
    assert [(r.source, r.line, r.why) for r in result.reads] == [
        ("hooks", 2, "ONBUILD COPY hooks/ /hooks/ (trigger of stage base)"),
        ("app", 4, "COPY app /app"),
    ]
    assert sources(text, target="base") == []  # not in the stage that declares it


def test_base_triggers_are_added_at_the_from_of_each_needed_stage() -> None:
    trigger = Read(source="package.json", glob=False, line=3, why="ONBUILD COPY package.json /app/ (trigger)")
    text = "FROM alpine AS unused\nCOPY x /\nFROM company-base:1.0\nCOPY app /app\n"
    result = reads_of(
        text,
        base_triggers={
            "company-base:1.0": ContextReads(reads=(trigger,)),
            "alpine": ContextReads(reads=(), whole="no"),
        },
    )
    assert result.whole is None
    assert [read.source for read in result.reads] == ["package.json", "app"]
    assert result.reads[0] is trigger


def test_base_triggers_get_the_substituted_reference_and_not_scratch_or_stages() -> None:
    asked: list[str] = []

    def triggers(reference: str) -> ContextReads | None:
        asked.append(reference)
        return None

    text = "ARG TAG=1\nFROM scratch AS s\nFROM company-base:${TAG} AS b\nFROM b\nCOPY --from=s / /\n"
    context_reads(text, path="Dockerfile", build_args={"TAG": "2"}, target=None, platform=None, base_triggers=triggers)
    assert asked == ["company-base:2"]


def test_a_whole_base_trigger_makes_the_result_whole() -> None:
    trigger = ContextReads(reads=(), whole="company-base: ONBUILD COPY ${SRC} . cannot be known")
    result = reads_of("FROM company-base\nCOPY a /\n", base_triggers={"company-base": trigger})
    assert result.whole == "company-base: ONBUILD COPY ${SRC} . cannot be known"
    assert [read.source for read in result.reads] == ["a"]


def test_buildkit_parse_error_makes_the_whole_context_an_input() -> None:
    result = reads_of("FROM alpine\nENV a=b c\nCOPY x /\n")  # our analysis does not read ENV
    assert result.whole is not None and result.whole.startswith("Dockerfile: BuildKit's parser rejects it: ")
    assert result.reads == ()


def test_our_own_analysis_errors_propagate() -> None:
    with pytest.raises(DockerfileError, match="target stage 'nope' not found"):
        reads_of("FROM alpine AS a\nCOPY x /\n", target="nope")


# --- onbuild_reads --------------------------------------------------------------------------------


def test_onbuild_reads_of_the_built_stage() -> None:
    text = (
        "FROM alpine AS other\nONBUILD COPY other/ /o/\n"
        "FROM alpine\nCOPY own /own\n"
        "ONBUILD COPY package.json *.lock /app/\n"
        "ONBUILD COPY --from=builder /x /y\n"
        "ONBUILD ADD https://example.com/x /x\n"
        "ONBUILD RUN --mount=type=bind,source=src,target=/src make\n"
        "ONBUILD RUN --mount=type=cache,target=/c make\n"
        "ONBUILD RUN --mount=target=/ctx make\n"
    )
    result = onbuild_reads(text, path="base/Dockerfile", target=None)
    assert result.whole is None
    assert [(r.source, r.glob, r.line) for r in result.reads] == [
        ("package.json", False, 5),
        ("*.lock", True, 5),
        ("src", False, 8),
        (".", False, 10),
    ]
    assert result.reads[0].why == "ONBUILD COPY package.json *.lock /app/ (trigger of base/Dockerfile)"
    other = onbuild_reads(text, path="base/Dockerfile", target="other")
    assert [read.source for read in other.reads] == ["other"]


def test_onbuild_reads_clamp_and_unquote() -> None:
    result = onbuild_reads('FROM alpine\nONBUILD COPY ../x "y" /app/\n', path="Dockerfile", target=None)
    assert [read.source for read in result.reads] == ["x", "y"]


@pytest.mark.parametrize(
    "trigger",
    ["ONBUILD COPY ${SRC} /app/", "ONBUILD RUN --mount=type=bind,source=$SRC,target=/s make"],
)
def test_onbuild_source_with_a_variable_makes_the_whole_context_an_input(trigger: str) -> None:
    result = onbuild_reads(f"FROM alpine\nARG SRC=x\n{trigger}\n", path="Dockerfile", target=None)
    assert result.whole is not None and result.whole.startswith("Dockerfile:3: ONBUILD ")
    assert "$SRC" in result.whole or "${SRC}" in result.whole


def test_no_onbuild_no_reads() -> None:
    assert onbuild_reads("FROM alpine\nCOPY a /a\n", path="Dockerfile", target=None) == ContextReads(reads=())
