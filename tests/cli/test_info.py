"""``kstream backends``, ``selftest`` and ``demo`` (kstream.cli.info)."""

from __future__ import annotations

import json

import pytest
from clirun import kst, run_main


def test_demo() -> None:
    out = kst("demo").stdout.decode()
    assert "round trip:  OK" in out and "4b535452 45414d1a" in out
    assert "tampering:   one flipped bit is refused: authentication failed" in out


def test_backends_json_names_what_auto_picks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "backends", "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["auto"] in ("kernel", "openssl")
