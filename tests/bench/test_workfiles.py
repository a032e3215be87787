"""The files of ``kstream bench --files`` (:mod:`kstream.bench.workfiles`): where they go,
the generated input, and the check that an output decrypts to the input.
"""

from __future__ import annotations

import os
from pathlib import Path

from kstream.bench import workfiles


def test_default_dir_and_filesystem_type() -> None:
    directory = workfiles.default_dir()
    assert os.path.isdir(directory)
    if os.path.isdir("/dev/shm"):
        assert directory == "/dev/shm"
        assert workfiles.filesystem_type("/dev/shm") == "tmpfs"
    assert workfiles.filesystem_type("/proc") == "proc"


def test_generated_file_has_no_repeated_mib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    workfiles.generate_file(str(path), (3 << 20) + 7)
    data = path.read_bytes()
    assert len(data) == (3 << 20) + 7
    blocks = {data[i : i + (1 << 20)] for i in range(0, 3 << 20, 1 << 20)}
    assert len(blocks) == 3


def test_decrypts_to_checks_content_and_tags(tmp_path: Path) -> None:
    import asyncio

    import kstream

    plain, enc, key_path = tmp_path / "p", tmp_path / "c", tmp_path / "k"
    plain.write_bytes(os.urandom(3 << 20))
    kstream.Key.generate(128).save(key_path)
    asyncio.run(
        kstream.encrypt_file(plain, enc, key=kstream.Key.from_file(key_path), backend="openssl")
    )
    assert workfiles.decrypts_to(str(enc), str(plain), str(key_path))
    other = tmp_path / "o"
    changed = bytearray(plain.read_bytes())
    changed[-1] ^= 1
    other.write_bytes(changed)
    assert not workfiles.decrypts_to(str(enc), str(other), str(key_path))
    data = bytearray(enc.read_bytes())
    data[100] ^= 1
    enc.write_bytes(data)
    assert not workfiles.decrypts_to(str(enc), str(plain), str(key_path))
