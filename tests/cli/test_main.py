"""The ``kstream`` parser, dispatch and entry points (kstream.cli.main), and the layering of
the kstream.cli package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import kst, modules_loaded_by

from kstream import __version__
from kstream.bench import cli as bench
from kstream.cli import main as cli
from kstream.cli.parsing import commands_action
from kstream.cli.tui import PROG


def test_version_and_help() -> None:
    assert kst("--version").stdout.decode().startswith("kstream 0.")
    out = kst("encrypt", "--help").stdout.decode()
    for word in (
        "--key-file",
        "--key-fd",
        "--backend",
        "--raw",
        "--iv",
        "--force",
        "--progress",
        "exit status",
        "130",
    ):
        assert word in out


def console_script() -> str:
    """The script pip installed beside this interpreter (`.venv/bin/python -m pytest` does not
    put .venv/bin on PATH), else one on PATH."""
    beside = Path(sys.executable).with_name("kstream")
    script = str(beside) if os.access(beside, os.X_OK) else shutil.which("kstream")
    if script is None:
        pytest.skip(
            "no kstream console script beside the interpreter or on PATH (package not installed)"
        )
    return script


def test_python_dash_m_and_console_script_agree() -> None:
    out = subprocess.run([console_script(), "--version"], capture_output=True, check=True).stdout
    assert out == kst("--version").stdout


def imported(*argv: str) -> set[str]:
    """The modules this interpreter imports to run ``argv``, by ``-X importtime``."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True
    ).stderr
    return {
        line.rsplit("|", 1)[1].strip()
        for line in err.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    } - {"imported package"}


def test_the_console_script_s_version_imports_only_kstream_s_version() -> None:
    """The entry point pip writes adds ``re`` (for its own ``sys.argv[0]`` rewrite) and
    kstream's version answer adds nothing of kstream's beyond ``kstream.cli``: the
    command's ``--version`` costs the interpreter and little more (the benchmark's
    start-up ratios measure it)."""
    script = console_script()
    assert "from kstream.cli import entry" in Path(script).read_text()
    extra = imported(script, "--version") - imported("-c", "pass")
    # An editable install's import hook (a .pth file) runs at the first kstream import.
    ours = {m for m in extra if "editable" not in m and not m.startswith(("re", "_sre", "sre_"))}
    assert ours <= {"kstream", "kstream.cli", "__future__", "enum", "functools", "copyreg"}, ours
    assert {"kstream", "kstream.cli"} <= extra


def test_no_command_is_help_on_stderr_and_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: kstream ") and "exit status:" in err


def test_wired_into_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.build_parser("bench")[1] == {"bench": bench.cmd_bench}
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    assert "--files" in capsys.readouterr().out


def test_building_the_parser_imports_no_measuring_or_drawing() -> None:
    """The parser is built on every run, so what only ``bench``, ``backends`` or a progress
    bar needs must stay unimported until then."""
    code = (
        "import sys\nfrom kstream.cli.main import build_parser\n"
        "build_parser()[0].parse_args(['encrypt', 'a', 'b'])\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, check=True, text=True
        ).stdout.split()
    )
    assert "kstream.bench" in loaded and "kstream.cli.main" in loaded
    for lazy in (
        "kstream.bench.memory",
        "kstream.bench.files",
        "kstream.bench.plot",
        "kstream.backends.report",
        "kstream.selftest",
        "tqdm",
        "matplotlib",
        "shtab",
    ):
        assert lazy not in loaded, lazy


#: What costs start-up time and only encryption and decryption need.
HEAVY = ("asyncio", "uvloop", "aiofiles", "tqdm", "cryptography")


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["keygen", "-"],
        ["key", "list"],
        ["inspect", "FILE"],
        ["inspect", "--json", "FILE"],
        ["completion", "bash"],
        ["man"],
        ["encrypt", "--help"],
        ["key", "add", "--help"],
    ],
)
def test_commands_that_need_no_cipher_start_without_asyncio_or_openssl(
    argv: list[str], tmp_path: Path
) -> None:
    """Loaded modules of a real run, read in the same process after it ends."""
    if "FILE" in argv:
        (tmp_path / "k").write_text("00" * 32)
        (tmp_path / "p").write_bytes(b"x" * 3000)
        kst("encrypt", "-q", "-k", tmp_path / "k", tmp_path / "p", tmp_path / "p.kst")
        argv = [str(tmp_path / "p.kst") if a == "FILE" else a for a in argv]
    loaded = modules_loaded_by(argv, status=None)
    assert "kstream.cli.main" in loaded  # the run really happened
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}, argv


def test_encrypting_loads_no_progress_bar_without_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x" * (2 << 20))  # not small: the async path
    key = tmp_path / "k"
    key.write_text("00" * 32)
    loaded = {
        m.split(".")[0]
        for m in modules_loaded_by(["encrypt", "-q", "-k", key, tmp_path / "in", tmp_path / "out"])
    }
    assert {"asyncio", "cryptography"} <= loaded
    assert "tqdm" not in loaded  # stderr is not a terminal: no bar, no tqdm
    assert (tmp_path / "out").stat().st_size > 2 << 20


