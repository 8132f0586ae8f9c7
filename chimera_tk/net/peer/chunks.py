"""Reading a file to send in chunks, into a small ring of reused buffers.

A fresh 1 MiB ``bytes`` per chunk is mapped, faulted in and unmapped again by the allocator every
time: about a third of the sending thread's CPU besides the read itself (0.25 vs 0.17 s per GiB
in a loopback measurement, /tmp notes of task P2). The buffers can be reused because
``Channel.send_data`` queues a chunk only while at most ``HIGH_WATER`` bytes are waiting: by the
time a buffer comes round again (``HIGH_WATER // chunk + 3`` chunks later) the channel has handed
every byte of it to TLS, which copies what it encrypts, and holds no view of it any more.
"""

from __future__ import annotations

from typing import BinaryIO

from chimera_tk.net.peer.channel import HIGH_WATER


class ChunkReader:
    """``next()`` returns the next chunk of ``remaining`` bytes as a view into a reused buffer;
    the view is valid until ``ring - 1`` further calls (see the module docstring)."""

    def __init__(self, source: BinaryIO, remaining: int, chunk_size: int) -> None:
        self._source = source
        self._remaining = remaining
        self._chunk_size = chunk_size
        chunks_needed = -(-remaining // chunk_size) if remaining > 0 else 0
        self.ring = min(HIGH_WATER // chunk_size + 3, max(chunks_needed, 1))
        self._buffers: list[bytearray] = []
        self._turn = 0

    def next(self) -> memoryview:
        """The next chunk; empty when the file ended early (it shrank) or nothing is left."""
        want = min(self._chunk_size, self._remaining)
        if want <= 0:
            return memoryview(b"")
        index = self._turn % self.ring
        self._turn += 1
        if index == len(self._buffers):
            self._buffers.append(bytearray(min(self._chunk_size, self._remaining)))
        view = memoryview(self._buffers[index])[:want]
        count = 0
        while count < want:  # whole chunks, so the ring's count of chunks is one of bytes too
            got = self._source.readinto(view[count:]) or 0
            if not got:
                break
            count += got
        self._remaining -= count
        return view[:count]
