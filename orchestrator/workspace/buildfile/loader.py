"""Evaluates WORKSPACE, BUILD and ``.star`` files with starlark-pyo3 (the only importer of starlark).

Starlark gives no I/O, no clock and deterministic evaluation. Errors raised by our rule functions
travel through Starlark as text; we keep the original exception aside and re-raise it with the
file:line:column Starlark reports, so the user sees one clean message.

BUILD and .star files are evaluated in a forked child under a time and a memory budget (see
budget.py): starlark-pyo3 holds the GIL, so in this process neither Ctrl-C nor a deadline could stop
a runaway file. The results, frozen dataclasses, come back pickled, with the paths the child looked
at. WORKSPACE goes to a child too, under the defaults, unless it is only literals (``literals_only``).
Every file read must resolve inside the workspace, symlinks included.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import starlark as sl

from orchestrator.cache.witness import PACKAGES, Witness
from orchestrator.core.label import Label
from orchestrator.core.model import LoadedPackage, WorkspaceSettings
from orchestrator.core.paths import check_inside
from orchestrator.errors import BuildFileError, Location, OrchestratorError
from orchestrator.workspace.buildfile import budget
from orchestrator.workspace.buildfile.budget import DEFAULT_BUDGET, Budget, Progress
from orchestrator.workspace.buildfile.rules import PackageContext, rule_functions
from orchestrator.workspace.buildfile.settings import settings_from_kwargs
from orchestrator.workspace.root import BUILD_FILES, workspace_file

WORKSPACE_BUDGET = Budget(settable=False)  # WORKSPACE sets the budget of BUILD files; it gets the defaults
_LOCATION_RE = re.compile(r"-->\s+(?P<path>.+?):(?P<line>\d+):(?P<col>\d+)")
_ERROR_RE = re.compile(r"^error: (?P<msg>.*)$", re.MULTILINE)
_SOURCE_LINE_RE = re.compile(r"^\s*\d+ \|", re.MULTILINE)  # the quoted line under a location


@functools.cache
def _starlark() -> tuple[sl.Dialect, sl.Globals]:
    """The dialect and globals, made and exercised once per process, before any fork.

    starlark builds its tables on first use (4-6 ms measured); done here, every child inherits them
    instead of building them again.
    """
    dialect, globals_ = sl.Dialect.extended(), sl.Globals.standard()
    module = sl.Module()
    module.add_callable("f", lambda *args, **kwargs: None)
    sl.eval(module, sl.parse("warm-up", "f(1, a = [1], b = {'x': 'y'})", dialect), globals_)
    return dialect, globals_


class _Session:
    """State of one load: the package being evaluated, frozen .star modules, the pending error."""

    def __init__(self, root: Path, progress: Progress) -> None:
        self.root = root
        self.progress = progress
        self.stack: list[PackageContext] = []
        self.modules: dict[str, sl.FrozenModule] = {}
        self.module_loads: dict[str, set[str]] = {}
        self.loading: list[str] = []
        self.pending: OrchestratorError | None = None
        self.exhausted = False  # memory ran out: the budget's error, not a located one
        self.witness: Witness | None = None
        self.dialect, self.globals = _starlark()

    def current(self) -> PackageContext:
        return self.stack[-1]

    def guard(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a rule so an OrchestratorError it raises is kept for re-raising with a location."""

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except OrchestratorError as exc:
                self.pending = exc
                raise
            except MemoryError:
                self.exhausted = True
                raise

        return call

    def new_module(self) -> sl.Module:
        module = sl.Module()
        for name, function in rule_functions(self.current).items():
            module.add_callable(name, self.guard(function))
        return module

    def evaluate(self, display_path: str, text: str, module: sl.Module) -> None:
        self.pending = None
        try:
            parsed = sl.parse(display_path, text, self.dialect)
            sl.eval(module, parsed, self.globals, sl.FileLoader(self.guard(self.load_star)))
        except sl.StarlarkError as exc:
            if self.exhausted:  # in a loaded file or a rule function: Starlark made it text on the way
                raise MemoryError(display_path) from None
            raise self.translate(exc, display_path, text) from None
        except BaseException as exc:
            # starlark's heap panics when an allocation fails (pyo3's PanicException, no public class)
            if type(exc).__name__ == "PanicException" and "out of memory" in str(exc):
                self.exhausted = True
                raise MemoryError(display_path) from None
            raise

    def translate(self, exc: sl.StarlarkError, display_path: str, source: str) -> OrchestratorError:
        """The pending rule error (or Starlark's own) located at the innermost frame."""
        text = str(exc)
        locations = list(_LOCATION_RE.finditer(text))
        if not locations:
            location = Location(display_path)
        elif locations[-1]["path"] == display_path and not _SOURCE_LINE_RE.search(text, locations[-1].end()):
            # Starlark cannot place a span past the last line (an unclosed bracket before the final
            # newline) and says 1:1, quoting nothing: the error is at the end of the text.
            location = _end_of(display_path, source)
        else:
            last = locations[-1]
            location = Location(last["path"], int(last["line"]), int(last["col"]))
        pending, self.pending = self.pending, None
        if pending is not None:
            if pending.location is None:
                pending.location = location
            return pending
        found = _ERROR_RE.search(text)
        message = found.group("msg") if found else text.strip().splitlines()[-1]
        return BuildFileError(message, location=location)

    def load_star(self, module_id: str) -> sl.FrozenModule:
        """``load("//pkg:file.star", ...)`` or ``load(":file.star")`` relative to the loading package."""
        package = self.loading[-1] if self.loading else self.current().package
        label = Label.parse(module_id, current_package=package)
        relative = f"{label.package}/{label.name}" if label.package else label.name
        if not relative.endswith(".star"):
            raise BuildFileError(f"load({module_id!r}): only .star files can be loaded")
        path = check_inside(self.root / relative, self.root, what=f"load({module_id!r})")
        if relative in self.loading:
            raise BuildFileError("load cycle: " + " -> ".join([*self.loading, relative]))
        if self.witness is not None:
            self.witness.saw(relative)
            self.witness.saw(str(path))  # a symlink's target, inside the workspace
        if relative not in self.modules:
            if not path.is_file():
                raise BuildFileError(f"load({module_id!r}): {relative} does not exist")
            self.loading.append(relative)
            self.progress.enter(relative)
            try:
                module = self.new_module()
                self.evaluate(relative, _read(path, relative), module)
            finally:
                self.loading.pop()
            self.progress.leave()  # not on an error: the files it names are where evaluation stopped
            self.modules[relative] = module.freeze()
        if self.loading:
            self.module_loads.setdefault(self.loading[-1], set()).add(relative)
        else:
            self.module_loads.setdefault("", set()).add(relative)
        return self.modules[relative]

    def transitive_loads(self, direct: Iterable[str]) -> tuple[str, ...]:
        seen: set[str] = set()
        todo = list(direct)
        while todo:
            item = todo.pop()
            if item not in seen:
                seen.add(item)
                todo.extend(self.module_loads.get(item, ()))
        return tuple(sorted(seen))


