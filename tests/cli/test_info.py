"""``kstream backends``, ``selftest`` and ``demo`` (kstream.cli.info)."""

from __future__ import annotations

import json
import re

import pytest
from clirun import kst, run_main
from kernelsim import host_has_af_alg


def test_demo() -> None:
    out = kst("demo").stdout.decode()
    assert "round trip:  OK" in out and "4b535452 45414d1a" in out
    assert "tampering:   one flipped bit is refused: authentication failed" in out
    # Where the key went, and that it does not outlive the demo.
    found = re.search(
        r"^key: .*, saved to (/\S+/demo\.key) \(mode 0600; the demo removes "
        r"(/\S+) when it ends\)$",
        out,
        re.MULTILINE,
    )
    assert found is not None, out
    assert found[1].startswith(found[2] + "/")
    assert (
        "drivers:     async iterable, fd stream (pipe), parallel ranges, small-file path: "
        "14 of 14 runs OK"
    ) in out


def test_demo_fails_when_one_driver_is_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's own round trip takes one path; every other path is run too, so a break
    in any of them fails the demo (as cryptography 51 broke them all)."""
    import kstream.engine.small

    def broken(*args: object, **kwargs: object) -> bool:
        raise ValueError("the small-file path is broken")

    monkeypatch.setattr(kstream.engine.small, "process_small_file", broken)
    code, out, _ = run_main(capsys, "demo")
    assert code == 1
    assert "round trip:  OK" in out
    assert (
        "drivers:     async iterable, fd stream (pipe), parallel ranges, small-file path: "
        "FAILED: small-file path, encrypt (small file): the small-file path is broken; "
        "small-file path, decrypt (small file): "
    ) in out


def test_backends_json_names_what_auto_picks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "backends", "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["auto"] in ("kernel", "openssl")


@pytest.mark.skipif(host_has_af_alg(), reason="this host has AF_ALG")
def test_backends_on_this_host_without_af_alg() -> None:
    """The command as a user runs it here: nothing it cannot use is offered as usable."""
    text = kst("backends").stdout.decode()
    assert "  AF_ALG sockets:  no (EAFNOSUPPORT: " in text
    assert "key by serial:   no (no AF_ALG: socket(AF_ALG) failed with EAFNOSUPPORT)" in text
    assert "kernel's pick" not in text and "key by serial:   yes" not in text
    assert text.count("  not usable here: EAFNOSUPPORT: ") == 2
    assert "auto picks: openssl" in text
    report = json.loads(kst("backends", "--json").stdout)
    assert report["kernel"]["af_alg"]["available"] is False
    assert report["kernel"]["key_by_serial"]["supported"] is False
    assert [(a["usable"], a["picked"], a["drivers"]) for a in report["algorithms"]] == [
        (False, None, []),
        (False, None, []),
    ]
