"""The Docker executor's reading of the build stream, without a daemon: steps reach ``progress``."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.engine.api import BuildRequest
from orchestrator.engine.docker import _BuildLog, _on_message


def request(tmp_path: Path) -> BuildRequest:
    return BuildRequest(
        node=Node(label=Label.parse("//a:a"), platform="linux/amd64"),
        key="k",
        image="a:key-k",
        context=(),
        dockerfile_path="Dockerfile",
        dockerfile_text="FROM scratch\n",
        platform="linux/amd64",
        log_path=str(tmp_path / "a.log"),
    )


def test_each_step_the_builder_starts_is_told_to_progress_and_logged(tmp_path: Path) -> None:
    steps: list[str] = []
    stream = [
        {"stream": "Step 1/2 : FROM busybox"},
        {"stream": "\n"},
        {"stream": " ---> 0dcfaedb9b2e\n"},
        {"stream": "Step 2/2 : RUN echo hi && sleep 45"},
        {"stream": "\n"},
        {"stream": " ---> Running in 1d0d211a5a9e\n"},
        {"stream": "hi\n"},
        {"aux": {"ID": "sha256:a44e"}},
    ]
    with _BuildLog(str(tmp_path / "a.log")) as log:
        log.progress = steps.append
        found = [_on_message(message, request(tmp_path), log) for message in stream]
    assert steps == ["Step 1/2 : FROM busybox", "Step 2/2 : RUN echo hi && sleep 45"]
    assert found[-1] == "sha256:a44e"
    assert "Step 2/2 : RUN echo hi && sleep 45\n" in (tmp_path / "a.log").read_text()


def test_without_progress_the_stream_is_only_logged(tmp_path: Path) -> None:
    with _BuildLog(str(tmp_path / "a.log")) as log:
        assert _on_message({"stream": "Step 1/1 : FROM busybox\n"}, request(tmp_path), log) is None
    assert (tmp_path / "a.log").read_text() == "Step 1/1 : FROM busybox\n"
