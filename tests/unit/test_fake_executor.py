"""FakeExecutor: the in-memory Executor the planner and scheduler tests run against."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.engine.api import KEY_LABEL, BuildFailed, BuildRequest, DaemonUnavailable, Executor
from orchestrator.errors import OrchestratorError
from tests.fakes.executor import FakeExecutor


def _request(
    label: str = "//app:web", key: str = "k1", platform: str = "linux/amd64", log_dir: str = "/logs"
) -> BuildRequest:
    parsed = Label.parse(label)
    return BuildRequest(
        node=Node(label=parsed, platform=platform),
        key=key,
        image=f"example/{parsed.name}:key-{key}",
        context=(),
        dockerfile_path="Dockerfile",
        dockerfile_text="FROM scratch\n",
        platform=platform,
        labels=((KEY_LABEL, key), ("org.opencontainers.image.revision", "abc123")),
        log_path=f"{log_dir}/{parsed.name}.log",
    )


def test_build_records_the_request_and_stores_a_labelled_untagged_image() -> None:
    fake = FakeExecutor()
    request = _request(platform="linux/arm64/v8")
    result = fake.build(request, threading.Event())
    assert fake.requests == [request]
    assert fake.built == [request.image]
    assert fake.inspect(request.image) is None  # the pipeline tags it, once it is checked
    info = fake.inspect(result.image_id)
    assert info is not None
    assert info.image_id == result.image_id
    assert info.labels[KEY_LABEL] == "k1"
    assert info.labels["org.opencontainers.image.revision"] == "abc123"
    assert (info.os, info.architecture, info.variant) == ("linux", "arm64", "v8")
    assert info.repo_tags == ()


def test_same_request_builds_the_same_image_id() -> None:
    fake = FakeExecutor()
    first = fake.build(_request(), threading.Event())
    second = fake.build(_request(), threading.Event())
    assert first.image_id == second.image_id
    assert len(fake.requests) == 2


def test_inspect_by_id_and_unknown_reference() -> None:
    fake = FakeExecutor()
    image_id = fake.build(_request(), threading.Event()).image_id
    by_id = fake.inspect(image_id)
    assert by_id is not None
    assert by_id.image_id == image_id
    assert fake.inspect(image_id.removeprefix("sha256:")) == by_id
    assert fake.inspect("example/web:other") is None


def test_failing_label_raises_build_failed_with_a_log_tail_and_stores_nothing() -> None:
    fake = FakeExecutor(fail={"//app:web"})
    request = _request()
    with pytest.raises(BuildFailed, match=r"//app:web linux/amd64: .*non-zero code") as caught:
        fake.build(request, threading.Event())
    assert caught.value.log_path == request.log_path
    assert "Error 2" in caught.value.log_tail
    assert fake.inspect(request.image) is None
    assert fake.requests == [request]
    fake.build(_request("//app:api"), threading.Event())  # others still build


def test_failure_predicate_sees_the_request() -> None:
    fake = FakeExecutor(fail=lambda request: request.platform == "linux/arm64")
    fake.build(_request(platform="linux/amd64"), threading.Event())
    with pytest.raises(BuildFailed):
        fake.build(_request(platform="linux/arm64"), threading.Event())


def test_write_logs_writes_the_log_file(tmp_path: Path) -> None:
    fake = FakeExecutor(fail={"//app:web"}, write_logs=True)
    request = _request(log_dir=str(tmp_path / "logs"))
    with pytest.raises(BuildFailed):
        fake.build(request, threading.Event())
    assert "ERROR: //app:web" in Path(request.log_path).read_text()


def test_cancel_ends_a_long_build_early() -> None:
    fake = FakeExecutor(durations={"//app:web": 30.0})
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="cancelled"):
        fake.build(_request(), cancel)
    assert time.monotonic() - started < 5
    assert [r.node.label for r in fake.cancelled] == [Label("app", "web")]
    assert fake.inspect(_request().image) is None


def test_already_cancelled_build_fails_without_a_duration() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BuildFailed, match="cancelled"):
        FakeExecutor().build(_request(), cancel)


def test_durations_per_label_and_default() -> None:
    fake = FakeExecutor(durations={"//app:web": 0.05}, default_duration=0.01)
    assert fake.build(_request("//app:web"), threading.Event()).duration_s == 0.05
    assert fake.build(_request("//app:api"), threading.Event()).duration_s == 0.01


def test_concurrent_builds_are_recorded_and_max_running_counted() -> None:
    fake = FakeExecutor(default_duration=0.3)
    requests = [_request(f"//app:n{i}", key=f"k{i}") for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda r: fake.build(r, threading.Event()), requests))
    assert sorted(fake.requests, key=lambda r: r.key) == requests
    assert fake.max_running == 4
    assert fake.running == 0
    assert len(fake.images) == 4


def test_tag_points_a_reference_at_an_image_and_moves_it() -> None:
    fake = FakeExecutor()
    first = fake.build(_request(key="k1"), threading.Event()).image_id
    second = fake.build(_request(key="k2"), threading.Event()).image_id
    fake.tag(first, "example/web", "latest")
    assert fake.inspect("example/web") == fake.inspect(first)  # "name" means "name:latest"
    fake.tag(second, "example/web", "latest")
    info = fake.inspect("example/web:latest")
    assert info is not None
    assert info.image_id == second
    assert fake.images[first].tags == set()  # built untagged; "latest" moved away


def test_tag_of_an_unknown_image_fails() -> None:
    with pytest.raises(OrchestratorError, match="no such image"):
        FakeExecutor().tag("sha256:" + "0" * 64, "example/web", "latest")


def test_remove_untags_and_drops_an_image_with_its_last_tag() -> None:
    fake = FakeExecutor()
    image_id = fake.add_image("debian:bookworm", labels={"a": "b"})
    fake.tag(image_id, "debian", "12")
    assert fake.remove("debian:bookworm")
    assert fake.inspect("debian:12") is not None
    assert fake.remove("debian:12")
    assert fake.inspect(image_id) is None
    assert not fake.remove("debian:12")


def test_remove_by_id_drops_every_tag() -> None:
    fake = FakeExecutor()
    image_id = fake.add_image("debian:bookworm")
    fake.tag(image_id, "debian", "12")
    assert fake.remove(image_id)
    assert fake.images == {}
    assert fake.inspect("debian:bookworm") is None


def test_daemon_down_raises_daemon_unavailable() -> None:
    fake = FakeExecutor(daemon_up=False)
    with pytest.raises(DaemonUnavailable):
        fake.ping()
    with pytest.raises(DaemonUnavailable):
        fake.build(_request(), threading.Event())
    with pytest.raises(DaemonUnavailable):
        fake.inspect("debian:bookworm")
    assert fake.requests == []


def test_fake_is_an_executor() -> None:
    executor: Executor = FakeExecutor()
    executor.ping()