def _end_of(display_path: str, source: str) -> Location:
    """Just after the last character of ``source`` that is not white space."""
    lines = source.rstrip().splitlines() or [""]
    return Location(display_path, len(lines), len(lines[-1]) + 1)


def _read(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BuildFileError(f"not UTF-8 text (byte {exc.start})", location=Location(display)) from None


def _build_file(root: Path, package: str, witness: Witness | None) -> tuple[str, Path]:
    """(workspace-relative path, resolved path) of the package's BUILD or BUILD.bazel file.

    A BUILD file that is a symlink must resolve inside the workspace, like every path loading reads.
    """
    for name in BUILD_FILES:
        display = f"{package}/{name}" if package else name
        if witness is not None:
            witness.saw(display)
        path = os.path.join(root, display)
        if os.path.isfile(path):
            real = check_inside(Path(path), root, what="BUILD file")
            if witness is not None:
                witness.saw(str(real))
            return display, real
    raise BuildFileError(f"package //{package} has no BUILD file")


def load_packages(
    root: Path, packages: Iterable[str], witness: Witness | None = None, *, limits: Budget = DEFAULT_BUDGET
) -> list[LoadedPackage]:
    """Evaluate the BUILD file of each package; targets in declaration order per package.

    The evaluation runs in a child process under ``limits``; what it looked at is added to ``witness``.
    """
    wanted = list(packages)
    if not wanted:
        return []
    seen = None if witness is None else Witness(witness.root)
    _starlark()
    loaded, paths, listings = budget.run(lambda progress: _evaluate_packages(root, wanted, seen, progress), limits)
    if witness is not None:
        _absorb(witness, paths, listings)
    return loaded


def _absorb(witness: Witness, paths: set[str], listings: dict[str, tuple[str, str]]) -> None:
    """Add what the child's witness recorded, with Witness.listed's rule: a glob's listing is the stricter."""
    witness.paths |= paths
    for rel, listing in listings.items():
        if witness.listings.get(rel, (PACKAGES, ""))[0] == PACKAGES:
            witness.listings[rel] = listing


def _evaluate_packages(
    root: Path, packages: list[str], witness: Witness | None, progress: Progress
) -> tuple[list[LoadedPackage], set[str], dict[str, tuple[str, str]]]:
    session = _Session(root, progress)
    session.witness = witness
    loaded = []
    for package in packages:
        display, path = _build_file(root, package, witness)
        context = PackageContext(root=root, package=package, build_file=display, witness=witness)
        session.stack.append(context)
        session.module_loads[""] = set()
        progress.enter(display)
        try:
            session.evaluate(display, _read(path, display), session.new_module())
        finally:
            session.stack.pop()
        progress.leave()
        loaded.append(
            LoadedPackage(
                package=package,
                build_file=display,
                loads=session.transitive_loads(session.module_loads[""]),
                targets=tuple(context.targets.values()),
                tests=tuple(context.tests.values()),
            )
        )
    if witness is None:
        return loaded, set(), {}
    return loaded, witness.paths, witness.listings


def load_settings(root: Path) -> WorkspaceSettings:
    """Evaluate WORKSPACE; ``workspace(...)`` may be called at most once (an empty file is fine).

    WORKSPACE is evaluated in a child process too, under the default budget (it sets the budget),
    unless it holds nothing that can loop or compute (the usual one ``workspace()`` call of literals):
    that is evaluated here, saving the fork every command would pay (3-4 ms measured).
    """
    found = workspace_file(root)
    path, display = check_inside(found, root, what="WORKSPACE file"), found.name
    text = _read(path, display)
    _starlark()
    if literals_only(text):
        return _evaluate_workspace(root, display, text, budget.NoProgress())
    return budget.run(lambda progress: _evaluate_workspace(root, display, text, progress), WORKSPACE_BUDGET)


_LITERAL_NODES = (ast.Module, ast.Expr, ast.Assign, ast.Call, ast.keyword, ast.Constant, ast.List, ast.Tuple, ast.Dict)


def literals_only(text: str) -> bool:
    """True when ``text`` is only calls of ``workspace()``, literals and assignments of literals.

    Without loops, functions, operators or any other name, evaluating it costs time and memory in
    proportion to its length: no budget is needed. Read with Python's parser (Starlark's literals and
    calls are Python's; ``ast.parse`` costs 0.05 ms here, where ``tokenize`` first costs 1.7 ms);
    anything else, or text Python does not parse, is False.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if not (isinstance(node.ctx, ast.Store) or node.id == "workspace"):
                return False
        elif not isinstance(node, (*_LITERAL_NODES, ast.Load, ast.Store)):
            return False
    return True


def _evaluate_workspace(root: Path, display: str, text: str, progress: Progress) -> WorkspaceSettings:
    found: list[WorkspaceSettings] = []

    def workspace(*args: Any, **kwargs: Any) -> None:
        if found:
            raise BuildFileError("workspace() may be called only once")
        found.append(settings_from_kwargs(args, kwargs, root))

    session = _Session(root, progress)
    module = sl.Module()
    module.add_callable("workspace", session.guard(workspace))
    progress.enter(display)
    session.evaluate(display, text, module)
    progress.leave()
    return found[0] if found else WorkspaceSettings()
