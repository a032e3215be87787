"""The peers of ``kstream bench --files`` (:mod:`kstream.bench.peers`): their runs, the
checks of their outputs, and kstream's ratios against them. A whole run with the peers is
in test_files.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.support import AGE, TINK, TINK_MISSING

from kstream.bench import peers


def test_peers_are_medians_of_paired_ratios() -> None:
    times = {
        "kstream-openssl-enc": ("kstream encrypt", [1.0, 2.0, 3.0]),
        "age-enc": ("age -e", [2.0, 2.0, 2.0]),  # 0.5, 1.0, 1.5
        "kstream-openssl-api-file": ("API", [1.0, 1.0, 1.0]),  # Tink not measured: no row
    }
    assert peers.peer_rows(times) == [
        {
            "entry": "kstream-openssl-enc",
            "label": "kstream encrypt",
            "peer": "age-enc",
            "peer_label": "age -e",
            "ratio": 1.0,
            "ratio_min": 0.5,
            "ratio_max": 1.5,
        }
    ]


@pytest.mark.skipif(not TINK, reason=TINK_MISSING)
def test_tink_output_is_checked_by_decrypting_it(tmp_path: Path) -> None:
    peer = peers.tink_streaming_aead(256)
    assert peer is not None and peer[0] == "AES256_GCM_HKDF_1MB"
    primitive = peer[1]
    src, out, bad = tmp_path / "in", tmp_path / "out", tmp_path / "bad"
    src.write_bytes(bytes(range(256)) * 12289)  # 3 MiB and change: several segments
    assert peers.tink_file(primitive, str(src), str(out)).seconds > 0
    assert peers.tink_decrypts_to(primitive, str(out), str(src))
    blob = bytearray(out.read_bytes())
    blob[-5] ^= 1  # a tag of the last segment
    bad.write_bytes(blob)
    assert not peers.tink_decrypts_to(primitive, str(bad), str(src))
    bad.write_bytes(out.read_bytes()[: -(1 << 20)])  # the last segment cut off
    assert not peers.tink_decrypts_to(primitive, str(bad), str(src))
    other = tmp_path / "other"
    other.write_bytes(src.read_bytes() + b"x")
    assert not peers.tink_decrypts_to(primitive, str(out), str(other))


@pytest.mark.skipif(not AGE, reason="age is not installed (Debian package age)")
def test_age_runs_and_its_checks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"age peer " * 10000)
    found, missing = peers.prepare(str(tmp_path), str(src), 128)
    by_id = {p.id: p for p in found}
    assert "age: not installed (Debian package age)" not in missing
    out = tmp_path / "out"
    assert by_id["age-enc"].run(str(out), False).seconds > 0
    assert out.read_bytes() != src.read_bytes() and by_id["age-enc"].check(str(out)) is None
    assert by_id["age-dec"].run(str(out), False).seconds > 0
    assert out.read_bytes() == src.read_bytes() and by_id["age-dec"].check(str(out)) is None
    out.write_bytes(src.read_bytes() + b"x")
    assert by_id["age-dec"].check(str(out)) == f"differs from {src}"
    # An age file that decrypts, but not to the input.
    by_id["age-enc"].run(str(out), False)
    src.write_bytes(b"changed")
    assert by_id["age-enc"].check(str(out)) == f"does not decrypt to {src}"
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "age.key",
        "out",
        "src",
        "src.age",
    ]  # the check leaves nothing behind
    assert (tmp_path / "age.key").stat().st_mode & 0o077 == 0


def test_a_peer_not_installed_gets_a_line_saying_how_to_add_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "age_installed", lambda: False)
    monkeypatch.setattr(peers, "tink_streaming_aead", lambda bits: None)
    found, missing = peers.prepare(str(tmp_path), str(tmp_path / "src"), 128)
    assert found == [] and missing == [
        "age: not installed (Debian package age)",
        "Tink: not installed (pip install tink)",
    ]
    assert peers.format_peers([], missing) == [
        "",
        "peers (kstream's time / the peer's in the same round, lower is better; medians):",
        "  (age: not installed (Debian package age))",
        "  (Tink: not installed (pip install tink))",
    ]
    assert peers.format_peers([], []) == []
