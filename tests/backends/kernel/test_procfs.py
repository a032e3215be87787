"""The /proc/crypto parser, on real captures and a hand-written AES-NI sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelsim import AESNI, UML_6_1, UML_7_2

from kstream.backends.kernel.procfs import (
    CryptoAlg,
    find_driver,
    implementations,
    kernel_pick,
    parse_proc_crypto,
    read_proc_crypto,
)


def test_parses_every_block_of_the_6_1_capture() -> None:
    algs = parse_proc_crypto(UML_6_1)
    assert len(algs) == UML_6_1.count("\nname ") + 1 == 22
    ctr = find_driver(algs, "ctr(aes-generic)")
    assert ctr == CryptoAlg(
        name="ctr(aes)",
        driver="ctr(aes-generic)",
        module="ctr",
        priority=100,
        refcnt=1,
        selftest="passed",
        internal=False,
        type="skcipher",
        is_async=False,
        blocksize=1,
        min_keysize=16,
        max_keysize=32,
        ivsize=16,
        chunksize=16,
        walksize=16,
    )
    assert ctr is not None and ctr.fields["walksize"] == "16"
    sha = find_driver(algs, "sha256-generic")
    assert sha is not None
    assert (sha.type, sha.digestsize, sha.is_async, sha.ivsize) == ("shash", 32, None, None)
    assert find_driver(algs, "no-such-driver") is None


def test_kernel_pick_on_6_1_is_the_generic_driver() -> None:
    algs = parse_proc_crypto(UML_6_1)
    ctr = kernel_pick(algs, "ctr(aes)", "skcipher")
    hmac = kernel_pick(algs, "hmac(sha256)", "hash")
    assert ctr is not None and ctr.driver == "ctr(aes-generic)"
    assert hmac is not None and hmac.driver == "hmac(sha256-generic)"
    # a hash socket cannot bind a cipher and the other way round
    assert kernel_pick(algs, "ctr(aes)", "hash") is None
    assert kernel_pick(algs, "hmac(sha256)", "skcipher") is None


def test_7_2_capture_with_statesize_and_aes_lib() -> None:
    algs = parse_proc_crypto(UML_7_2)
    assert [a.driver for a in implementations(algs, "ctr(aes)", "skcipher")] == ["ctr(aes-lib)"]
    aes = find_driver(algs, "aes-lib")
    assert aes is not None and (aes.type, aes.min_keysize, aes.max_keysize) == ("cipher", 16, 32)
    hmac = kernel_pick(algs, "hmac(sha256)", "hash")
    assert hmac is not None and (hmac.driver, hmac.priority) == ("hmac-sha256-lib", 300)


def test_aesni_sample_orders_by_priority_and_hides_internal() -> None:
    algs = parse_proc_crypto(AESNI)
    usable = implementations(algs, "ctr(aes)", "skcipher")
    assert [(a.driver, a.priority) for a in usable] == [
        ("ctr-aes-aesni", 400),
        ("ctr(aes-aesni)", 300),
        ("ctr(aes-generic)", 100),
    ]
    assert usable[0].is_async is True and usable[0].module == "aesni_intel"
    # the internal helper has its own name, and is hidden even when asked for by name
    assert implementations(algs, "__ctr(aes)", "skcipher") == []
    everything = implementations(algs, "__ctr(aes)", "skcipher", include_unusable=True)
    assert [a.driver for a in everything] == ["__ctr-aes-aesni"]
    assert everything[0].internal and not everything[0].usable
    pick = kernel_pick(algs, "ctr(aes)", "skcipher")
    assert pick is not None and pick.driver == "ctr-aes-aesni"
    hmac = kernel_pick(algs, "hmac(sha256)", "hash")
    assert hmac is not None and hmac.driver == "hmac(sha256-ni)"


def test_exact_driver_name_wins_over_priority() -> None:
    algs = parse_proc_crypto(AESNI)
    pick = kernel_pick(algs, "ctr(aes-generic)", "skcipher")
    assert pick is not None and (pick.name, pick.priority) == ("ctr(aes)", 100)
    internal = kernel_pick(algs, "__ctr-aes-aesni", "skcipher")
    assert internal is None  # user space cannot bind internal algorithms


def _block(driver: str, priority: int, selftest: str = "passed", kind: str = "skcipher") -> str:
    return (
        f"name         : ctr(aes)\ndriver       : {driver}\nmodule       : test\n"
        f"priority     : {priority}\nrefcnt       : 1\nselftest     : {selftest}\n"
        f"internal     : no\ntype         : {kind}\n"
    )


def test_ties_go_to_the_first_listed_and_untested_drivers_are_skipped() -> None:
    text = "\n".join(
        [
            _block("ctr-untested", 900, selftest="unknown"),
            _block("ctr-first", 200),
            _block("ctr-second", 200),
            _block("ctr-lsk", 150, kind="lskcipher"),
            _block("ctr-aead", 999, kind="aead"),
        ]
    )
    algs = parse_proc_crypto(text)
    assert [a.driver for a in implementations(algs, "ctr(aes)", "skcipher")] == [
        "ctr-first",
        "ctr-second",
        "ctr-lsk",
    ]
    pick = kernel_pick(algs, "ctr(aes)", "skcipher")
    assert pick is not None and pick.driver == "ctr-first"
    # without a socket type every type counts
    assert implementations(algs, "ctr(aes)")[0].driver == "ctr-aead"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n\n",
        "garbage without a colon\n",
        "name : only-a-name\n\n",
        "driver : only-a-driver\npriority : high\n",
    ],
)
def test_odd_input_yields_no_records_and_no_error(text: str) -> None:
    assert parse_proc_crypto(text) == []


def test_missing_trailing_blank_line_and_bad_numbers() -> None:
    text = "name : x\ndriver : x-drv\npriority : ?\nrefcnt : 3\ninternal : yes\nasync : yes"
    [alg] = parse_proc_crypto(text)
    assert (alg.priority, alg.refcnt, alg.internal, alg.is_async) == (0, 3, True, True)
    assert (alg.module, alg.selftest, alg.type) == ("kernel", "unknown", "unknown")


def test_values_may_contain_colons() -> None:
    [alg] = parse_proc_crypto("name : a:b\ndriver : d : e\n")
    assert (alg.name, alg.driver) == ("a:b", "d : e")


def test_read_proc_crypto(tmp_path: Path) -> None:
    path = tmp_path / "crypto"
    path.write_text(AESNI)
    assert len(read_proc_crypto(str(path))) == 9
    assert read_proc_crypto(str(tmp_path / "missing")) == []
