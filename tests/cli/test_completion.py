"""``kstream completion bash|zsh`` and ``kstream man`` (kstream.cli.completion): scripts and
a manual page generated from the parser, checked by the shells and by groff themselves."""

from __future__ import annotations

import argparse
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import fails, kst
from screen import Keyboard

from kstream.cli import main as cli
from kstream.cli.completion import manual_page, walk


def every_option(parser: argparse.ArgumentParser) -> set[str]:
    return {s for each in walk(parser) for a in each._actions for s in a.option_strings}


def every_command(parser: argparse.ArgumentParser) -> set[str]:
    return {each.prog for each in walk(parser)} - {"kstream"}


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "kstream.bash"
    path.write_bytes(kst("completion", "bash").stdout)
    return path


# --------------------------------------------------------------------------- bash

#: Completes the words given as arguments with the function the script registered for
#: ``kstream``, as bash would on <TAB>; prints one candidate a line.
COMPLETE = r"""
source "$1" || exit 9
shift
fn=$(complete -p kstream | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
COMPREPLY=()
"$fn" kstream "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(script: Path, cwd: Path, *words: str) -> set[str]:
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", COMPLETE, "bash", str(script), "kstream", *words],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
        check=True,
    )
    assert proc.stderr == ""
    return set(proc.stdout.split())


def test_the_bash_script_sources_cleanly(bash_script: Path) -> None:
    proc = subprocess.run(
        [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            'set -u; source "$1" && complete -p kstream',
            "bash",
            str(bash_script),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("complete ") and proc.stdout.rstrip().endswith(" kstream")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["enc"], {"encrypt"}),
        (["k"], {"key", "keygen"}),
        (
            [""],
            {
                "encrypt",
                "decrypt",
                "keygen",
                "inspect",
                "backends",
                "selftest",
                "demo",
                "key",
                "bench",
                "completion",
                "man",
            },
        ),
        (["key", ""], {"add", "gen", "load", "list", "rm"}),
        (["encrypt", "--back"], {"--backend"}),
        (["encrypt", "--backend", ""], {"auto", "kernel", "openssl"}),
        (["key", "add", "NAME", "--type", ""], {"logon", "user"}),
        (["completion", ""], {"bash", "zsh"}),
        (["encrypt", "al"], {"alpha.txt"}),  # FILE: files
        (["encrypt", "alpha.txt", "-k", "b"], {"beta.key"}),  # a key file: files
        (["encrypt", "alpha.txt", "-k", "beta.key", "s"], {"sub"}),  # OUT after an option
        (["key", "add", "NAME", "--type", "user", "be"], {"beta.key"}),
        (["encrypt", "--output-dir", ""], {"sub"}),  # a directory: only those
    ],
)
def test_bash_completes_commands_options_choices_and_files(
    bash_script: Path, tmp_path: Path, words: list[str], expected: set[str]
) -> None:
    (tmp_path / "alpha.txt").touch()
    (tmp_path / "beta.key").touch()
    (tmp_path / "sub").mkdir()
    assert complete(bash_script, tmp_path, *words) == expected


def test_the_bash_script_knows_every_command_and_option(bash_script: Path) -> None:
    text = bash_script.read_text()
    parser = cli.build_parser()[0]
    words = set(text.replace("(", " ").replace(")", " ").split())
    assert every_option(parser) <= words
    for command in every_command(parser):
        assert command.split()[-1] in words, command


class Shell(Keyboard):
    """An interactive shell on a fresh pty: where a person presses <TAB>."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, "TERM": "dumb", **env},
        )
        os.close(slave)
        self.screen = b""

    def completes_a_command_and_an_option(self) -> None:
        """'kstream enc<TAB>' becomes 'kstream encrypt ', then '--backe<TAB>' '--backend '."""
        self.type(b"kstream enc\t")
        self.expect(b"kstream encrypt ")
        self.type(b"--backe\t")
        self.expect(b"--backend ")

    def close(self) -> None:
        self.type(b"\x15exit\n")  # ^U clears the line
        self.proc.wait(timeout=10)
        os.close(self.master)


def test_tab_in_an_interactive_bash_completes_the_command(
    bash_script: Path, tmp_path: Path
) -> None:
    """What a person sees: in a terminal, 'kstream enc<TAB>' becomes 'kstream encrypt '."""
    rc = tmp_path / "rc"
    rc.write_text(f"PS1='$ '\nsource {bash_script}\n")
    shell = Shell(
        ["bash", "--noprofile", "--rcfile", str(rc), "-i"], tmp_path, {"INPUTRC": "/dev/null"}
    )
    try:
        shell.expect(b"$ ")
        shell.completes_a_command_and_an_option()
    finally:
        shell.close()


# --------------------------------------------------------------------------- zsh


def test_the_zsh_script_is_valid_zsh(tmp_path: Path) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed: the zsh script's syntax is not checked")
    script = tmp_path / "_kstream"
    script.write_bytes(kst("completion", "zsh").stdout)
    text = script.read_text()
    assert text.startswith("#compdef kstream")
    proc = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert every_option(cli.build_parser()[0]) <= set(re.findall(r"--?[A-Za-z][\w-]*", text))


def test_tab_in_an_interactive_zsh_completes_the_command(tmp_path: Path) -> None:
    """What a person sees in zsh: 'kstream enc<TAB>' becomes 'kstream encrypt ', and an
    option completes the same way, once the script is on $fpath and compinit has run."""
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed: its completion is not tried")
    (tmp_path / "_kstream").write_bytes(kst("completion", "zsh").stdout)
    shell = Shell([zsh, "-f", "-i"], tmp_path, {})
    try:
        shell.type(
            f"PS1='% '; fpath=({tmp_path} $fpath); autoload -Uz compinit; "
            "compinit -u -D; echo READY\n".encode()
        )
        shell.expect(b"READY\r\n")
        shell.completes_a_command_and_an_option()
    finally:
        shell.close()


def test_an_unknown_shell_is_a_usage_error() -> None:
    fails("completion", "fish", code=2, match="argument SHELL: invalid choice: 'fish'")


def test_only_the_completion_command_imports_shtab(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom kstream.cli.main import main\n"
        "main(['man'])\nprint('shtab' in sys.modules, file=sys.stderr)\n"
        "main(['completion', 'bash'])\nprint('shtab' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stderr.split() == ["False", "True"]


# --------------------------------------------------------------------------- man page


def test_the_manual_page_has_every_command_and_option() -> None:
    parser = cli.build_parser()[0]
    page = manual_page(parser)
    assert page.startswith(".TH KSTREAM 1 ")
    for command in every_command(parser):
        assert f'.SS "{command}"\n' in page, command
    for option in every_option(parser):
        assert f"\\fB{option.replace('-', chr(92) + '-')}" in page, option
    assert '.SH "EXIT STATUS"' in page and "130  interrupted" in page


def test_groff_renders_it_without_a_warning(tmp_path: Path) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed: the page is checked as text only")
    page = tmp_path / "kstream.1"
    page.write_bytes(kst("man").stdout)
    proc = subprocess.run(
        [groff, "-man", "-Tutf8", "-P-cbou", "-ww", "-rLL=100n", str(page)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()
    text = proc.stdout.decode()
    text = text.replace("\u2212", "-").replace("\u2010", "-")  # minus signs, hyphens
    assert "kstream - encrypt and decrypt files and pipes with AES-CTR" in text
    for option in every_option(cli.build_parser()[0]):
        assert f" {option}" in text, option
    assert "Linux \u2265 6.2" in text  # non-ASCII survives as itself
