"""The import rules of ``kstream.backends``, read from the source with :mod:`ast`.

Backends are the bottom of the house: they never reach up into the engine or the CLI. Inside
``kernel/`` every module imports only from those before it in :data:`KERNEL_ORDER`, and
nothing in ``backends/`` takes part in an import cycle. Imports inside functions count too:
a lazy import hides a dependency, it does not remove it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import kstream

ROOT = Path(kstream.__file__).parent
BACKENDS = ROOT / "backends"

#: Modules above the backends: the engine, the public API and the command line.
FORBIDDEN = ("api", "pipeline", "inplace", "parallel", "auth", "verify", "cli", "keycli",
             "bench", "benchfiles", "benchmem", "benchplot", "selftest")

#: ``kernel/`` modules from the bottom up; a module may import only from earlier ranks.
KERNEL_ORDER = {
    "procfs": 0,
    "drivers": 1,
    "sockets": 2,
    "ctr": 3,
    "ecb_ctr": 3,
    "hmac": 3,
    "backend": 4,
    "diagnosis": 5,
}

MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT.parent / relative).with_suffix(".py").exists() or (
        ROOT.parent / relative / "__init__.py"
    ).exists()


def kstream_imports(path: Path) -> Iterator[str]:
    """Every kstream module ``path`` imports, at any depth; ``from pkg import submodule``
    counts as an import of the submodule, ``from pkg import name`` as one of ``pkg``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("kstream"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("kstream"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if is_module(sub) else node.module


def backends_graph() -> dict[str, set[str]]:
    return {
        module_name(path): set(kstream_imports(path)) for path in BACKENDS.rglob("*.py")
    }


def test_backends_never_import_the_engine_or_the_cli() -> None:
    bad = {
        (module, target)
        for module, targets in backends_graph().items()
        for target in targets
        if target.split(".")[1] in FORBIDDEN
    }
    assert not bad


@pytest.mark.parametrize("name", sorted(KERNEL_ORDER))
def test_kernel_modules_import_downwards_only(name: str) -> None:
    targets = set(kstream_imports(BACKENDS / "kernel" / f"{name}.py"))
    prefix = "kstream.backends.kernel."
    for target in targets:
        assert target != "kstream.backends.kernel", f"{name} imports the kernel package"
        if target.startswith(prefix):
            other = target.removeprefix(prefix)
            assert KERNEL_ORDER[other] < KERNEL_ORDER[name], f"{name} imports {other}"
        else:
            assert not target.startswith("kstream.backends.") or target in (
                "kstream.backends.base",
            ), f"{name} imports {target}"


def test_no_import_cycles_through_the_backends() -> None:
    graph = backends_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target in graph and state.get(target) is None:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])


def test_no_backend_module_is_too_long() -> None:
    long = {
        module_name(path): n
        for path in BACKENDS.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long
