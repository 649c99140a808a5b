"""image_test() checks against the in-memory probe, the result cache, JUnit XML, and test selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import junitparser
import pytest

from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.testspec import canonical_spec, parse_spec
from orchestrator.engine.probe import CONTENT_LIMIT, CommandRun, FileFacts, FileType, ImageConfig
from orchestrator.imagetest.checks import CheckKind, CheckResult, run_checks
from orchestrator.imagetest.junit import Case, Suite, image_test_error_suite, image_test_suite, write_junit
from orchestrator.imagetest.results import ResultCache, result_key
from tests.fakes.probe import FakeImage, FakeProbe
from tests.workspaces import ScratchWorkspace

T = TypeVar("T")
IMAGE = "company-app:key-0123456789abcdef"
PLATFORM = "linux/amd64"


def spec(
    commands: list[dict[str, Any]] | None = None,
    files: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checks as the loader keeps them (validated, defaults filled in)."""
    return parse_spec(canonical_spec("image_test(name='t')", commands or [], files or [], metadata))


def ran(exit_code: int = 0, stdout: str = "", stderr: str = "") -> CommandRun:
    return CommandRun(exit_code=exit_code, stdout=stdout, stderr=stderr, duration_s=0.25)


@pytest.fixture
def probe() -> FakeProbe:
    fake = FakeProbe()
    fake.add(
        IMAGE,
        FakeImage(
            files={
                "/etc/motd": FileFacts(type=FileType.FILE, mode=0o644, uid=0, gid=0, content=b"hello\nworld\n"),
                "/app": FileFacts(type=FileType.FILE, mode=0o755, uid=10000, gid=10000, content=b"\x7fELF"),
                "/usr/bin/su": FileFacts(type=FileType.FILE, mode=0o4755, uid=0, gid=0),
                "/tmp": FileFacts(type=FileType.DIR, mode=0o1777, uid=0, gid=0),
                "/bin/sh": FileFacts(type=FileType.SYMLINK, mode=0o777, uid=0, gid=0, link_target="busybox"),
            },
            config=ImageConfig(
                user="root",
                workdir="/srv",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                entrypoint=("/app",),
                cmd=("--serve",),
                exposed_ports=("8080/tcp", "9090/udp"),
                labels={"org.opencontainers.image.title": "app"},
                volumes=("/data",),
            ),
            commands={
                ("echo", "hi"): ran(stdout="hi\n"),
                ("greet",): ran(stdout="hello\nhi there\nbye\n"),
                ("fail",): ran(exit_code=2, stderr="boom\n"),
                ("quiet-fail",): ran(exit_code=1, stdout="said something\n"),
                ("warn",): ran(stdout="ok\n", stderr="warning: deprecated\n"),
                ("sleep", "99"): CommandRun(
                    exit_code=-1, stdout="started\n", stderr="", duration_s=5.0, timed_out=True
                ),
            },
        ),
    )
    return fake