def test_version_answers_before_the_command_line_is_built() -> None:
    """The console script's ``--version`` imports nothing of kstream but its version (not
    even the exceptions), and neither ``typing`` nor ``argparse``."""
    code = (
        "import sys\nsys.argv = ['kstream', '--version']\nfrom kstream.cli import entry\n"
        "try:\n    entry()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(code, ' '.join(sorted(m for m in sys.modules if m.startswith('kstream')"
        " or m in ('typing', 'argparse'))),"
        " file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == f"kstream {__version__}\n"
    status, *modules = proc.stderr.split()
    assert status == "0"
    assert set(modules) <= {"kstream", "kstream.cli"}, modules


def test_the_console_script_collects_garbage_only_once_the_command_runs() -> None:
    """Collection is off while the command line is read (start-up makes only objects that
    live until exit), and on, with those frozen, while the command runs."""
    code = (
        "import gc, sys\nimport kstream.cli.main as m\nread = m.read_command_line\n"
        "def reading(argv):\n    print('reading', gc.isenabled())\n    return read(argv)\n"
        "def running(args, handlers):\n"
        "    print('running', gc.isenabled(), gc.get_freeze_count() > 0, args.paths)\n"
        "    return 5\n"
        "m.read_command_line, m.run_command = reading, running\n"
        "sys.argv = ['kstream', 'encrypt', 'a', 'b']\nfrom kstream.cli import entry\nentry()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 5
    assert proc.stdout.splitlines() == ["reading False", "running True True ['a', 'b']"]


def test_the_license_is_the_mit_license_pyproject_names() -> None:
    root = Path(__file__).parents[2]
    text = (root / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the kstream authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert 'license = "MIT"' in (root / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    "argv, command",
    [
        (["encrypt", "a", "b"], "encrypt"),
        (["-q", "--debug", "decrypt", "x"], "decrypt"),
        (["key", "list"], "key"),
        (["--help"], None),
        ([], None),
        (["encrpyt", "a"], None),
        (["--", "man"], None),
    ],
)
def test_the_command_is_the_first_word_that_is_not_an_option(
    argv: list[str], command: str | None
) -> None:
    assert cli.command_of(argv) == command


def test_a_command_builds_only_its_own_parser() -> None:
    parser, handlers = cli.build_parser("decrypt")
    assert set(handlers) == {"decrypt"}
    assert set(cli.build_parser()[1]) == {name for _, names in cli.GROUPS for name in names}
    assert parser.parse_args(["decrypt", "-q", "in", "out"]).paths == ["in", "out"]


@pytest.mark.parametrize(
    "argv",
    [
        ["encrypt", "a", "b"],
        ["encrypt", "-q", "--debug", "-k", "k", "a", "-j", "2", "b"],
        ["encrypt", "--deb", "--", "-a", "b"],
        ["decrypt", "--range", "1:5", "x", "-o", "y"],
        ["key", "add", "--type", "user", "N", "--", "-x"],
        ["keygen", "-"],
        ["inspect", "--json", "f"],
        ["bench", "--files"],
    ],
)
def test_a_command_line_that_starts_with_its_command_parses_as_the_whole_parser_does(
    argv: list[str],
) -> None:
    """The usual command line builds no top-level parser: what it parses, and the help and
    usage errors of the command's parser, are the same as through the whole parser."""
    args, handlers = cli.parse_command_first(argv)
    parser, all_handlers = cli.build_parser()
    assert vars(args) == vars(parser.parse_args(argv))
    assert handlers[args.command] == all_handlers[args.command]


def test_the_commands_action_alone_names_the_commands_as_the_top_level_parser_does() -> None:
    whole = cli.build_parser()[0]._subparsers
    assert whole is not None
    (action,) = whole._group_actions
    alone = commands_action(PROG, **cli.commands_settings())
    assert isinstance(action, type(alone)) and action._prog_prefix == alone._prog_prefix
    assert (action.dest, action.metavar) == (alone.dest, alone.metavar)


def test_a_small_file_s_encryption_loads_no_other_command(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x" * 5000)
    key = tmp_path / "k"
    key.write_text("00" * 32)
    loaded = modules_loaded_by(["encrypt", "-q", "-k", key, tmp_path / "in", tmp_path / "out"])
    assert "kstream.engine.small" in loaded
    for other in (
        "kstream.cli.prompts",  # no passphrase to ask for
        "kstream.cli.descriptors",  # no --key-fd or --passphrase-fd
        "kstream.bench",
        "kstream.cli.info",
        "kstream.cli.completion",
        "kstream.cli.inspect",
        "kstream.api",
        "traceback",
        "tempfile",
        "platform",
        "cryptography.hazmat.backends.openssl.backend",
    ):
        assert other not in loaded, other


def test_the_kernel_backend_s_modules_load_without_importlib() -> None:
    """Every ``auto`` run loads the kernel backend's modules by name (the package's lazy
    ``__getattr__``); importlib, which a bare interpreter does not hold, stays unloaded."""
    code = (
        "import sys\nbare = 'importlib' in sys.modules\n"
        "from kstream.backends.kernel import CTR_AES, KernelBackend, KernelKey\n"
        "print(bare, 'importlib' in sys.modules, KernelBackend.__module__, CTR_AES, KernelKey)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, text=True
    ).stdout.split()
    bare, loaded, module, name = out[:4]
    # An editable install's import hook has loaded importlib before kstream runs.
    assert loaded == bare
    assert (module, name) == ("kstream.backends.kernel.backend", "ctr(aes)")
