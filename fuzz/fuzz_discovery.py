"""Fuzz the discovery datagram codec and node state: ``python fuzz/fuzz_discovery.py --runs N``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.harness import main


def seeds() -> list[bytes]:
    return [b"1:2002", b"1:2002:50052", b"1:9223372036854775807:65535:abc_XYZ-09",
            b"0:2002:50052:abc", b"1:1:1:" + b"x" * 32]


if __name__ == "__main__":
    main("discovery", seeds)