def only(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


# --- commands -----------------------------------------------------------------------------------


def test_command_with_expected_output_passes(probe: FakeProbe) -> None:
    result = only(
        run_checks(
            spec(commands=[{"name": "hi", "command": ["echo", "hi"], "expected_output": ["^hi$"]}]),
            IMAGE,
            PLATFORM,
            probe,
        )
    )
    assert result == CheckResult(name="hi", kind=CheckKind.COMMAND, passed=True, message="", duration_s=0.25)


def test_command_gets_its_env_user_platform_and_timeout(probe: FakeProbe) -> None:
    checks = spec(commands=[{"name": "hi", "command": ["echo", "hi"], "env": {"A": "1"}, "user": "10000"}])
    run_checks(checks, IMAGE, "linux/arm64", probe, timeout_s=7)
    call = only(probe.runs)
    assert (call.command, dict(call.env), call.user, call.platform, call.timeout_s) == (
        ("echo", "hi"),
        {"A": "1"},
        "10000",
        "linux/arm64",
        7,
    )


def test_wrong_exit_code_says_expected_and_got_and_shows_stderr(probe: FakeProbe) -> None:
    result = only(run_checks(spec(commands=[{"name": "f", "command": ["fail"]}]), IMAGE, PLATFORM, probe))
    assert not result.passed
    assert result.message == "expected exit code 0, got 2; stderr: 'boom\\n'"


def test_wrong_exit_code_with_empty_stderr_shows_the_output(probe: FakeProbe) -> None:
    result = only(run_checks(spec(commands=[{"name": "q", "command": ["quiet-fail"]}]), IMAGE, PLATFORM, probe))
    assert result.message == "expected exit code 0, got 1; stderr: ''; output: 'said something\\n'"


def test_expected_exit_code_other_than_zero_passes(probe: FakeProbe) -> None:
    checks = spec(commands=[{"name": "f", "command": ["fail"], "exit_code": 2, "expected_error": ["^boom"]}])
    assert only(run_checks(checks, IMAGE, PLATFORM, probe)).passed


def test_output_not_matching_says_the_regex_and_the_output(probe: FakeProbe) -> None:
    checks = spec(commands=[{"name": "hi", "command": ["greet"], "expected_output": ["^hi$"]}])
    result = only(run_checks(checks, IMAGE, PLATFORM, probe))
    assert result.message == "output did not match ^hi$; output was: 'hello\\nhi there\\nbye\\n'"


def test_regexes_search_every_line(probe: FakeProbe) -> None:
    checks = spec(commands=[{"name": "g", "command": ["greet"], "expected_output": ["^hi there$", "bye$"]}])
    assert only(run_checks(checks, IMAGE, PLATFORM, probe)).passed


def test_excluded_output_and_error(probe: FakeProbe) -> None:
    checks = spec(
        commands=[
            {"name": "w", "command": ["warn"], "excluded_output": ["^ok$"]},
            {"name": "e", "command": ["warn"], "excluded_error": ["deprecated"]},
            {"name": "fine", "command": ["warn"], "excluded_output": ["error"], "expected_error": ["^warning"]},
        ]
    )
    w, e, fine = run_checks(checks, IMAGE, PLATFORM, probe)
    assert w.message == "output matched ^ok$, which it should not; output was: 'ok\\n'"
    assert e.message == "stderr matched deprecated, which it should not; stderr: 'warning: deprecated\\n'"
    assert fine.passed


def test_expected_error_not_matching(probe: FakeProbe) -> None:
    checks = spec(commands=[{"name": "w", "command": ["warn"], "expected_error": ["^error:"]}])
    result = only(run_checks(checks, IMAGE, PLATFORM, probe))
    assert result.message == "stderr did not match ^error:; stderr: 'warning: deprecated\\n'"


def test_command_that_cannot_start_fails_with_127(probe: FakeProbe) -> None:
    result = only(run_checks(spec(commands=[{"name": "sh", "command": ["/bin/bash"]}]), IMAGE, PLATFORM, probe))
    assert result.message.startswith('expected exit code 0, got 127; stderr: \'exec: "/bin/bash"')


def test_timeout_is_a_failed_check_saying_so(probe: FakeProbe) -> None:
    checks = spec(commands=[{"name": "slow", "command": ["sleep", "99"]}])
    result = only(run_checks(checks, IMAGE, PLATFORM, probe, timeout_s=5))
    assert not result.passed and result.timed_out
    assert result.message == "timed out after 5s (the container was killed); output so far: 'started\\n'"


# --- files --------------------------------------------------------------------------------------


def test_file_checks_pass(probe: FakeProbe) -> None:
    checks = spec(
        files=[
            {"path": "/etc/motd", "type": "file", "mode": "0644", "owner": "0:0", "contains": ["^world$"]},
            {"path": "/app", "mode": "755", "owner": "10000"},
            {"path": "/usr/bin/su", "mode": "4755"},
            {"path": "/tmp", "type": "dir", "mode": "1777"},
            {"path": "/bin/sh", "type": "symlink"},
            {"path": "/bin/bash", "exists": False},
        ]
    )
    results = run_checks(checks, IMAGE, PLATFORM, probe)
    assert [(r.name, r.kind, r.passed) for r in results] == [
        ("file /etc/motd", CheckKind.FILE, True),
        ("file /app", CheckKind.FILE, True),
        ("file /usr/bin/su", CheckKind.FILE, True),
        ("file /tmp", CheckKind.FILE, True),
        ("file /bin/sh", CheckKind.FILE, True),
        ("no file /bin/bash", CheckKind.FILE, True),
    ]


def test_file_that_should_not_exist(probe: FakeProbe) -> None:
    result = only(run_checks(spec(files=[{"path": "/bin/sh", "exists": False}]), IMAGE, PLATFORM, probe))
    assert (result.name, result.passed, result.message) == ("no file /bin/sh", False, "/bin/sh exists but should not")


def test_missing_file(probe: FakeProbe) -> None:
    result = only(run_checks(spec(files=[{"path": "/etc/passwd", "name": "passwd"}]), IMAGE, PLATFORM, probe))
    assert (result.name, result.message) == ("passwd", "/etc/passwd does not exist")


def test_wrong_mode_type_and_owner(probe: FakeProbe) -> None:
    checks = spec(
        files=[
            {"path": "/app", "mode": "0644"},
            {"path": "/usr/bin/su", "mode": "0755"},
            {"path": "/bin/sh", "type": "file"},
            {"path": "/etc/motd", "owner": "10000:10000"},
            {"path": "/app", "name": "app uid", "owner": "0"},
        ]
    )
    assert [r.message for r in run_checks(checks, IMAGE, PLATFORM, probe)] == [
        "mode is 0755, expected 0644",
        "mode is 4755, expected 0755",
        "type is symlink (-> busybox), expected file",
        "owner is 0:0, expected 10000:10000",
        "owner is 10000, expected 0",
    ]


def test_contents_not_matching(probe: FakeProbe) -> None:
    result = only(run_checks(spec(files=[{"path": "/etc/motd", "contains": ["^welcome"]}]), IMAGE, PLATFORM, probe))
    assert result.message == "contents did not match ^welcome; contents were: 'hello\\nworld\\n'"


def test_contents_of_a_directory_cannot_be_checked(probe: FakeProbe) -> None:
    result = only(run_checks(spec(files=[{"path": "/tmp", "contains": ["x"]}]), IMAGE, PLATFORM, probe))
    assert result.message == "cannot check contents: /tmp is a dir, not a regular file"


def test_contents_are_read_only_when_a_check_needs_them(probe: FakeProbe) -> None:
    class Recording(FakeProbe):
        asked: list[bool]

        def file(self, image: str, path: str, *, read_content: bool) -> FileFacts | None:
            self.asked.append(read_content)
            return super().file(image, path, read_content=read_content)

    recording = Recording(probe.images)
    recording.asked = []
    run_checks(
        spec(files=[{"path": "/etc/motd", "mode": "0644"}, {"path": "/etc/motd", "name": "c", "contains": ["h"]}]),
        IMAGE,
        PLATFORM,
        recording,
    )
    assert recording.asked == [False, True]


def test_contents_beyond_the_limit_are_cut_and_said_so(probe: FakeProbe) -> None:
    big = b"x" * (CONTENT_LIMIT + 10)
    probe.images[IMAGE].files["/big"] = FileFacts(type=FileType.FILE, mode=0o644, uid=0, gid=0, content=big)
    result = only(run_checks(spec(files=[{"path": "/big", "contains": ["y"]}]), IMAGE, PLATFORM, probe))
    assert result.message.endswith(f"(only the first {CONTENT_LIMIT} bytes were read)")


def test_file_checks_start_no_container(probe: FakeProbe) -> None:
    run_checks(spec(files=[{"path": "/etc/motd"}, {"path": "/nope", "exists": False}]), IMAGE, PLATFORM, probe)
    assert probe.runs == []
    assert probe.reads == [f"{IMAGE} /etc/motd", f"{IMAGE} /nope"]


# --- metadata -----------------------------------------------------------------------------------


def test_metadata_fields_pass_one_result_each(probe: FakeProbe) -> None:
    metadata = {
        "user": "root",
        "workdir": "/srv",
        "env": {"LANG": "C.UTF-8"},
        "entrypoint": ["/app"],
        "cmd": ["--serve"],
        "exposed_ports": ["8080", "9090/udp"],
        "labels": {"org.opencontainers.image.title": "app"},
        "volumes": ["/data"],
    }
    results = run_checks(spec(metadata=metadata), IMAGE, PLATFORM, probe)
    assert [(r.name, r.kind, r.passed) for r in results] == [
        (f"metadata {name}", CheckKind.METADATA, True)
        for name in ("user", "workdir", "env", "entrypoint", "cmd", "exposed_ports", "labels", "volumes")
    ]


def test_metadata_mismatches_say_expected_and_found(probe: FakeProbe) -> None:
    metadata = {
        "user": "company",
        "workdir": "/app",
        "env": {"LANG": "en_US.UTF-8", "TZ": "UTC"},
        "entrypoint": ["/bin/sh", "-c"],
        "cmd": [],
        "exposed_ports": ["80", "9090/udp"],
        "labels": {"org.opencontainers.image.title": "web", "team": "platform"},
        "volumes": ["/data", "/logs"],
    }
    messages = {r.name: r.message for r in run_checks(spec(metadata=metadata), IMAGE, PLATFORM, probe)}
    assert messages == {
        "metadata user": "user is 'root', expected 'company'",
        "metadata workdir": "workdir is '/srv', expected '/app'",
        "metadata env": "env LANG is 'C.UTF-8', expected 'en_US.UTF-8'; env TZ is not set, expected 'UTC'",
        "metadata entrypoint": 'entrypoint is ["/app"], expected ["/bin/sh", "-c"]',
        "metadata cmd": 'cmd is ["--serve"], expected []',
        "metadata exposed_ports": "port 80/tcp is not exposed (exposed: 8080/tcp, 9090/udp)",
        "metadata labels": (
            "label org.opencontainers.image.title is 'app', expected 'web'; label team is not set, expected 'platform'"
        ),
        "metadata volumes": 'volumes are ["/data"], expected ["/data", "/logs"]',
    }


def test_unset_user_is_shown_as_not_set() -> None:
    fake = FakeProbe({IMAGE: FakeImage()})
    result = only(run_checks(spec(metadata={"user": "company"}), IMAGE, PLATFORM, fake))
    assert result.message == "user is '' (not set), expected 'company'"


def test_one_result_per_command_file_and_metadata_field_in_order(probe: FakeProbe) -> None:
    checks = spec(
        commands=[{"name": "a", "command": ["echo", "hi"]}, {"name": "b", "command": ["fail"]}],
        files=[{"path": "/app"}],
        metadata={"volumes": ["/data"], "user": "root"},
    )
    results = run_checks(checks, IMAGE, PLATFORM, probe)
    assert [(r.name, r.kind) for r in results] == [
        ("a", CheckKind.COMMAND),
        ("b", CheckKind.COMMAND),
        ("file /app", CheckKind.FILE),
        ("metadata user", CheckKind.METADATA),
        ("metadata volumes", CheckKind.METADATA),
    ]


# --- the result cache ---------------------------------------------------------------------------


def test_result_key_changes_with_image_key_platform_and_spec() -> None:
    text = canonical_spec("t", [], [], {"user": "root"})
    other = canonical_spec("t", [], [], {"user": "company"})
    key = result_key("k1", PLATFORM, text)
    assert key.startswith("test:")
    assert key == result_key("k1", PLATFORM, canonical_spec("t", (), (), {"user": "root"}))
    assert (
        len(
            {
                key,
                result_key("k2", PLATFORM, text),
                result_key("k1", "linux/arm64", text),
                result_key("k1", PLATFORM, other),
            }
        )
        == 4
    )


def test_cache_miss_then_hit_keeps_failures_too(tmp_path: Path) -> None:
    results = [
        CheckResult(name="a", kind=CheckKind.COMMAND, passed=True, message="", duration_s=0.5),
        CheckResult(name="file /x", kind=CheckKind.FILE, passed=False, message="/x does not exist", duration_s=0.1),
    ]
    with Store(tmp_path) as store:
        cache = ResultCache(store)
        key = result_key("k", PLATFORM, "{}")
        assert cache.get(key) is None
        cache.put(key, results, "2026-01-01T00:00:00+00:00")
        hit = cache.get(key)
    assert hit is not None
    assert hit.results == tuple(results)
    assert hit.ran_at == "2026-01-01T00:00:00+00:00"
    assert not hit.passed


def test_a_run_with_a_timeout_is_not_cached(tmp_path: Path) -> None:
    timed_out = CheckResult(
        name="s", kind=CheckKind.COMMAND, passed=False, message="timed out", duration_s=5, timed_out=True
    )
    with Store(tmp_path) as store:
        cache = ResultCache(store)
        assert cache.put("test:x", [timed_out]) is None
        assert cache.get("test:x") is None


# --- JUnit XML ----------------------------------------------------------------------------------


def test_junit_file_read_back(tmp_path: Path) -> None:
    label = Label("apps/web", "web_test")
    passed = CheckResult(name="hi", kind=CheckKind.COMMAND, passed=True, message="", duration_s=0.5)
    failed = CheckResult(
        name="metadata user",
        kind=CheckKind.METADATA,
        passed=False,
        message="user is 'root', expected 'company'",
        duration_s=0.25,
    )
    suites = [
        image_test_suite(label, "linux/amd64", [passed, failed], cached=False, ran_at="2026-01-01T00:00:00+00:00"),
        image_test_suite(label, "linux/arm64", [passed, failed], cached=True),
        image_test_error_suite(
            Label("apps/api", "api_test"),
            "linux/amd64",
            "build //apps/api:api linux/amd64",
            "image failed to build: boom",
        ),
    ]
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, suites)

    xml = junitparser.JUnitXml.fromfile(str(path))
    assert (xml.tests, xml.failures, xml.errors) == (5, 2, 1)
    by_name = {suite.name: suite for suite in xml}
    assert list(by_name) == [
        "//apps/web:web_test linux/amd64",
        "//apps/web:web_test linux/arm64",
        "//apps/api:api_test linux/amd64",
    ]
    amd64 = by_name["//apps/web:web_test linux/amd64"]
    assert (amd64.tests, amd64.failures, amd64.errors, amd64.time) == (2, 1, 0, 0.75)
    cases = list(amd64)
    assert [(c.classname, c.name, c.time) for c in cases] == [
        ("//apps/web:web_test", "hi", 0.5),
        ("//apps/web:web_test", "metadata user", 0.25),
    ]
    assert cases[1].result[0].message == "user is 'root', expected 'company'"
    assert by_name["//apps/web:web_test linux/arm64"].time == 0  # cached: nothing ran
    error_case = next(iter(by_name["//apps/api:api_test linux/amd64"]))
    assert error_case.is_error and error_case.result[0].message == "image failed to build: boom"


