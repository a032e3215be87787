"""The import rules of the whole package, read from the source with :mod:`ast`.

They keep the layout honest, and this file is the one place the layer order is written
(docs/architecture.md links here): lower floors never reach up, the backend is resolved only
by the plan, drivers never call back into the plan or the API, nothing imports the command
line, inside a package modules import in one direction, no module is over about 600 lines,
and there is no import cycle anywhere. Imports inside functions count too: a
lazy import hides a dependency, it does not remove it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import kstream

ROOT = Path(kstream.__file__).parent
#: Lines as `ruff format` writes them (one argument per line where a call is long).
MAX_LINES = 600
#: Kept whole on purpose: one kernel subsystem, one error mapper, one gate for key bytes.
LONG_ON_PURPOSE = {"kstream.keys.keyring"}

#: Within these packages a module may import only the ones listed before it (same rank: not
#: each other). Modules not listed may not import any module of the package.
ORDER = {
    "kstream.backends.kernel": [
        ["procfs"],
        ["drivers"],
        ["sockets"],
        ["ctr", "ecb_ctr", "hmac"],
        ["backend"],
        ["diagnosis"],
    ],
    "kstream.engine": [
        ["threads", "raw"],
        ["fdio"],
        ["iterate", "pipe", "ranges"],
        ["plan"],
        ["drive", "small"],
    ],
    "kstream.cli": [
        ["tui", "outputs", "descriptors"],
        ["prompts"],
        ["parsing"],
        ["runner"],
        ["key"],
        ["many"],
        ["cipher_args"],
        ["partial"],
        ["cipher"],
        ["info", "inspect"],
        ["completion"],
        ["main"],
    ],
    "kstream.keys": [
        ["keyring"],
        ["key"],
        ["passphrase", "encrypted"],
        ["unlock"],
    ],
    "kstream.fileobj": [
        ["ends", "base"],
        ["body"],
        ["reader", "writer"],
        ["opener"],
        ["aio", "fs"],
    ],
    "kstream.bench": [
        ["units", "seek"],
        ["machine"],
        ["memory", "workfiles"],
        ["plot", "commands"],
        ["peers"],
        ["many"],
        ["startup"],
        ["files"],
        ["cli"],
        ["__main__"],
    ],
}
#: Floors below the engine: they never import the engine, the codec, the API or the CLI.
LOWER = (
    "kstream.backends",
    "kstream.format",
    "kstream.keys",
    "kstream.errors",
    "kstream.atomic",
    "kstream.memory",
    "kstream.loop",
    "kstream.notices",
)
ABOVE_BACKENDS = (
    "kstream.engine",
    "kstream.segments",
    "kstream.api",
    "kstream.cli",
    "kstream.bench",
    "kstream.selftest",
    "kstream.fileobj",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    relative = ROOT.parent / Path(*name.split("."))
    return relative.with_suffix(".py").exists() or (relative / "__init__.py").exists()


def imports_of(path: Path) -> Iterator[str]:
    """Every kstream module ``path`` imports, at any depth; ``from pkg import submodule``
    counts as an import of the submodule, ``from pkg import name`` as one of ``pkg``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("kstream"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("kstream")
        ):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if is_module(sub) else node.module


GRAPH = {module_name(p): set(imports_of(p)) for p in ROOT.rglob("*.py")}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(target) :], target]))
            if target in GRAPH and state.get(target) is None:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if state.get(module) is None:
            visit(module, [module])


def test_no_module_is_too_long() -> None:
    long = {
        module_name(p): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
        and module_name(p) not in LONG_ON_PURPOSE
    }
    assert not long


def test_lower_floors_never_reach_up() -> None:
    bad = {
        (m, t)
        for m, targets in GRAPH.items()
        if any(within(m, low) for low in LOWER)
        for t in targets
        if any(within(t, up) for up in ABOVE_BACKENDS)
    }
    assert not bad


def test_only_the_plan_resolves_a_backend() -> None:
    users = {m for m, targets in GRAPH.items() if "kstream.backends.select" in targets}
    allowed = {"kstream.engine.plan", "kstream.backends", "kstream.backends.report"}
    assert users <= allowed, users - allowed


#: The engine modules above the plan: they run one (the drivers below never see it).
RUNS_A_PLAN = {"kstream.engine.plan", "kstream.engine.drive", "kstream.engine.small"}


def test_drivers_never_call_back_into_the_plan_or_the_api() -> None:
    for module, targets in GRAPH.items():
        if within(module, "kstream.engine") and module not in RUNS_A_PLAN:
            assert not targets & {"kstream.engine.plan", "kstream.api"}, module


def test_nothing_imports_the_command_line() -> None:
    users = {
        m
        for m, targets in GRAPH.items()
        if not within(m, "kstream.cli") and any(within(t, "kstream.cli") for t in targets)
    }
    assert users <= {"kstream.__main__"}


@pytest.mark.parametrize("package", sorted(ORDER))
def test_modules_of_a_package_import_in_one_direction(package: str) -> None:
    rank = {name: i for i, names in enumerate(ORDER[package]) for name in names}
    here = ROOT.parent / Path(*package.split("."))
    assert sorted(p.stem for p in here.glob("*.py") if p.stem != "__init__") == sorted(rank)
    for name, r in rank.items():
        for target in GRAPH[f"{package}.{name}"]:
            if within(target, package) and target != package:
                other = target.removeprefix(package + ".").split(".")[0]
                assert rank[other] < r, f"{package}.{name} imports {other}"


def test_pre_commit_runs_the_checks_ci_runs() -> None:
    """Every check of CI's last stage is a pre-commit hook with the same arguments, so a
    commit that passes its hooks passes that stage."""
    root = ROOT.parent
    ci = [
        line.removeprefix(".venv/bin/")
        for line in (root / ".ci" / "run").read_text().splitlines()
        if line.startswith((".venv/bin/ruff", ".venv/bin/mypy"))
    ]
    hooks = [
        line.split("entry:", 1)[1].strip()
        for line in (root / ".pre-commit-config.yaml").read_text().splitlines()
        if line.strip().startswith("entry:")
    ]
    assert ci and sorted(ci) == sorted(hooks)


def test_the_version_is_the_changelog_s_newest_release() -> None:
    """``kstream --version`` names the newest release in CHANGELOG.md (changes since then
    are under Unreleased until the next one)."""
    changelog = (ROOT.parent / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## (\d+\.\d+\.\d+) - ", changelog, re.MULTILINE)
    assert "## Unreleased" in changelog
    assert releases and releases[0] == kstream.__version__
