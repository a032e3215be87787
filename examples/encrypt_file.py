"""Encrypt and decrypt a file with the coroutine API.

Run: python examples/encrypt_file.py
"""

import os
import tempfile

import kstream


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        key_path = os.path.join(tmp, "secret.key")
        kstream.Key.generate(bits=256).save(key_path)  # hex text, mode 0600
        key = kstream.Key.from_file(key_path)
        print("key:", key)  # the repr never shows key bytes

        plain = os.path.join(tmp, "report.txt")
        with open(plain, "wb") as f:
            f.write(b"quarterly numbers\n" * 10_000)

        await kstream.encrypt_file(plain, plain + ".kst", key=key)
        await kstream.decrypt_file(plain + ".kst", plain + ".out", key=key)

        with open(plain, "rb") as a, open(plain + ".out", "rb") as b:
            same = a.read() == b.read()
        print("encrypted size:", os.path.getsize(plain + ".kst"))
        print("round trip ok:", same)
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    kstream.run(main())  # uvloop when installed; asyncio.run(main()) works too
