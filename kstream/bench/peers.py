"""The other tools a user could pick for the job, timed in the same rounds of
``kstream bench --files`` where they are installed: ``age`` (``-e`` to an X25519 recipient,
``-d``) for the command, and Tink's streaming AEAD for the library. Each peer's output is
checked by decrypting it; kstream's time against each is a ratio like any other here (the
project states no goal against a peer: ``.ci/goals.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kstream.bench.commands import STREAM_READ, Sample, run_command
from kstream.bench.units import median, paired_ratios
from kstream.bench.workfiles import fsync_path, same_content, unlink_quietly

#: (kstream's entry, the peer's) in ``bench --files``: kstream's time / the peer's.
PEERS = [
    (f"kstream-{b}-{kind}", peer)
    for b in ("openssl", "kernel")
    for kind, peer in (("enc", "age-enc"), ("dec", "age-dec"), ("api-file", "tink-api-file"))
]

#: Tink's streaming AEAD templates nearest to kstream's format: AES-GCM segments of 1 MiB
#: under a key derived per file with HKDF (kstream: AES-CTR, GCM tags, ~1 MiB segments).
TINK_TEMPLATES = {128: "AES128_GCM_HKDF_1MB", 256: "AES256_GCM_HKDF_1MB"}


@dataclass
class Peer:
    """One peer's run of a round: (output path, measure peak RSS?) -> the sample, and the
    check of its first output (what is wrong, or None)."""

    id: str
    label: str
    run: Callable[[str, bool], Sample]
    check: Callable[[str], str | None]


def age_installed() -> bool:
    return shutil.which("age") is not None and shutil.which("age-keygen") is not None


def age_recipient(identity: str) -> str:
    """The recipient (public key) of the age identity in ``identity``, made there first
    (owner-only, as age-keygen makes it) if the file does not exist."""
    if not os.path.exists(identity):
        run_command(["age-keygen", "-o", identity])
    proc = subprocess.run(
        ["age-keygen", "-y", identity], capture_output=True, check=True, text=True
    )
    return proc.stdout.strip()


def tink_streaming_aead(key_bits: int) -> tuple[str, Any] | None:
    """(the template's name, Tink's streaming AEAD primitive with a new key of that template)
    for ``key_bits`` (Tink has no 192-bit template: the 256-bit one stands in), or None where
    the ``tink`` package is not installed."""
    try:
        import tink
        from tink import streaming_aead
    except ImportError:
        return None
    streaming_aead.register()
    name = TINK_TEMPLATES[128 if key_bits == 128 else 256]
    template = getattr(streaming_aead.streaming_aead_key_templates, name)
    return name, tink.new_keyset_handle(template).primitive(streaming_aead.StreamingAead)


def tink_file(primitive: Any, src: str, dst: str) -> Sample:
    """What a Tink user writes: the file read per MiB into Tink's encrypting stream (which
    closes the file it writes when it is closed)."""
    start = time.perf_counter()
    with open(src, "rb") as fin, primitive.new_encrypting_stream(open(dst, "wb"), b"") as enc:
        while data := fin.read(STREAM_READ):
            enc.write(data)
    fsync_path(dst)
    return Sample(time.perf_counter() - start)


def tink_decrypts_to(primitive: Any, path: str, reference: str) -> bool:
    """Whether Tink decrypts ``path`` (authenticating every segment) to ``reference``'s bytes."""
    from tink import TinkError

    try:
        with (
            open(path, "rb") as fin,
            primitive.new_decrypting_stream(fin, b"") as dec,
            open(reference, "rb") as ref,
        ):
            while data := dec.read(STREAM_READ):
                if data != ref.read(len(data)):
                    return False
            return ref.read(1) == b""
    except TinkError:
        return False


def prepare(workdir: str, src: str, key_bits: int) -> tuple[list[Peer], list[str]]:
    """The peers installed here, ready to encrypt ``src`` (and ``age -d`` to decrypt age's
    encryption of it, made now in ``workdir``), and a line for each peer that is not,
    saying how to add it."""
    peers, missing = [], []
    if age_installed():
        identity, encrypted = os.path.join(workdir, "age.key"), os.path.join(workdir, "src.age")
        recipient = age_recipient(identity)
        run_command(["age", "-e", "-r", recipient, "-o", encrypted, src])

        def age_decrypts(out: str) -> str | None:
            back = out + ".back"
            try:
                run_command(["age", "-d", "-i", identity, "-o", back, out])
                return None if same_content(back, src) else f"does not decrypt to {src}"
            finally:
                unlink_quietly(back)

        peers += [
            Peer(
                "age-enc",
                "age -e (X25519 recipient)",
                lambda out, rss: run_command(
                    ["age", "-e", "-r", recipient, "-o", out, src], None, rss
                ),
                age_decrypts,
            ),
            Peer(
                "age-dec",
                "age -d",
                lambda out, rss: run_command(
                    ["age", "-d", "-i", identity, "-o", out, encrypted], None, rss
                ),
                lambda out: None if same_content(out, src) else f"differs from {src}",
            ),
        ]
    else:
        missing.append("age: not installed (Debian package age)")
    tink = tink_streaming_aead(key_bits)
    if tink is not None:
        name, primitive = tink
        peers.append(
            Peer(
                "tink-api-file",
                f"Tink streaming AEAD, {name}",
                lambda out, rss: tink_file(primitive, src, out),
                lambda out: (
                    None if tink_decrypts_to(primitive, out, src) else f"does not decrypt to {src}"
                ),
            )
        )
    else:
        missing.append("Tink: not installed (pip install tink)")
    return peers, missing


def peer_rows(times: dict[str, tuple[str, list[float]]]) -> list[dict[str, Any]]:
    """kstream against each peer measured: ``times`` maps each entry's id to its label and
    its times, round by round; a ratio is taken within each round, then the median."""
    rows = []
    for mine, theirs in PEERS:
        if mine not in times or theirs not in times or not times[mine][1]:
            continue
        ratios = paired_ratios(times[mine][1], times[theirs][1])
        rows.append(
            {
                "entry": mine,
                "label": times[mine][0],
                "peer": theirs,
                "peer_label": times[theirs][0],
                "ratio": round(median(ratios), 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
            }
        )
    return rows


def format_peers(rows: list[dict[str, Any]], missing: list[str]) -> list[str]:
    if not rows and not missing:
        return []
    lines = [
        "",
        "peers (kstream's time / the peer's in the same round, lower is better; medians):",
    ]
    for row in rows:
        spread = ""
        if row["ratio_min"] != row["ratio_max"]:
            spread = f" (rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        lines.append(f"  {row['ratio']:>6.3f}x  {row['label']} vs {row['peer_label']}{spread}")
    return lines + [f"  ({line})" for line in missing]
