"""Tests for orchestrator.dockerfile: Docker/BuildKit's reading of a Dockerfile, and rebinding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import orchestrator.dockerfile as df
from orchestrator.dockerfile import DockerfileInfo, ImageRef, StageConfig, analyze, rebind, stage_configs
from orchestrator.errors import DockerfileError, Location


def refs(text: str, **kwargs: Any) -> list[tuple[str, str, int]]:
    """(reference, kind, line) of each image reference."""
    info = analyze(text, **kwargs)
    return [(r.reference, r.kind, r.line) for r in info.image_refs]


def references(text: str, **kwargs: Any) -> list[str]:
    return [ref for ref, _, _ in refs(text, **kwargs)]


def error(text: str, **kwargs: Any) -> DockerfileError:
    with pytest.raises(DockerfileError) as caught:
        analyze(text, **kwargs)
    return caught.value


# --- The seed article's Dockerfiles ---------------------------------------------------------------

STATIC_GO = """\
# Build stage
FROM golang:1.21-alpine AS builder

WORKDIR /app
COPY go.mod go.sum ./
RUN go mod download

COPY . .

# Build static binary
RUN CGO_ENABLED=0 GOOS=linux go build -a -ldflags '-extldflags "-static"' -o app .

# Final stage - from scratch
FROM scratch

# Copy the binary
COPY --from=builder /app/app /app

# Copy CA certificates for HTTPS
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/

ENTRYPOINT ["/app"]
"""

MULTIARCH = """\
# Dockerfile.multiarch
FROM --platform=$BUILDPLATFORM golang:1.21-alpine AS builder

ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG TARGETOS
ARG TARGETARCH

WORKDIR /app
COPY . .

RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \\
    go build -o app .

FROM scratch
COPY --from=builder /app/app /app
ENTRYPOINT ["/app"]
"""

HARDENED = """\
FROM alpine:3.19 AS builder

# Security updates
RUN apk upgrade --no-cache

