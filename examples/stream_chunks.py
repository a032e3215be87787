"""Encrypt data as it is produced, and decrypt it again, with async iterators.

``encrypt_stream`` accepts any async iterable of bytes (or an asyncio.StreamReader) and
yields the same bytes ``encrypt_file`` would write, so the output can go to a socket, an
HTTP upload or a queue. Run: python examples/stream_chunks.py
"""

import hashlib
from collections.abc import AsyncIterator

import kstream


async def produce_log_lines() -> AsyncIterator[bytes]:
    for i in range(50_000):
        yield f"{i:06d} something happened\n".encode()


async def main() -> None:
    key = kstream.Key.generate()
    digest_in = hashlib.sha256()

    async def tee() -> AsyncIterator[bytes]:
        async for line in produce_log_lines():
            digest_in.update(line)
            yield line

    encrypted = [piece async for piece in kstream.encrypt_stream(tee(), key=key)]
    print("ciphertext pieces:", len(encrypted), "bytes:", sum(map(len, encrypted)))

    async def replay() -> AsyncIterator[bytes | bytearray]:
        for piece in encrypted:
            yield piece

    digest_out = hashlib.sha256()
    async for plain in kstream.decrypt_stream(replay(), key=key):
        digest_out.update(plain)
    ok = digest_in.digest() == digest_out.digest()
    print("round trip ok:", ok)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    kstream.run(main())  # uvloop when installed; asyncio.run(main()) works too
