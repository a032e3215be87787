"""Every code block of README.md and docs/*.md meant to run runs as written, so that no
snippet rots.

Which blocks: every fenced block tagged ``sh`` or ``python`` (untagged blocks are usage
text, hex dumps and sample output; no other tag is allowed, so that none escapes by its
tag). Each runs on its own, in a fresh temporary directory that holds what the examples
take as given:

- ``backup.key``, made as the README says (``kstream keygen --bits 256 backup.key``), unless
  the block makes it itself;
- the user's files the examples name: ``photos.tar``, ``photos/``, ``dir/``, ``a.jpg``,
  ``b.jpg``, ``notes.txt``;
- ``kstream`` on PATH (this interpreter's venv), and an ``ssh`` stand-in that runs its
  command here (``ssh host 'cat > f'`` becomes ``sh -c 'cat > f'``).

Shell blocks run in a pseudo-terminal under ``bash -e -o pipefail``: a passphrase prompt
(``kstream: enter passphrase:``) is answered as a person would, on the terminal. In a
transcript (lines starting with ``$ ``) those lines are the commands and the other lines
are what the terminal must show, in that order. Python blocks run with this interpreter.
A block passes when it exits 0, shows no ``kstream: error``, leaves the user's files as they
were (an example that decrypts back over its input fails here), and every file it restores
(``restored.tar``, ``restored/X``) equals the original.

Markers, an HTML comment on the line before a block (invisible on GitHub):

- ``<!-- readme-test: skip: REASON -->``: the block cannot run here; REASON is the skip
  reason pytest shows. Kept for what truly cannot: the kernel keyring and AF_ALG, the test
  suite itself, benchmarks and fuzzing that take minutes to hours.
- ``<!-- readme-test: in a copy of the repository -->``: the block installs kstream from the
  source tree (``pip install .``); it runs in a copy of the repository's tracked files.

Test ids name the file and the line of the block's opening fence: ``docs/keys.md-line34``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import tarfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Every file whose blocks run: the README first, then docs/ in name order.
FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
PASSPHRASE = b"correct horse battery staple"
TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    source: str  # the file, relative to the repository: README.md, docs/keys.md
    line: int  # of the opening fence
    lang: str
    text: str
    marker: str | None

    @property
    def transcript(self) -> bool:
        return any(ln.startswith("$ ") for ln in self.text.splitlines())

    def script(self) -> str:
        if not self.transcript:
            return self.text
        return "\n".join(ln[2:] for ln in self.text.splitlines() if ln.startswith("$ ")) + "\n"

    def shown(self) -> list[str]:
        """A transcript's lines that are not commands: what the terminal shows."""
        if not self.transcript:
            return []
        return [
            ln for ln in self.text.splitlines() if ln.strip() and not ln.startswith(("$ ", "#"))
        ]

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"


def source_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def blocks(path: Path) -> list[Block]:
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if fence is None:
            i += 1
            continue
        end = lines.index("```", i + 1)
        before = lines[i - 1] if i else ""
        marker = MARKER.fullmatch(before.strip())
        assert fence.group(1) in ("", "sh", "python"), (
            f"{source_name(path)} line {i + 1}: fence tag {fence.group(1)!r}: tag a block "
            "sh or python to run it, or leave it untagged for output and usage text"
        )
        if fence.group(1) in ("sh", "python"):
            found.append(
                Block(
                    source_name(path),
                    i + 1,
                    fence.group(1),
                    "\n".join(lines[i + 1 : end]) + "\n",
                    marker.group(1) if marker else None,
                )
            )
        i = end + 1
    return found


BLOCKS = [b for path in FILES for b in blocks(path)]


def skipped(found: list[Block]) -> list[Block]:
    return [b for b in found if b.marker and b.marker.startswith("skip")]


def test_the_readme_has_runnable_blocks_and_few_skips() -> None:
    readme = [b for b in BLOCKS if b.source == "README.md"]
    assert sum(b.lang == "python" for b in readme) >= 1
    assert len(readme) - len(skipped(readme)) >= 3 and len(skipped(readme)) <= 2, [
        b.where for b in skipped(readme)
    ]


def test_the_docs_have_runnable_blocks_and_few_skips() -> None:
    """Skips are for what truly cannot run here (see the module's docstring), not a way out."""
    docs = [b for b in BLOCKS if b.source != "README.md"]
    assert sum(b.lang == "python" for b in docs) >= 1
    assert len(docs) - len(skipped(docs)) >= 5 and len(skipped(docs)) <= 6, [
        b.where for b in skipped(docs)
    ]


def test_every_marker_is_known() -> None:
    for b in BLOCKS:
        assert b.marker in (None, "in a copy of the repository") or re.fullmatch(
            r"skip: \S.*", b.marker
        ), f"{b.where}: unknown marker {b.marker!r}"


def test_the_readme_holds_the_test_command_that_ci_runs() -> None:
    """``.ci/run`` runs the test command "exactly as in README.md": the two must agree."""
    [command] = [
        b.text.strip()
        for b in BLOCKS
        if b.source == "README.md" and "-m pytest" in b.text and "pip install" in b.text
    ]
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


