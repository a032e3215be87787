"""The /proc/crypto parser, on real captures and a hand-written AES-NI sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from kstream.procfs import (
    CryptoAlg,
    find_driver,
    implementations,
    kernel_pick,
    parse_proc_crypto,
    read_proc_crypto,
)

#: /proc/crypto of User Mode Linux 6.1.176 (Debian 12), captured verbatim after binding
#: skcipher ctr(aes) and hash hmac(sha256) with af_alg, algif_skcipher, algif_hash, ctr and
#: hmac loaded.
UML_6_1 = """\
name         : hmac(sha256)
driver       : hmac(sha256-generic)
module       : hmac
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : ctr(aes)
driver       : ctr(aes-generic)
module       : ctr
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : xxhash64
driver       : xxhash64-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 32
digestsize   : 8

name         : lzo-rle
driver       : lzo-rle-scomp
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : scomp

name         : lzo-rle
driver       : lzo-rle-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : compression

name         : lzo
driver       : lzo-scomp
module       : kernel
priority     : 0
refcnt       : 3
selftest     : passed
internal     : no
type         : scomp

name         : lzo
driver       : lzo-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : compression

name         : crct10dif
driver       : crct10dif-generic
module       : kernel
priority     : 100
refcnt       : 2
selftest     : passed
internal     : no
type         : shash
blocksize    : 1
digestsize   : 2

name         : crc32c
driver       : crc32c-generic
module       : kernel
priority     : 100
refcnt       : 2
selftest     : passed
internal     : no
type         : shash
blocksize    : 1
digestsize   : 4

name         : aes
driver       : aes-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : blake2b-512
driver       : blake2b-512-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 64

name         : blake2b-384
driver       : blake2b-384-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 48

name         : blake2b-256
driver       : blake2b-256-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 32

name         : blake2b-160
driver       : blake2b-160-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 20

name         : sha224
driver       : sha224-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 28

name         : sha256
driver       : sha256-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : sha1
driver       : sha1-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 20

name         : md5
driver       : md5-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 16

name         : ecb(cipher_null)
driver       : ecb-cipher_null
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 0
max keysize  : 0
ivsize       : 0
chunksize    : 1
walksize     : 1

name         : digest_null
driver       : digest_null-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 1
digestsize   : 0

name         : compress_null
driver       : compress_null-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : compression

name         : cipher_null
driver       : cipher_null-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 1
min keysize  : 0
max keysize  : 0

"""

#: The ctr(aes), aes, hmac(sha256) blocks of User Mode Linux 7.2.7 (Debian unstable),
#: captured the same way: AES is now "aes-lib" and blocks end with a statesize line.
UML_7_2 = """\
name         : ctr(aes)
driver       : ctr(aes-lib)
module       : ctr
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16
statesize    : 0

name         : aes
driver       : aes-lib
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : hmac(sha256)
driver       : hmac-sha256-lib
module       : kernel
priority     : 300
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

"""

#: Hand-written after the real format of an x86-64 6.x kernel with aesni_intel and
#: sha256_ssse3 loaded, where something has also bound ctr(aes-aesni) and ctr(aes-generic):
#: the dedicated AES-NI CTR driver (async, a SIMD wrapper around an internal helper), two
#: ctr template instances, and the internal helper that user space cannot bind.
AESNI = """\
name         : ctr(aes)
driver       : ctr(aes-generic)
module       : ctr
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : ctr(aes)
driver       : ctr(aes-aesni)
module       : ctr
priority     : 300
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : hmac(sha256)
driver       : hmac(sha256-ni)
module       : hmac
priority     : 250
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : sha256
driver       : sha256-ni
module       : sha256_ssse3
priority     : 250
refcnt       : 2
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : ctr(aes)
driver       : ctr-aes-aesni
module       : aesni_intel
priority     : 400
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : yes
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : __ctr(aes)
driver       : __ctr-aes-aesni
module       : aesni_intel
priority     : 400
refcnt       : 2
selftest     : passed
internal     : yes
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : aes
driver       : aes-aesni
module       : aesni_intel
priority     : 300
refcnt       : 2
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : aes
driver       : aes-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : hmac(sha256)
driver       : hmac(sha256-generic)
module       : hmac
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32
"""


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