def test_junit_model_takes_any_suite_and_survives_control_characters(tmp_path: Path) -> None:
    suite = Suite(
        name="build",
        cases=(Case(name="//a:a linux/amd64", classname="build", time_s=3.0, failure="output '\x00\x1b[31m'"),),
    )
    path = tmp_path / "junit.xml"
    write_junit(path, [suite])
    case = next(iter(next(iter(junitparser.JUnitXml.fromfile(str(path))))))
    assert case.is_failure and "\x00" not in case.result[0].message


# --- selecting tests (no engine needed: the selection fails before connecting) --------------------

TESTS = {
    "web/BUILD": (
        'image(name = "web", repository = "company-web")\n'
        'image_test(name = "web_test", image = ":web", metadata = {"user": "company"})\n'
        'image_test(name = "web_ref_test", image = "company-web:latest", files = [{"path": "/app"}])\n'
    ),
    "web/Dockerfile": "FROM scratch\nCOPY BUILD /\n",
}


def test_pattern_matching_no_test_exits_3(workspace: ScratchWorkspace) -> None:
    workspace.write({**TESTS, "other/BUILD": 'image(name = "other")\n', "other/Dockerfile": "FROM scratch\n"})
    result = workspace.run("test", "//other/...")
    assert result.exit_code == 3
    assert "ERROR pattern //other/... matches no image_test" in result.output


