"""Fuzz the peer frame decoder and session rules: ``python fuzz/fuzz_peer_frames.py --runs N``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.harness import main


def seeds() -> list[bytes]:
    import hashlib

    from chimera_tk.net.peer.protocol import (
        Ack,
        Data,
        Delete,
        Edit,
        FileDone,
        FileOffer,
        FileReject,
        Ping,
        Text,
        encode_event,
    )

    sha = hashlib.sha256(b"abcd").hexdigest()
    frames = [Text("u1", 1, "hi", reply_to="u0"), Ack("u1"), Edit("u1", "ho", 2), Delete("u1"),
              Ping(3), FileReject("u9", "no"), FileOffer("f1", "a.txt", 4, sha, "text/plain", 1),
              Data(b"abcd"), FileDone("f1")]
    stream = b"".join(encode_event(frame) for frame in frames)
    return [b"\x80" + stream, b"\x83" + stream, b"\x00" + stream[:40]]


if __name__ == "__main__":
    main("peer", seeds)