# --- the directory a block runs in ----------------------------------------------------------------


def _write_tree(base: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)


def user_files(home: Path) -> dict[str, bytes]:
    """The files the examples take as the user's, written into ``home``: their contents."""

    def rnd(n: int) -> bytes:
        return hashlib.shake_256(str(n).encode()).digest(n)

    files = {
        "a.jpg": rnd(40_000),
        "b.jpg": rnd(3_000),
        "notes.txt": b"shopping list\n",
        "photos/beach.jpg": rnd(1_500_000),
        "photos/tree.jpg": rnd(7_000),
        "dir/x.txt": b"x\n",
        "dir/sub/y.bin": rnd(2_100_000),
    }
    _write_tree(home, files)
    with tarfile.open(home / "photos.tar", "w") as tar:
        tar.add(home / "photos", arcname="photos")
    files["photos.tar"] = (home / "photos.tar").read_bytes()
    return files


def environment(home: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "kstream").exists():
        pytest.fail(
            f"no kstream command next to {sys.executable}: install the package "
            "(pip install -e .) into the interpreter that runs the tests"
        )
    stubs = home.parent / "stubs"
    stubs.mkdir(exist_ok=True)
    (stubs / "ssh").write_text(
        '#!/bin/sh\n# ssh HOST COMMAND: run COMMAND here\nshift\nexec sh -c "$*"\n'
    )
    (stubs / "ssh").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSTREAM_", "PYTEST"))}
    env.update(
        PATH=f"{stubs}:{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        TERM="xterm",
        COLUMNS="120",
        LINES="40",
    )
    return env


def repository_copy(target: Path) -> Path:
    """The repository's tracked files as they are in this working tree (not a commit)."""
    names = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


# --- running a block in a terminal ---------------------------------------------------------------


def in_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal and stdin/out/err;
    answer passphrase prompts; return the exit status and everything the screen got."""
    # Not pty.fork(): forking this multi-threaded process (Python 3.14 warns of it) could
    # leave the child holding a lock; subprocess starts the child and execs it at once.
    fd, slave = os.openpty()

    def take_terminal() -> None:  # after setsid: the pty becomes the controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(slave)
    screen, answered = b"", 0
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child and all its children are gone
                    break
                if not chunk:
                    break
                screen += chunk
                while screen.count(b"passphrase:") > answered:
                    answered += 1
                    time.sleep(0.1)  # the prompt turns echo off just before reading
                    os.write(fd, PASSPHRASE + b"\n")
        else:
            proc.kill()
            pytest.fail(
                f"{argv} still running after {TIMEOUT} s; screen:\n"
                f"{screen.decode(errors='replace')}"
            )
    finally:
        status = proc.wait()
        os.close(fd)
    return status, screen.decode(errors="replace").replace("\r", "")


def check_restored(home: Path, originals: dict[str, bytes]) -> None:
    for name, data in originals.items():
        assert (home / name).read_bytes() == data, f"{name} changed"
    if (home / "restored.tar").exists():
        assert (home / "restored.tar").read_bytes() == originals["photos.tar"]
    if (home / "restored").is_dir():
        for f in (home / "restored").iterdir():
            assert f.read_bytes() == originals[f.name], f


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.source}-line{b.line}")
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.marker is not None and block.marker.startswith("skip"):
        pytest.skip(f"{block.where}: {block.marker[len('skip: ') :]}")
    home = tmp_path / "home"
    home.mkdir()
    env = environment(home)
    originals: dict[str, bytes] = {}
    if block.marker == "in a copy of the repository":
        cwd = repository_copy(tmp_path / "repo")
    else:
        cwd = home
        originals = user_files(home)
        if "keygen" not in block.text:  # the key, made as the README says
            subprocess.run(
                ["kstream", "keygen", "--bits", "256", "backup.key"],
                cwd=home,
                env=env,
                check=True,
                capture_output=True,
            )
    if block.lang == "python":
        (tmp_path / "snippet.py").write_text(block.text)
        argv = [sys.executable, str(tmp_path / "snippet.py")]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", block.script()]
    code, screen = in_terminal(argv, cwd, env)
    assert code == 0, f"{block.where} exited {code}; screen:\n{screen}"
    assert "kstream: error" not in screen and "Traceback" not in screen, screen
    at = 0
    for line in block.shown():  # a transcript's output, in order
        found = screen.find(line, at)
        assert found >= 0, f"{block.where}: {line!r} not shown; screen:\n{screen}"
        at = found + len(line)
    check_restored(home, originals)


def test_the_library_example_runs_in_an_empty_directory(tmp_path: Path) -> None:
    """docs/library.md's first Python block, as a new user runs it: no key, no data yet."""
    [block] = [b for b in BLOCKS if b.source == "docs/library.md" and b.lang == "python"][:1]
    (tmp_path / "example.py").write_text(block.text)
    work = tmp_path / "empty"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "example.py")],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (work / "restored.tar").read_bytes() == (work / "photos.tar").read_bytes()
    assert "bytes of plaintext" in proc.stdout
