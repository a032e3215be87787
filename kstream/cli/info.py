"""``kstream backends``, ``selftest`` and ``demo``: what kstream can do on this machine.

They touch no user data, so they share none of the encrypt/decrypt options; the reports
themselves are built by :mod:`kstream.backends.report` and :mod:`kstream.selftest`, imported only
when asked for so that other commands do not pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

from kstream.errors import KstreamError
from kstream.format import HEADER_SIZE
from kstream.keys.key import Key


def add_info_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream backends``, ``selftest`` and ``demo`` on the top-level subparsers."""
    p = sub.add_parser(
        "backends", parents=[common], help="list backends, kernel drivers and what auto picks"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "selftest", parents=[common], help="known-answer tests on every backend and driver"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser(
        "demo", parents=[common], help="generate a key, encrypt and decrypt sample data, show it"
    )


def cmd_backends(args: argparse.Namespace) -> int:
    from kstream.backends.report import backends_report, format_backends_text

    report = backends_report()
    print(json.dumps(report, indent=2) if args.json else format_backends_text(report))
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from kstream.selftest import format_table, run_selftest

    report = run_selftest()
    print(json.dumps(report.to_json(), indent=2) if args.json else format_table(report))
    return 0 if report.ok else 1


SAMPLE = (
    b"kstream demo: this text is encrypted with AES-CTR, streamed in 63 KiB chunks,\n"
    b"and decrypted again. The ciphertext starts with a 32-byte header.\n"
)


def _every_driver() -> bool:
    """The file rows of ``kstream selftest`` (every driver an ``encrypt`` or ``decrypt`` may
    take, each way), as one line; False if any failed."""
    from kstream.selftest_paths import path_rows

    rows = path_rows("auto")
    failed = [
        f"{feed} ({vector}): {detail}" for vector, feed, status, detail in rows if status != "ok"
    ]
    drivers = sorted({feed.partition(",")[0] for _, feed, _, _ in rows})
    print(
        f"drivers:     {', '.join(drivers)}: "
        + (f"{len(rows)} of {len(rows)} runs OK" if not failed else f"FAILED: {'; '.join(failed)}")
    )
    return not failed


def cmd_demo(args: argparse.Namespace) -> int:
    from kstream.api import decrypt_file, encrypt_file
    from kstream.cli.runner import run

    with tempfile.TemporaryDirectory(prefix="kstream-demo-") as tmp:
        key_path = os.path.join(tmp, "demo.key")
        plain = os.path.join(tmp, "sample.txt")
        enc = os.path.join(tmp, "sample.txt.kst")
        dec = os.path.join(tmp, "sample.decrypted.txt")
        data = SAMPLE * 4000  # ~560 KiB: several 63 KiB chunks
        with open(plain, "wb") as out:
            out.write(data)
        Key.generate(256).save(key_path)
        key = Key.from_file(key_path)
        used: list[str] = []

        async def go() -> None:
            await encrypt_file(plain, enc, key=key, notify=used.append)
            await decrypt_file(enc, dec, key=key, notify=used.append)

        run(go())
        with open(enc, "rb") as f:
            head = f.read(HEADER_SIZE + 16)
        with open(dec, "rb") as f:
            back = f.read()
        print(
            f"key:         {key!r}, saved to {key_path} (mode 0600; the demo removes "
            f"{tmp} when it ends)"
        )
        print(f"plaintext:   {len(data)} bytes, starting {data[:40]!r}")
        print(
            f"ciphertext:  {os.path.getsize(enc)} bytes = {HEADER_SIZE}-byte header + "
            "AES-CTR body in authenticated segments (20 bytes of framing and tag each)"
        )
        print(f"header:      {head[:HEADER_SIZE].hex(' ', 4)}")
        print(f"body starts: {head[HEADER_SIZE:].hex(' ', 4)}")
        for line in dict.fromkeys(used):
            print(f"note:        {line}")
        ok = back == data
        print(f"round trip:  {'OK, decrypted text equals the original' if ok else 'MISMATCH'}")
        ok = _every_driver() and ok
        tampered = os.path.join(tmp, "tampered.kst")
        with open(enc, "rb") as src, open(tampered, "wb") as dst:
            blob = bytearray(src.read())
            blob[HEADER_SIZE + 1000] ^= 1  # flip one bit of the ciphertext
            dst.write(blob)
        try:
            run(decrypt_file(tampered, os.path.join(tmp, "t.out"), key=key, notify=lambda _: None))
            print("tampering:   NOT DETECTED")
            return 1
        except KstreamError as exc:
            print(f"tampering:   one flipped bit is refused: {exc}")
        return 0 if ok else 1