# Install only required packages
RUN apk add --no-cache \\
    ca-certificates \\
    && rm -rf /var/cache/apk/*

RUN mkdir -p /secure-root/etc/ssl/certs /secure-root/tmp && \\
    cp /etc/ssl/certs/ca-certificates.crt /secure-root/etc/ssl/certs/

FROM scratch

COPY --from=builder /secure-root /

# Your statically compiled application
COPY --from=app-builder /app /app

USER 10000:10000
ENTRYPOINT ["/app"]
"""

COMPANY_NODE_BASE = """\
# company-node-base/Dockerfile
FROM company-base:latest

USER root

# Install Node.js
RUN apk add --no-cache nodejs npm

# Company npm configuration
COPY .npmrc /home/company/.npmrc
RUN chown company:company /home/company/.npmrc

USER company
ENV NODE_ENV=production
"""

DISTROLESS = """\
FROM python:3.11-slim AS builder
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --target=/app/deps -r requirements.txt
COPY . .

FROM mirror.example.org/distroless/python3-debian12
WORKDIR /app
COPY --from=builder /app/deps /app/deps
COPY --from=builder /app/*.py /app/
CMD ["app.py"]
"""


def test_seed_static_go_binary_from_scratch_needs_only_the_builder_image() -> None:
    info = analyze(STATIC_GO)
    assert [(s.name, s.base, s.base_stage) for s in info.stages] == [
        ("builder", "golang:1.21-alpine", None),
        (None, "scratch", None),
    ]
    assert info.target_stage == 1
    assert info.needed_stages == (0, 1)
    assert info.image_refs == (ImageRef(reference="golang:1.21-alpine", kind="from", line=2, stage=0, platform=None),)


def test_seed_multiarch_buildplatform_builder_gets_the_platform() -> None:
    info = analyze(MULTIARCH, platform="linux/arm64")
    assert info.stages[0].platform == "linux/arm64"
    assert info.stages[1].platform is None
    assert info.image_refs == (
        ImageRef(reference="golang:1.21-alpine", kind="from", line=2, stage=0, platform="linux/arm64"),
    )


def test_seed_multiarch_without_platform_has_no_platform() -> None:
    info = analyze(MULTIARCH)
    assert info.stages[0].platform is None
    assert info.image_refs[0].platform is None


def test_seed_hardened_copy_from_app_builder_names_an_image() -> None:
    assert refs(HARDENED) == [("alpine:3.19", "from", 1), ("app-builder", "copy-from", 19)]


def test_seed_company_node_base_depends_on_company_base_latest() -> None:
    assert refs(COMPANY_NODE_BASE) == [("company-base:latest", "from", 2)]


def test_seed_distroless_final_stage_and_builder_are_both_needed() -> None:
    assert references(DISTROLESS) == ["python:3.11-slim", "mirror.example.org/distroless/python3-debian12"]


# --- Parser directives, continuation lines and comments ----------------------------------------


def test_escape_directive_backtick_continues_lines() -> None:
    text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore `\n    AS base\n"
    text += "COPY --from=tools:1 `\n  C:\\a C:\\b\n"
    info = analyze(text)
    assert info.stages[0].name == "base"
    assert refs(text) == [("mcr.microsoft.com/windows/servercore", "from", 2), ("tools:1", "copy-from", 4)]


def test_escape_directive_makes_backslash_an_ordinary_character() -> None:
    # With ` as escape a trailing backslash does not continue: the next FROM is an instruction.
    text = "# escape=`\nFROM alpine\nRUN echo \\\nFROM debian\n"
    assert len(analyze(text).stages) == 2
    assert len(analyze(text.removeprefix("# escape=`\n")).stages) == 1


def test_escape_directive_backslash_is_the_default() -> None:
    assert analyze("# escape=\\\nFROM alpine \\\n  AS b\n").stages[0].name == "b"


def test_syntax_then_escape_directive_both_apply() -> None:
    text = "# syntax=docker/dockerfile:1\n#escape = `\nFROM alpine `\n  AS b\n"
    assert analyze(text).stages[0].name == "b"


@pytest.mark.parametrize(
    "before",
    ["\n", "# a comment\n", "FROM x\n", "# unknown=directive\n"],
    ids=["blank-line", "comment", "instruction", "unknown-directive"],
)
def test_escape_directive_not_at_the_very_top_is_a_comment(before: str) -> None:
    # The backslash still continues the RUN, so "FROM debian" is not an instruction.
    text = before + "# escape=`\nFROM alpine\nRUN echo \\\nFROM debian\n"
    assert [s.base for s in analyze(text).stages][-1] == "alpine"


def test_invalid_escape_directive_is_an_error() -> None:
    assert "escape" in error("# escape=x\nFROM alpine\n").message


def test_repeated_directive_is_an_error() -> None:
    assert "only one escape" in error("# escape=`\n# escape=\\\nFROM alpine\n").message


def test_continuation_with_whitespace_after_the_escape_character() -> None:
    assert analyze("FROM alpine \\  \t\n  AS b\n").stages[0].name == "b"


def test_comment_inside_continuation_is_dropped_and_does_not_end_it() -> None:
    text = "FROM alpine \\\n# a comment\n   # another\n  AS b\nFROM b\n"
    info = analyze(text)
    assert info.stages[0].name == "b"
    assert info.stages[1].base_stage == 0


def test_blank_lines_inside_continuation_are_skipped() -> None:
    text = "FROM alpine \\\n\n   \n  AS b\n"
    assert analyze(text).stages[0].name == "b"


def test_hash_not_at_line_start_is_not_a_comment() -> None:
    # Docker reads "#" and "comment" as more FROM arguments.
    assert "expected <image> [AS <name>]" in error("FROM alpine # comment\n").message


def test_instructions_are_case_insensitive() -> None:
    text = "from alpine As Build\nfrom scratch\ncopy --from=BUILD /a /a\n"
    info = analyze(text)
    assert info.stages[0].name == "build"
    assert info.needed_stages == (0, 1)
    assert references(text) == ["alpine"]


def test_crlf_line_endings_and_bom_are_understood() -> None:
    text = "\ufeffFROM alpine AS a\r\nRUN echo \\\r\n  hi\r\nFROM a\r\nCOPY --from=img:1 /x /x\r\n"
    assert refs(text) == [("alpine", "from", 1), ("img:1", "copy-from", 5)]


# --- Heredocs -----------------------------------------------------------------------------------


def test_heredoc_body_with_from_is_not_an_instruction() -> None:
    text = "FROM alpine\nRUN <<EOF\nFROM evil\nCOPY --from=evil2 / /\nEOF\nRUN true\n"
    info = analyze(text)
    assert len(info.stages) == 1
    assert references(text) == ["alpine"]


@pytest.mark.parametrize("marker", ["EOF", '"EOF"', "'EOF'"])
def test_heredoc_with_quoted_terminator(marker: str) -> None:
    text = f"FROM alpine\nRUN cat <<{marker} > /x\nFROM evil\nEOF\nFROM debian\n"
    assert references(text) == ["debian"]


def test_heredoc_with_dash_matches_a_tab_indented_terminator() -> None:
    text = "FROM alpine\nRUN <<-EOF\n\tFROM evil\n\t\tEOF\nFROM debian\n"
    assert references(text) == ["debian"]


def test_heredoc_without_dash_needs_the_exact_terminator() -> None:
    text = "FROM alpine\nRUN <<EOF\n\tEOF\nFROM evil\nEOF\nFROM debian\n"
    assert references(text) == ["debian"]


def test_several_heredocs_on_one_line_are_read_in_order() -> None:
    text = "FROM alpine\nCOPY <<a <<b /dest/\nFROM evil\na\nFROM evil2\nb\nFROM debian\n"
    assert references(text) == ["debian"]
    assert analyze(text).stages[-1].line == 7


def test_heredoc_after_continuation_lines_starts_after_the_instruction() -> None:
    text = "FROM alpine\nRUN --mount=type=cache,target=/c \\\n  <<EOF\nFROM evil\nEOF\nFROM debian\n"
    assert references(text) == ["debian"]


@pytest.mark.parametrize("line", ['RUN echo "<<EOF"', "RUN cat <<<word", "ENV X=<<EOF"])
def test_not_a_heredoc(line: str) -> None:
    assert references(f"FROM alpine\n{line}\nFROM debian\n") == ["debian"]


def test_unterminated_heredoc_is_an_error() -> None:
    err = error("FROM alpine\nRUN <<EOF\necho hi\n")
    assert "unterminated heredoc <<EOF" in err.message
    assert err.location is not None
    assert err.location.line == 2


# --- ARGs and substitution ----------------------------------------------------------------------


def test_arg_templated_from_uses_the_default() -> None:
    text = "ARG BASE=company-base\nARG TAG=latest\nFROM ${BASE}:$TAG\n"
    assert references(text) == ["company-base:latest"]


def test_build_args_override_the_default() -> None:
    text = "ARG BASE=company-base\nARG TAG=latest\nFROM ${BASE}:$TAG\n"
    assert references(text, build_args={"TAG": "1.2"}) == ["company-base:1.2"]


def test_build_arg_for_an_undeclared_arg_is_ignored() -> None:
    text = "ARG TAG=3.19\nFROM alpine:${TAG}${EXTRA}\n"
    assert references(text, build_args={"EXTRA": "-x"}) == ["alpine:3.19"]


def test_arg_declared_after_the_first_from_is_not_in_scope_for_from() -> None:
    text = "ARG V=global\nFROM alpine\nARG V=stage\nARG W=stage\nFROM img:${V}-${W}\n"
    assert references(text) == ["img:global-"]


def test_several_args_on_one_line_and_quoted_defaults() -> None:
    text = "ARG A=1 B C=\"x y\" D='3.19'\nFROM alpine:$D\n"
    info = analyze(text)
    assert info.args == ("A", "B", "C", "D")
    assert [r.reference for r in info.image_refs] == ["alpine:3.19"]


def test_arg_default_uses_earlier_args() -> None:
    text = "ARG REG=mirror.example.org/x\nARG IMAGE=$REG/y\nFROM ${IMAGE}@sha256:abc\n"
    assert references(text) == ["mirror.example.org/x/y@sha256:abc"]


def test_args_lists_global_args_once_in_order() -> None:
    text = "ARG B\nARG A=1\nARG B=2\nFROM alpine\nARG C\n"
    assert analyze(text).args == ("B", "A")


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("$V", "v"),
        ("${V}", "v"),
        ("${V:-d}", "v"),
        ("${U:-d}", "d"),
        ("${E:-d}", "d"),
        ("${E-d}", ""),
        ("${U-d}", "d"),
        ("${N-d}", "d"),  # declared without a value: unset, as in BuildKit
        ("${V:+alt}", "alt"),
        ("${E:+alt}", ""),
        ("${E+alt}", "alt"),
        ("${U+alt}", ""),
        ("${U:-${V}2}", "v2"),
        ("\\$V", "$V"),
        ("'$V'", "$V"),
        ('"$V"', "v"),
        ("$", "$"),
        ("${V:?}", "v"),
    ],
)
def test_substitution_forms(expression: str, value: str) -> None:
    text = f"ARG V=v\nARG E=\nARG N\nFROM x{expression}\n"
    assert references(text) == [f"x{value}"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("${V%.*}", "unsupported modifier (%)"),
        ("${V", "missing '}'"),
        ("${V:-x", "missing '}'"),
        ("${}", "bad substitution"),
        ("${U:?unset}", "U: unset"),
        ("${U?}", "U: is not allowed to be unset"),
        ('"abc', "unterminated double quote"),
    ],
)
def test_bad_substitution_is_an_error(expression: str, message: str) -> None:
    err = error(f"ARG V=1.2\nFROM x{expression}\n")
    assert message in err.message
    assert err.location is not None
    assert err.location.line == 2


def test_backtick_escape_keeps_backslash_literal_in_substitution() -> None:
    assert references("# escape=`\nARG V=v\nFROM x`$V\\\n") == ["x$V\\"]


def test_platform_args_are_predefined_when_a_platform_is_given() -> None:
    text = "FROM --platform=$TARGETPLATFORM img:${TARGETOS}-${TARGETARCH}-${TARGETVARIANT}-${BUILDARCH}\n"
    info = analyze(text, platform="linux/arm/v7")
    assert info.image_refs == (
        ImageRef(reference="img:linux-arm-v7-arm", kind="from", line=1, stage=0, platform="linux/arm/v7"),
    )


def test_platform_args_are_unset_without_a_platform() -> None:
    info = analyze("FROM --platform=${BUILDPLATFORM} img:${TARGETARCH:-amd64}\n")
    assert info.image_refs[0].reference == "img:amd64"
    assert info.stages[0].platform is None


def test_declared_platform_arg_without_default_keeps_the_predefined_value() -> None:
    text = "ARG TARGETARCH\nFROM img:$TARGETARCH\n"
    assert references(text, platform="linux/amd64") == ["img:amd64"]


def test_literal_platform_flag() -> None:
    assert analyze("FROM --platform=linux/amd64 alpine\n").stages[0].platform == "linux/amd64"


def test_empty_image_after_substitution_names_the_arg() -> None:
    err = error("ARG BASE\nFROM $BASE\n")
    assert "FROM image '$BASE' is empty" in err.message
    assert "ARG BASE is empty" in err.message
    assert str(err).startswith("Dockerfile:2: ")


def test_empty_image_from_an_undeclared_arg_says_so() -> None:
    err = error("FROM alpine\nARG BASE=x\nFROM ${BASE}\n", path="app/Dockerfile")
    assert "ARG BASE is not declared" in err.message
    assert str(err).startswith("app/Dockerfile:3: ")


# --- Stages, COPY --from and RUN --mount ----------------------------------------------------------


def test_from_earlier_stage_sets_base_stage_and_is_not_an_image() -> None:
    text = "FROM alpine AS base\nFROM base AS dev\nFROM Dev\n"
    info = analyze(text)
    assert [(s.base, s.base_stage) for s in info.stages] == [("alpine", None), ("base", 0), ("Dev", 1)]
    assert info.needed_stages == (0, 1, 2)
    assert references(text) == ["alpine"]


def test_from_image_with_its_own_alias_is_an_image() -> None:
    assert references("FROM nginx AS nginx\n") == ["nginx"]


def test_from_naming_a_later_stage_is_an_image() -> None:
    assert references("FROM later\nFROM alpine AS later\n", target=None) == ["alpine"]
    assert references("FROM later\nFROM alpine AS later\n", target="later") == ["alpine"]


def test_from_templated_stage_name_is_a_stage() -> None:
    text = "ARG FLAVOR=slim\nFROM alpine AS base-slim\nFROM debian AS base-full\nFROM base-${FLAVOR}\n"
    info = analyze(text)
    assert info.stages[2].base_stage == 0
    assert references(text) == ["alpine"]
    assert references(text, build_args={"FLAVOR": "full"}) == ["debian"]


def test_from_scratch_is_not_an_image() -> None:
    info = analyze("FROM scratch\nCOPY app /\n")
    assert info.image_refs == ()
    assert info.stages[0].base == "scratch"


def test_copy_from_stage_name_index_and_image() -> None:
    text = "FROM alpine AS a\nFROM debian\nCOPY --from=a /x /x\nCOPY --from=0 /y /y\nCOPY --from=busybox:1 /z /z\n"
    info = analyze(text)
    assert info.needed_stages == (0, 1)
    assert refs(text) == [("alpine", "from", 1), ("debian", "from", 2), ("busybox:1", "copy-from", 5)]


def test_add_from_image_is_a_copy_from_reference() -> None:
    assert refs("FROM alpine\nADD --chown=1 --from=tools:2 /a /b\n")[1] == ("tools:2", "copy-from", 2)


def test_copy_from_scratch_is_nothing() -> None:
    assert references("FROM alpine\nCOPY --from=scratch / /\n") == ["alpine"]


def test_copy_flags_after_the_first_path_are_not_flags() -> None:
    assert references("FROM alpine\nCOPY a --from=img /b\n") == ["alpine"]


def test_copy_from_quoted_value() -> None:
    assert references('FROM alpine\nCOPY --from="img:1" /a /b\n')[1] == "img:1"


@pytest.mark.parametrize(("source", "stage"), [("1", 1), ("2", 2), ("later", 2), ("self", 1)])
def test_copy_from_a_stage_not_before_the_current_one_is_an_error(source: str, stage: int) -> None:
    text = f"FROM alpine\nFROM alpine AS self\nCOPY --from={source} /a /a\nFROM alpine AS later\n"
    err = error(text, target="self")
    assert f"--from={source} names stage {stage}, which is not before the current stage 1" in err.message
    assert err.location is not None
    assert err.location.line == 3


def test_copy_from_a_later_stage_in_an_unneeded_stage_is_not_an_error() -> None:
    text = "FROM alpine AS early\nCOPY --from=late / /\nCOPY --from=1 / /\nFROM debian AS late\n"
    assert references(text) == ["debian"]
    assert "--from=late names stage 1" in error(text, target="early").message


def test_copy_from_substitutes_global_and_stage_args() -> None:
    text = "ARG TOOLS=tools:1\nFROM alpine AS a\nFROM debian\nARG SRC=a\n"
    text += "COPY --from=$TOOLS /x /x\nCOPY --from=${SRC} / /\n"
    info = analyze(text)
    assert [r.reference for r in info.image_refs] == ["alpine", "debian", "tools:1"]
    assert info.needed_stages == (0, 1)
    # Pointing SRC at an image makes it an edge, and stage "a" is no longer needed.
    assert references(text, build_args={"SRC": "img:9"}) == ["debian", "tools:1", "img:9"]


def test_stage_args_are_inherited_by_a_stage_built_on_it() -> None:
    text = (
        "FROM alpine AS a\nARG TOOLS=tools:1\nFROM a\nCOPY --from=$TOOLS / /\nFROM debian\nCOPY --from=a${TOOLS} / /\n"
    )
    # In the unrelated debian stage TOOLS is unset, so --from=a${TOOLS} names stage a.
    assert references(text) == ["alpine", "debian"]
    info = analyze(text.rsplit("FROM debian", 1)[0])
    assert [r.reference for r in info.image_refs] == ["alpine", "tools:1"]


def test_empty_copy_from_after_substitution_is_an_error() -> None:
    assert "--from '$NOPE' is empty" in error("FROM alpine\nCOPY --from=$NOPE / /\n").message


def test_run_mount_from_image_stage_and_without_from() -> None:
    text = (
        "FROM golang AS deps\n"
        "FROM alpine\n"
        "RUN --mount=type=cache,target=/root/.cache \\\n"
        "    --mount=from=deps,source=/go,target=/go \\\n"
        "    --mount=type=bind,from=tools:1,target=/t \\\n"
        "    --mount=type=tmpfs,target=/tmp \\\n"
        "    --mount=type=cache,from=cachebase:2,target=/c \\\n"
        "    make\n"
    )
    info = analyze(text)
    assert info.needed_stages == (0, 1)
    assert refs(text) == [
        ("golang", "from", 1),
        ("alpine", "from", 2),
        ("tools:1", "mount-from", 3),
        ("cachebase:2", "mount-from", 3),
    ]


def test_run_mount_with_quoted_spec() -> None:
    assert references('FROM alpine\nRUN --mount="type=bind,from=img:1,target=/t" true\n')[1] == "img:1"


def test_run_without_mount_and_other_instructions_have_no_refs() -> None:
    text = "FROM alpine\nRUN --network=none echo --from=x\nONBUILD COPY --from=y / /\nENV A=--from=z\n"
    assert references(text) == ["alpine"]


# --- Target and needed stages ---------------------------------------------------------------------

UNUSED_AFTER_TARGET = """\
FROM golang:1.21 AS build
RUN go build
FROM company-base:latest AS app
COPY --from=build /app /app
FROM debian:bookworm AS debug
COPY --from=busybox:1 /bin/busybox /bin/
FROM app AS final
"""


def test_target_none_is_the_last_stage() -> None:
    info = analyze(UNUSED_AFTER_TARGET)
    assert info.target_stage == 3
    assert info.needed_stages == (0, 1, 3)
    assert [r.reference for r in info.image_refs] == ["golang:1.21", "company-base:latest"]


def test_target_stage_followed_by_unused_stages_excludes_their_refs() -> None:
    info = analyze(UNUSED_AFTER_TARGET, target="app")
    assert info.target_stage == 1
    assert info.needed_stages == (0, 1)
    assert [r.reference for r in info.image_refs] == ["golang:1.21", "company-base:latest"]


def test_target_is_case_insensitive() -> None:
    assert analyze(UNUSED_AFTER_TARGET, target="DEBUG").needed_stages == (2,)


def test_unused_earlier_stage_is_not_needed() -> None:
    text = "FROM node:20 AS unused\nFROM alpine AS used\nFROM scratch\nCOPY --from=used / /\n"
    info = analyze(text)
    assert info.needed_stages == (1, 2)
    assert [r.reference for r in info.image_refs] == ["alpine"]


def test_needed_stages_follow_base_copy_and_mount_transitively() -> None:
    text = (
        "FROM a:1 AS a\n"
        "FROM b:1 AS b\n"
        "FROM a AS c\n"
        "COPY --from=b / /\n"
        "FROM d:1 AS d\n"
        "RUN --mount=from=c,target=/c true\n"
        "FROM e:1 AS e\n"
    )
    assert analyze(text, target="d").needed_stages == (0, 1, 2, 3)
    assert analyze(text).needed_stages == (4,)


def test_unknown_target_lists_the_stages_and_suggests() -> None:
    err = error(UNUSED_AFTER_TARGET, target="buld")
    assert "target stage 'buld' not found; stages: build, app, debug, final" in err.message
    assert "did you mean 'build'" in err.message


def test_unknown_target_without_named_stages() -> None:
    assert "stages: none" in error("FROM alpine\n", target="x").message


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "ARG A=1\n\n"])
def test_no_from_is_an_error(text: str) -> None:
    assert error(text).message == "no FROM instruction"


@pytest.mark.parametrize("instruction", ["RUN echo hi", "ENV A=1", "COPY --from=x / /"])
def test_instruction_before_the_first_from_other_than_arg_is_an_error(instruction: str) -> None:
    err = error(f"ARG A=1\n{instruction}\nFROM alpine\n")
    assert "before the first FROM: only ARG may come before FROM" in err.message
    assert err.location is not None
    assert err.location.line == 2


@pytest.mark.parametrize("line", ["FROM", "FROM --platform=linux/amd64", "FROM   "])
def test_from_without_an_image_is_an_error(line: str) -> None:
    assert "FROM without an image" in error(f"{line}\n").message


@pytest.mark.parametrize("line", ["FROM a b", "FROM a AS", "FROM a IS b", "FROM a AS b c"])
def test_from_with_wrong_arguments_is_an_error(line: str) -> None:
    assert "expected <image> [AS <name>]" in error(f"{line}\n").message


def test_invalid_stage_name_is_an_error() -> None:
    assert "invalid stage name '1st'" in error("FROM alpine AS 1st\n").message


# --- Stage chain, LABEL and USER -----------------------------------------------------------------


def test_stage_chain_follows_from_back_to_an_image() -> None:
    text = "FROM a AS one\nFROM one AS two\nFROM b AS other\nFROM two AS three\nFROM other\n"
    assert analyze(text, target="three").stage_chain() == (3, 1, 0)
    assert analyze(text).stage_chain() == (4, 2)
    assert analyze("FROM scratch\n").stage_chain() == (0,)


def test_stage_configs_give_each_stage_its_own_labels_and_last_user() -> None:
    text = (
        "ARG V=1\n"
        "FROM a AS build\n"
        "LABEL stage=build\n"
        "USER builder\n"
        "FROM b\n"
        'LABEL "org.example.title"="my app" plain=x\n'
        "USER root\n"
        "RUN true\n"
        "USER 1000:1000\n"
    )
    assert stage_configs(text) == (
        StageConfig(index=0, labels=(("stage", "build"),), user="builder", user_line=4),
        StageConfig(index=1, labels=(("org.example.title", "my app"), ("plain", "x")), user="1000:1000", user_line=9),
    )


def test_stage_configs_line_up_with_the_analysed_stages() -> None:
    text = "FROM a AS one\nRUN x\nFROM one\nLABEL k=v\nFROM scratch\n"
    assert [c.index for c in stage_configs(text)] == [s.index for s in analyze(text).stages]
    assert [c.labels for c in stage_configs(text)] == [(), (("k", "v"),), ()]


def test_stage_config_without_a_user() -> None:
    (config,) = stage_configs("FROM a\nLABEL k=v\n")
    assert (config.user, config.user_line) == (None, None)


def test_user_without_a_word_has_a_line_but_no_value() -> None:
    (config,) = stage_configs("FROM a\nUSER\n")
    assert (config.user, config.user_line) == (None, 2)


def test_user_is_unquoted_but_a_variable_is_kept_as_written() -> None:
    assert stage_configs('FROM a\nUSER "app"\n')[0].user == "app"
    assert stage_configs("FROM a\nARG U=app\nUSER ${U}:1000\n")[0].user == "${U}:1000"


def test_label_values_are_not_substituted_and_read_as_unknown() -> None:
    text = "FROM a\nARG VERSION=1.0\nLABEL version=$VERSION title=app\n"
    assert stage_configs(text)[0].labels == (("version", None), ("title", "app"))


def test_legacy_label_form_takes_the_rest_of_the_line_as_the_value() -> None:
    assert stage_configs("FROM a\nLABEL maintainer Jane Doe\n")[0].labels == (("maintainer", "Jane Doe"),)


def test_repeated_label_keys_stay_in_file_order_so_the_later_one_wins() -> None:
    (config,) = stage_configs("FROM a\nLABEL k=1\nLABEL k=2\n")
    assert config.labels == (("k", "1"), ("k", "2"))
    assert dict(config.labels) == {"k": "2"}


def test_stage_configs_read_continuations_escape_directive_and_skip_heredocs() -> None:
    text = (
        "# escape=`\n"
        "FROM a\n"
        "LABEL one=1 `\n"
        "# a comment inside the continuation\n"
        '    two="t`"wo"\n'
        "RUN <<EOF\n"
        "LABEL fake=1\n"
        "USER fake\n"
        "EOF\n"
    )
    (config,) = stage_configs(text)
    assert config.labels == (("one", "1"), ("two", 't"wo'))
    assert (config.user, config.user_line) == (None, None)


def test_stage_configs_ignore_what_comes_before_the_first_from() -> None:
    assert stage_configs("ARG A=1\n") == ()
    assert stage_configs("ARG A=1\nFROM a\n") == (StageConfig(index=0, labels=(), user=None, user_line=None),)


def test_stage_configs_report_an_unterminated_heredoc_with_the_path() -> None:
    with pytest.raises(DockerfileError) as caught:
        stage_configs("FROM a\nRUN <<EOF\necho\n", path="x/Dockerfile")
    assert str(caught.value.location) == "x/Dockerfile:2"


# --- Rebinding ------------------------------------------------------------------------------------


def image_lines(info: DockerfileInfo) -> dict[int, str]:
    return {ref.line: ref.reference for ref in info.image_refs}


def test_rebind_from_keeps_platform_flag_and_alias() -> None:
    new = rebind(MULTIARCH, {2: "golang:okey-1a2b"})
    assert new.splitlines()[1] == "FROM --platform=$BUILDPLATFORM golang:okey-1a2b AS builder"
    assert analyze(new, platform="linux/arm64").image_refs == (
        ImageRef(reference="golang:okey-1a2b", kind="from", line=2, stage=0, platform="linux/arm64"),
    )


def test_rebind_templated_from_with_a_literal() -> None:
    text = "ARG BASE=company-base\nARG TAG=latest\nFROM ${BASE}:$TAG AS app\nRUN true\n"
    new = rebind(text, {3: "company-base:okey-ff00"})
    assert new == text.replace("${BASE}:$TAG", "company-base:okey-ff00")
    assert references(new, build_args={"TAG": "ignored"}) == ["company-base:okey-ff00"]


def test_rebind_copy_from_and_add_from() -> None:
    text = "FROM alpine\nCOPY --chown=1:1 --from=app-builder /app /app\nADD --from=tools:1 /t /t\n"
    new = rebind(text, {2: "app-builder:okey-1", 3: "tools:okey-2"})
    assert new == "FROM alpine\nCOPY --chown=1:1 --from=app-builder:okey-1 /app /app\nADD --from=tools:okey-2 /t /t\n"


def test_rebind_mount_from_leaves_the_other_fields() -> None:
    text = "FROM alpine AS s\nRUN --mount=type=bind,from=s,target=/s --mount=from=tools:1,target=/t true\n"
    new = rebind(text, {2: "tools:okey-3"})
    assert new.splitlines()[1] == "RUN --mount=type=bind,from=s,target=/s --mount=from=tools:okey-3,target=/t true"


def test_rebind_two_image_mounts_on_one_line_is_refused() -> None:
    text = "FROM alpine\nRUN --mount=from=a:1,target=/a --mount=from=b:1,target=/b true\n"
    with pytest.raises(DockerfileError, match=r"several image references \(a:1, b:1\)"):
        rebind(text, {2: "x:1"})


def test_rebind_keeps_continuation_lines_comments_and_line_count() -> None:
    text = "FROM alpine\nRUN --mount=type=cache,target=/c \\\n  # why\n  --mount=from=img:1,target=/i \\\n  make\n"
    new = rebind(text, {2: "img:okey-4"})
    assert new == text.replace("img:1", "img:okey-4")
    assert refs(new)[1] == ("img:okey-4", "mount-from", 2)


def test_rebind_keeps_crlf_and_bom() -> None:
    text = "\ufeffFROM alpine AS a\r\nFROM a\r\nCOPY --from=img:1 / /\r\n"
    assert rebind(text, {1: "alpine:okey", 3: "img:okey"}) == text.replace("alpine", "alpine:okey").replace(
        "img:1", "img:okey"
    )


def test_rebind_with_backtick_escape_and_heredoc() -> None:
    text = "# escape=`\nFROM base `\n  AS b\nRUN <<EOF\nFROM evil\nEOF\nCOPY --from=img:1 `\n  C:\\a C:\\b\n"
    new = rebind(text, {2: "base:okey", 7: "img:okey"})
    assert new == text.replace("FROM base", "FROM base:okey").replace("img:1", "img:okey")
    assert image_lines(analyze(new)) == {2: "base:okey", 7: "img:okey"}


def test_rebind_same_image_mounted_twice_on_one_line_replaces_both() -> None:
    text = "FROM alpine\nRUN --mount=from=a:1,target=/a --mount=from=a:1,source=/b,target=/b true\n"
    new = rebind(text, {2: "a:okey"})
    assert new == text.replace("a:1", "a:okey")
    assert references(new) == ["alpine", "a:okey", "a:okey"]


def test_rebind_line_without_an_instruction_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="no instruction starts at line 2"):
        rebind("FROM alpine\n\n", {2: "x:1"})


def test_rebind_line_with_a_stage_reference_only_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="no image reference to rebind in this COPY"):
        rebind("FROM alpine AS b\nFROM scratch\nCOPY --from=b / /\n", {3: "x:1"})


def test_rebind_rejects_a_non_literal_replacement() -> None:
    for bad in ("$X", "a b", "a,b", "", "'a'"):
        with pytest.raises(ValueError, match="not a literal image reference"):
            rebind("FROM alpine\n", {1: bad})


def test_rebind_reference_split_by_a_continuation_is_refused() -> None:
    with pytest.raises(DockerfileError, match="a line continuation splits it"):
        rebind("FROM alp\\\nine\n", {1: "x:1"})


@pytest.mark.parametrize("text", [STATIC_GO, MULTIARCH, HARDENED, COMPANY_NODE_BASE, DISTROLESS, UNUSED_AFTER_TARGET])
def test_rebind_round_trip_shows_new_refs_at_the_same_lines(text: str) -> None:
    info = analyze(text, target="debug") if "AS debug" in text else analyze(text)
    new_refs = {ref.line: f"registry.local/pinned{ref.line}:okey-{ref.line:04x}" for ref in info.image_refs}
    new = rebind(text, new_refs)
    rebound = analyze(new, target=None if info.target_stage == len(info.stages) - 1 else "debug")
    assert image_lines(rebound) == new_refs
    assert [(r.kind, r.stage, r.line) for r in rebound.image_refs] == [
        (r.kind, r.stage, r.line) for r in info.image_refs
    ]
    old_lines, new_lines = text.split("\n"), new.split("\n")
    assert len(old_lines) == len(new_lines)
    changed = {i + 1 for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b}
    assert changed == set(new_refs)


# --- Properties -----------------------------------------------------------------------------------

INSTRUCTIONS = [
    "ARG TAG=3.19",
    "FROM --platform=$BUILDPLATFORM golang:1.21 AS build",
    "FROM alpine:${TAG} AS app",
    "RUN --mount=type=bind,from=tools:1,target=/t \\\n    --mount=from=build,target=/b \\\n    make",
    "COPY --from=build /app /app",
    "RUN <<EOF\nFROM evil\nEOF",
    "COPY --from=busybox:1 /bin/sh /bin/sh",
]
FILLER = st.lists(st.sampled_from(["", "   ", "# a comment", "  # indented comment", "\t"]), max_size=3)


@given(st.lists(FILLER, min_size=2 * len(INSTRUCTIONS), max_size=2 * len(INSTRUCTIONS)))
def test_blank_lines_and_comments_never_change_the_refs(fillers: list[list[str]]) -> None:
    # Filler goes between instructions and after each continued line, never above the first line
    # (a comment there could be a parser directive).
    parts = [INSTRUCTIONS[0]]
    for k, instruction in enumerate(INSTRUCTIONS[1:]):
        between, inside = fillers[2 * k], fillers[2 * k + 1]
        parts += [*between, instruction.replace("\\\n", "\\\n" + "".join(f"{line}\n" for line in inside))]
    info = analyze("\n".join(parts), platform="linux/amd64")
    expected = analyze("\n".join(INSTRUCTIONS), platform="linux/amd64")
    assert [(r.reference, r.kind, r.stage, r.platform) for r in info.image_refs] == [
        (r.reference, r.kind, r.stage, r.platform) for r in expected.image_refs
    ]
    assert info.needed_stages == expected.needed_stages


_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
REFERENCE = st.builds(
    "{}{}{}".format,
    st.sampled_from(["", "library/", "registry.local:5000/", "mirror.example.org/x/"]),
    st.text(_ALNUM, min_size=1, max_size=8),
    st.one_of(
        st.text(_ALNUM + "._-", min_size=1, max_size=12).map(":".__add__),
        st.text("0123456789abcdef", min_size=8, max_size=8).map("@sha256:".__add__),
    ),
)


@given(REFERENCE, REFERENCE)
def test_rebind_then_analyze_gives_back_any_literal_reference(first: str, second: str) -> None:
    text = "ARG B=x\nFROM --platform=linux/amd64 ${B}:1 AS build\nFROM scratch\nCOPY --from=other:2 / /\n"
    new = rebind(text + "COPY --from=build / /\n", {2: first, 4: second})
    # A generated reference always has a tag or digest, so it never names a stage or "scratch".
    assert image_lines(analyze(new)) == {2: first, 4: second}


def test_label_instruction_goes_at_the_end_of_the_target_stage() -> None:
    text = "FROM a AS one\nRUN x\n\nFROM b AS two\nRUN y\n"
    out = df.with_label_instruction(text, {"k": "v", "b": 'q"$x'}, target="one")
    assert out.splitlines()[:3] == ["FROM a AS one", "RUN x", ""]
    assert out.splitlines()[3] == 'LABEL "b"="q\\"\\$x" "k"="v"'
    assert out.splitlines()[4] == "FROM b AS two"
    info = df.analyze(out, target="one")
    assert [s.line for s in info.stages] == [1, 5]


def test_label_instruction_is_appended_to_the_last_stage() -> None:
    assert df.with_label_instruction("FROM a\nRUN x", {"k": "v"}) == 'FROM a\nRUN x\nLABEL "k"="v"\n'
    assert df.with_label_instruction("FROM a\n", {}) == "FROM a\n"


# --- A file that ends in a line continuation, and the LABEL appended after it ------------------------
# Docker's classic builder (20.10, observed) ends an instruction continued into the end of the file
# there, without the escape character: "RUN echo hi \" at the end runs "echo hi".


def labelled(text: str) -> tuple[str, StageConfig]:
    """``text`` with a LABEL appended, and what the last stage of the result reads as."""
    out = df.with_label_instruction(text, {"k": "v"})
    return out, stage_configs(out)[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM a\nRUN echo hi \\", "FROM a\nRUN echo hi \n"),
        ("FROM a\nRUN echo hi \\\n", "FROM a\nRUN echo hi \n"),
        ("FROM a\nRUN echo hi \\  \t\n", "FROM a\nRUN echo hi   \t\n"),
        ("FROM a\nRUN echo hi \\\r\n", "FROM a\nRUN echo hi \r\n"),
        ("FROM a\nRUN echo \\\n  hi \\\n# a comment\n\n", "FROM a\nRUN echo \\\n  hi \n# a comment\n\n"),
        ("# escape=`\nFROM a\nRUN echo hi `", "# escape=`\nFROM a\nRUN echo hi \n"),
        ("\ufeffFROM a \\", "\ufeffFROM a \n"),
    ],
)
def test_label_after_a_continuation_into_the_end_ends_it_without_the_escape(text: str, expected: str) -> None:
    out, config = labelled(text)
    assert out == expected + 'LABEL "k"="v"\n'
    assert config.labels == (("k", "v"),)  # a LABEL of its own, not words of the RUN


def test_label_after_a_comment_ending_in_a_backslash_changes_nothing_before_it() -> None:
    out, config = labelled("FROM a\nRUN echo hi\n# a comment \\")
    assert out == 'FROM a\nRUN echo hi\n# a comment \\\nLABEL "k"="v"\n'
    assert config.labels == (("k", "v"),)


def test_backslash_is_no_continuation_under_the_backtick_escape_directive() -> None:
    out, config = labelled("# escape=`\nFROM a\nRUN echo hi \\")
    assert out == '# escape=`\nFROM a\nRUN echo hi \\\nLABEL "k"="v"\n'
    assert config.labels == (("k", "v"),)


def test_escaped_escape_character_at_the_end_of_a_line_is_no_continuation() -> None:
    # BuildKit's rule: the escape character continues a line unless another one precedes it.
    assert len(analyze("FROM a\nRUN echo a\\\\\nFROM b\n").stages) == 2
    assert len(analyze("# escape=`\nFROM a\nRUN echo a``\nFROM b\n").stages) == 2
    assert len(analyze("FROM a\nRUN echo \\\n\\\nFROM b\n").stages) == 1  # a lone escape character continues
    out, config = labelled("FROM a\nRUN echo a\\\\")
    assert out == 'FROM a\nRUN echo a\\\\\nLABEL "k"="v"\n'
    assert config.labels == (("k", "v"),)


def test_heredoc_ending_the_file_keeps_its_body() -> None:
    out, config = labelled("FROM a\nRUN <<EOF\necho hi \\\nEOF\n")
    assert out == 'FROM a\nRUN <<EOF\necho hi \\\nEOF\nLABEL "k"="v"\n'
    assert config.labels == (("k", "v"),)


def test_continuation_at_the_end_of_a_stage_before_the_next_from_is_not_possible() -> None:
    # The FROM is part of the RUN, so there is one stage and the LABEL goes at the end.
    out, config = labelled("FROM a AS one\nRUN echo \\\nFROM b\n")
    assert len(analyze(out).stages) == 1
    assert out.endswith('FROM b\nLABEL "k"="v"\n')
    assert config.labels == (("k", "v"),)


def test_continuation_into_the_end_after_an_escape_character_cannot_be_ended() -> None:
    # Docker runs "echo a\" here; no line ends in "\" without continuing into the LABEL.
    problem = error("FROM a\nRUN echo a\\ \\\n# c\n")
    assert problem.location == Location("Dockerfile", 2)
    assert "remove the last '\\\\'" in problem.message


def _label_text(excluded: str) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r$" + excluded), max_size=12)


# "$" reads back as unknown, a newline cannot be written, and Docker splits a LABEL word at its first "=".
@given(st.sampled_from(["\\", "`"]), _label_text("="), _label_text(""))
def test_label_words_read_back_under_either_escape_character(escape: str, key: str, value: str) -> None:
    text = f"# escape={escape}\nFROM a\nRUN x {escape}"
    out = df.with_label_instruction(text, {f"k{key}": value})
    assert stage_configs(out)[-1].labels == ((f"k{key}", value),)


def test_label_instruction_counts_lines_as_the_analysis_does() -> None:
    # "\x0c" and "\u2028" end lines for str.splitlines(), not for Docker: the LABEL still goes before FROM.
    text = "FROM a AS one\nRUN x # \x0c \u2028 y\nFROM b\n"
    out = df.with_label_instruction(text, {"k": "v"}, target="one")
    assert out == 'FROM a AS one\nRUN x # \x0c \u2028 y\nLABEL "k"="v"\nFROM b\n'


# --- Reading the bytes --------------------------------------------------------------------------------


def test_decode_names_the_file_line_and_column_of_a_byte_that_is_not_utf8() -> None:
    with pytest.raises(DockerfileError) as caught:
        df.decode(b"FROM a\nRUN echo \xc3\xa9 \xff\n", path="x/Dockerfile")  # "é" is one character
    assert caught.value.location == Location("x/Dockerfile", 2, 12)
    assert "not valid UTF-8 (byte 0xff)" in caught.value.message


def test_decode_keeps_a_byte_order_mark_for_the_analysis() -> None:
    text = df.decode(b"\xef\xbb\xbfFROM a\n", path="Dockerfile")
    assert text == "\ufeffFROM a\n"
    assert analyze(text).stages[0].base == "a"


def test_words_are_split_with_the_files_escape_character() -> None:
    # Under "# escape=`" a backslash escapes nothing: "a\" is a whole quoted word.
    assert stage_configs('# escape=`\nFROM a\nLABEL k="a\\" j="`"b"\n')[0].labels == (("k", "a\\"), ("j", '"b'))
