"""Evaluates WORKSPACE, BUILD and ``.star`` files with starlark-pyo3 (the only importer of starlark).

Starlark gives no I/O, no clock and deterministic evaluation. Errors raised by our rule functions
travel through Starlark as text; we keep the original exception aside and re-raise it with the
file:line:column Starlark reports, so the user sees one clean message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import starlark as sl

from orchestrator.buildfile.rules import PackageContext, rule_functions
from orchestrator.buildfile.settings import settings_from_kwargs
from orchestrator.context import check_inside
from orchestrator.errors import BuildFileError, Location, OrchestratorError
from orchestrator.label import Label
from orchestrator.model import LoadedPackage, WorkspaceSettings
from orchestrator.witness import Witness
from orchestrator.workspace import BUILD_FILES, workspace_file

_LOCATION_RE = re.compile(r"-->\s+(?P<path>.+?):(?P<line>\d+):(?P<col>\d+)")
_ERROR_RE = re.compile(r"^error: (?P<msg>.*)$", re.MULTILINE)


class _Session:
    """State of one load: the package being evaluated, frozen .star modules, the pending error."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stack: list[PackageContext] = []
        self.modules: dict[str, sl.FrozenModule] = {}
        self.module_loads: dict[str, set[str]] = {}
        self.loading: list[str] = []
        self.pending: OrchestratorError | None = None
        self.witness: Witness | None = None
        self.dialect = sl.Dialect.extended()
        self.globals = sl.Globals.standard()

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

        return call

    def new_module(self) -> sl.Module:
        module = sl.Module()
        for name, function in rule_functions(self.current).items():
            module.add_callable(name, self.guard(function))
        return module

    def evaluate(self, display_path: str, text: str, module: sl.Module) -> None:
        self.pending = None
        try:
            ast = sl.parse(display_path, text, self.dialect)
            sl.eval(module, ast, self.globals, sl.FileLoader(self.load_star))
        except sl.StarlarkError as exc:
            raise self.translate(exc, display_path) from None

    def translate(self, exc: sl.StarlarkError, display_path: str) -> OrchestratorError:
        """The pending rule error (or Starlark's own) located at the innermost frame."""
        text = str(exc)
        locations = _LOCATION_RE.findall(text)
        if locations:
            path, line, col = locations[-1]
            location = Location(path, int(line), int(col))
        else:
            location = Location(display_path)
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
        if relative not in self.modules:
            if not path.is_file():
                raise BuildFileError(f"load({module_id!r}): {relative} does not exist")
            self.loading.append(relative)
            try:
                module = self.new_module()
                self.evaluate(relative, path.read_text(), module)
            finally:
                self.loading.pop()
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


def _read_build_file(root: Path, package: str, witness: Witness | None) -> tuple[str, str]:
    """(workspace-relative path, text) of the package's BUILD or BUILD.bazel file."""
    for name in BUILD_FILES:
        display = f"{package}/{name}" if package else name
        if witness is not None:
            witness.saw(display)
        try:
            with open(os.path.join(root, display), encoding="utf-8") as handle:
                return display, handle.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
    raise BuildFileError(f"package //{package} has no BUILD file")


def load_packages(root: Path, packages: Iterable[str], witness: Witness | None = None) -> list[LoadedPackage]:
    """Evaluate the BUILD file of each package; targets in declaration order per package."""
    session = _Session(root)
    session.witness = witness
    loaded = []
    for package in packages:
        display, text = _read_build_file(root, package, witness)
        context = PackageContext(root=root, package=package, build_file=display, witness=witness)
        session.stack.append(context)
        session.module_loads[""] = set()
        try:
            session.evaluate(display, text, session.new_module())
        finally:
            session.stack.pop()
        loaded.append(
            LoadedPackage(
                package=package,
                build_file=display,
                loads=session.transitive_loads(session.module_loads[""]),
                targets=tuple(context.targets.values()),
                tests=tuple(context.tests.values()),
            )
        )
    return loaded


def load_settings(root: Path) -> WorkspaceSettings:
    """Evaluate WORKSPACE; ``workspace(...)`` may be called at most once (an empty file is fine)."""
    path = workspace_file(root)
    found: list[WorkspaceSettings] = []

    def workspace(*args: Any, **kwargs: Any) -> None:
        if found:
            raise BuildFileError("workspace() may be called only once")
        found.append(settings_from_kwargs(args, kwargs))

    session = _Session(root)
    module = sl.Module()
    module.add_callable("workspace", session.guard(workspace))
    session.evaluate(path.name, path.read_text(), module)
    return found[0] if found else WorkspaceSettings()
