"""The sender's ring of reused chunk buffers (chimera_tk/net/peer/chunks.py)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.net.peer.channel import HIGH_WATER
from chimera_tk.net.peer.chunks import ChunkReader
from tests.test_peer_link import ALICE, Node, running_pair

MIB = 1 << 20


class _Trickle(io.RawIOBase):
    """A file that answers readinto with at most 1000 bytes, as a slow device may."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = min(1000, len(buffer), len(self._data) - self._at)
        buffer[:count] = self._data[self._at:self._at + count]
        self._at += count
        return count


def test_chunks_come_whole_in_order_and_the_ring_covers_the_high_water_mark() -> None:
    data = os.urandom(10 * 4096 + 123)
    reader = ChunkReader(_Trickle(data), len(data), 4096)
    chunks = []
    while chunk := reader.next():
        chunks.append(bytes(chunk))
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks[:-1]] == [4096] * 10  # short reads are filled up
    assert reader.ring == 11  # fewer chunks than HIGH_WATER // 4096 + 3: one buffer each
    assert ChunkReader(io.BytesIO(), 100 * MIB, MIB).ring == HIGH_WATER // MIB + 3


def test_a_file_that_shrank_ends_in_an_empty_chunk() -> None:
    reader = ChunkReader(io.BytesIO(b"abc"), 10, 4)
    assert bytes(reader.next()) == b"abc"
    assert not reader.next()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with running_pair(tmp_path) as nodes:
        yield nodes


def test_a_file_many_rings_long_arrives_identical_over_tls(pair, tmp_path: Path) -> None:
    """Every buffer is reused several times; the receiver's SHA-256 check and a byte
    comparison would both catch a chunk overwritten before it was sent."""
    alice, bob = pair
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(23 * MIB + 4321))
    message_id = alice.send_file(bob, source)
    finished = alice.wait_for(lambda e: getattr(getattr(e, "message", None), "id", None)
                              == message_id and e.message.state in ("delivered", "failed",
                                                                    "queued"), timeout=60)
    assert finished.message.state == "delivered"
    received = bob.store.messages.latest_page(ALICE, 1)[0]
    assert Path(bob.store.files.get(received.file_id).path).read_bytes() == source.read_bytes()
