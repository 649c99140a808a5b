"""JUnit XML for CI systems, through ``junitparser``.

A small model, Suite and Case, is what callers fill in; ``write_junit`` turns any list of suites
into one file, so image tests and (later) build nodes can share it. Image tests give one suite per
(test, platform), named ``//pkg:name linux/amd64``, and one case per check (classname: the test's
label); a test whose image did not build is one case with an error naming the build failure.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import junitparser
from junitparser.junitparser import FinalResult

from orchestrator.core.label import Label
from orchestrator.imagetest.checks import CheckResult

# Characters XML 1.0 cannot hold at all (a command's output may contain any byte).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One ``<testcase>``: passed unless it has a failure, an error or a skip reason."""

    name: str
    classname: str
    time_s: float = 0.0
    failure: str | None = None  # the check did not hold
    error: str | None = None  # the check could not run (its image failed to build, ...)
    skipped: str | None = None
    details: str | None = None  # the failure's or error's text (a log tail, say)
    system_out: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    """One ``<testsuite>``; its counts and time are computed from the cases."""

    name: str
    cases: tuple[Case, ...]
    timestamp: str | None = None  # ISO 8601
    properties: tuple[tuple[str, str], ...] = ()


def write_junit(path: Path | str, suites: Sequence[Suite]) -> None:
    """Write ``suites`` as one JUnit XML file (replaced atomically)."""
    xml = junitparser.JUnitXml()
    for suite in suites:
        element = junitparser.TestSuite(_text(suite.name))
        if suite.timestamp is not None:
            element.timestamp = suite.timestamp
        for name, value in suite.properties:
            element.add_property(_text(name), _text(value))
        element.add_testcases([_case(case) for case in suite.cases])
        xml.add_testsuite(element)
    xml.update_statistics()  # type: ignore[no-untyped-call]  # the totals of <testsuites>
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        xml.write(temporary, pretty=True)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _case(case: Case) -> junitparser.TestCase:
    element = junitparser.TestCase(_text(case.name), _text(case.classname), round(case.time_s, 3))
    results: list[FinalResult] = []
    if case.failure is not None:
        results.append(junitparser.Failure(_text(case.failure)))
    if case.error is not None:
        results.append(junitparser.Error(_text(case.error)))
    if case.skipped is not None:
        results.append(junitparser.Skipped(_text(case.skipped)))
    if case.details is not None:
        for result in results:
            result.text = _text(case.details)
    if results:
        element.result = results
    if case.system_out is not None:
        element.system_out = _text(case.system_out)
    return element


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


# --- image tests ------------------------------------------------------------------------------


def suite_name(label: Label, platform: str) -> str:
    return f"{label} {platform}"


def image_test_suite(
    label: Label, platform: str, results: Sequence[CheckResult], *, cached: bool, ran_at: str | None = None
) -> Suite:
    """The suite of one (test, platform) whose checks ran (or whose cached results were reused)."""
    cases = tuple(
        Case(
            name=result.name,
            classname=str(label),
            time_s=0.0 if cached else result.duration_s,
            failure=None if result.passed else result.message,
        )
        for result in results
    )
    properties = (("kind", "image_test"), ("platform", platform), ("cached", "true" if cached else "false"))
    return Suite(name=suite_name(label, platform), cases=cases, timestamp=ran_at, properties=properties)


def image_test_error_suite(
    label: Label, platform: str, case_name: str, error: str, details: str | None = None
) -> Suite:
    """The suite of a (test, platform) that could not run: one case with ``error``."""
    case = Case(name=case_name, classname=str(label), error=error, details=details)
    properties = (("kind", "image_test"), ("platform", platform))
    return Suite(name=suite_name(label, platform), cases=(case,), properties=properties)