def test_unknown_test_suggests_test_labels(workspace: ScratchWorkspace) -> None:
    workspace.write(TESTS)
    result = workspace.run("test", "//web:web_tst")
    assert result.exit_code == 2
    assert "no image_test //web:web_tst (did you mean '//web:web_test'" in result.output


def test_naming_the_image_instead_of_its_test_lists_its_tests(workspace: ScratchWorkspace) -> None:
    workspace.write(TESTS)
    result = workspace.run("test", "//web:web")
    assert result.exit_code == 2
    assert "//web:web is an image, not an image_test (its tests: //web:web_ref_test, //web:web_test)" in result.output


def test_unknown_image_names_the_tests_build_file(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {**TESTS, "t/BUILD": 'image_test(name = "t", image = "company-wbe:latest", metadata = {"user": "x"})\n'}
    )
    result = workspace.run("test", "//t:t")
    assert result.exit_code == 2
    assert "ERROR t/BUILD: image_test //t:t: image 'company-wbe:latest'" in result.output
    assert "company-web:latest" in result.output  # did you mean


def test_platform_no_test_runs_on_exits_3(workspace: ScratchWorkspace) -> None:
    workspace.write(TESTS)
    result = workspace.run("test", "--platform", "linux/s390x")
    assert result.exit_code == 3
    assert "no selected image_test runs on linux/s390x" in result.output
