"""Send an encrypted stream over a local TCP connection and decrypt it on arrival.

The receiver hands its asyncio.StreamReader straight to ``decrypt_stream``.
Run: python examples/socket_stream.py
"""

import asyncio
import os
from collections.abc import AsyncIterator

import kstream

PAYLOAD = os.urandom(3 * 1024 * 1024)


async def main() -> None:
    key = kstream.Key.generate(bits=192)
    received = bytearray()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for plain in kstream.decrypt_stream(reader, key=key):
            received.extend(plain)
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port)

        async def payload() -> AsyncIterator[bytes]:
            for i in range(0, len(PAYLOAD), 100_000):
                yield PAYLOAD[i : i + 100_000]

        async for piece in kstream.encrypt_stream(payload(), key=key):
            writer.write(piece)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(done.wait(), timeout=30)
    ok = bytes(received) == PAYLOAD
    print("sent", len(PAYLOAD), "bytes encrypted over TCP; round trip ok:", ok)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    kstream.run(main())  # uvloop when installed; asyncio.run(main()) works too
