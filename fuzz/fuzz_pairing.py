"""Fuzz the pairing exchange (both sides): ``python fuzz/fuzz_pairing.py --runs N``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.harness import main


def seeds() -> list[bytes]:
    import json
    import struct

    def frame(message: dict) -> bytes:
        payload = json.dumps(message).encode()
        return struct.pack(">I", len(payload)) + payload

    confirm, cancel = frame({"type": "confirm"}), frame({"type": "cancel", "reason": "no"})
    identify = frame({"type": "identify", "certificate": "-----BEGIN CERTIFICATE-----\nMII=\n"
                      "-----END CERTIFICATE-----\n", "name": "x", "signature": "AAAA"})
    return [b"\x03" + confirm + confirm, b"\x03" + cancel, b"\x00" + identify,
            b"\x01" + frame({"type": "challenge", "v": 1, "nonce": "00" * 32, "name": "n"})]


if __name__ == "__main__":
    main("pairing", seeds)
