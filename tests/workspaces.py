"""Test workspaces written into a temporary directory, and the CLI run against them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner, Result

from orchestrator.cli.main import app

# The family of DESIGN.md: a rootfs feeds company-base, which feeds the language bases; apps use
# multi-stage builds, COPY --from=<image>, an ARG-templated FROM, a target stage followed by unused
# stages, and external bases.
FAMILY: Mapping[str, str] = {
    "WORKSPACE": 'workspace(name = "family", platforms = ["linux/amd64"])\n',
    "rootfs/BUILD": (
        'rootfs_image(name = "debian", tarball = "debian.tar", repository = "debian", tags = ["bookworm"])\n'
    ),
    "rootfs/debian.tar": "not really a tarball\n",
    "base/BUILD": 'image(name = "company-base")\n',
    "base/Dockerfile": "FROM debian:bookworm\nRUN useradd -u 10000 company\nCOPY motd /etc/motd\n",
    "base/motd": "welcome\n",
    "lang/node/BUILD": 'image(name = "company-node-base")\n',
    "lang/node/Dockerfile": "FROM company-base:latest\nCOPY .npmrc /home/company/.npmrc\n",
    "lang/node/.npmrc": "fund=false\n",
    "lang/python/BUILD": 'image(name = "company-python-base")\n',
    "lang/python/Dockerfile": "FROM company-base\nCOPY pip.conf /etc/pip.conf\n",
    "lang/python/pip.conf": "[global]\n",
    "apps/web/BUILD": 'image(name = "web", build_args = {"NODE": "company-node-base"})\n',
    "apps/web/Dockerfile": (
        "ARG NODE=company-base\n"
        "FROM ${NODE}:latest AS build\n"
        "COPY src/ /src/\n"
        "FROM company-node-base\n"
        "COPY --from=build /src /app\n"
        "COPY --from=alpine:3.19 /etc/alpine-release /etc/\n"
    ),
    "apps/web/src/index.js": "console.log('hi')\n",
    "apps/web/.dockerignore": "*.log\nsecrets/\n",
    "apps/web/debug.log": "noise\n",
    "apps/api/BUILD": 'image(name = "api", target = "runtime", srcs = glob(["app/**"]))\n',
    "apps/api/Dockerfile": (
        "FROM company-python-base AS runtime\n"
        "COPY app/ /app/\n"
        "FROM golang:1.21 AS tools\n"
        "RUN go version\n"
        "FROM runtime AS debug\n"
    ),
    "apps/api/app/main.py": "print('api')\n",
    "apps/api/notes.txt": "not an input\n",
    "apps/static/BUILD": 'image(name = "static")\n',
    "apps/static/Dockerfile": (
        "FROM gcc:13 AS builder\nCOPY main.c .\nRUN gcc -static -o /app main.c\n"
        "FROM scratch\nCOPY --from=builder /app /app\n"
    ),
    "apps/static/main.c": "int main(void) { return 0; }\n",
    "hardened/BUILD": 'image(name = "secure", repository = "secure-static")\n',
    "hardened/Dockerfile": "FROM scratch\nCOPY --from=static:latest /app /app\nUSER 10000:10000\n",
}
# The family's external bases (golang:1.21 is in a stage api does not build). A build fails early
# when the engine lacks one: a fake engine that builds the family holds them (FakeExecutor(bases=...)).
FAMILY_BASES = ("alpine:3.19", "gcc:13")


@dataclass
class ScratchWorkspace:
    root: Path
    cache_dir: Path
    runner: CliRunner = field(default_factory=CliRunner)

    def write(self, files: Mapping[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def run(self, *args: str, cwd: Path | None = None) -> Result:
        """Run the CLI against this workspace (``--workspace`` unless ``cwd`` is given)."""
        prefix = ["--cache-dir", str(self.cache_dir)]
        if cwd is None:
            prefix += ["--workspace", str(self.root)]
            return self.runner.invoke(app, [*prefix, *args], catch_exceptions=False)
        old = Path.cwd()
        os.chdir(cwd)
        try:
            return self.runner.invoke(app, [*prefix, *args], catch_exceptions=False)
        finally:
            os.chdir(old)

    def lines(self, *args: str) -> list[str]:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()

    def keys(self, *patterns: str) -> dict[str, str]:
        """``{"//pkg:name platform": key}`` from ``orchestrator hash``."""
        out = {}
        for line in self.lines("hash", *patterns):
            label, platform, key = line.split()
            out[f"{label} {platform}"] = key
        return out
